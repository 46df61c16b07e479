import t from 'tap';
import { XdrReader, XdrWriter, XdrError } from '../../src/rpc/xdr.js';

t.test('uint32 round trip and short read', async (t) => {
  const w = new XdrWriter(2);
  w.uint32(0xdeadbeef).uint64(2n ** 63n + 5n).string('abc');
  const r = new XdrReader(w.result());
  t.equal(r.uint32(), 0xdeadbeef);
  t.equal(r.uint64(), 2n ** 63n + 5n);
  t.equal(r.string(10), 'abc');
  t.throws(() => r.uint32(), { code: 'XDR_SHORT' });
  t.ok(XdrError);
});

t.test('every reader method at every truncation offset throws XDR_SHORT, never anything else', async (t) => {
  const w = new XdrWriter(16);
  w.uint32(7).int32(-2).bool(true).uint64(123n).uint64(2 ** 40).opaqueFixed(Buffer.from('xyz')).opaque(Buffer.from('hello')).string('név');
  const full = w.result();
  const readAll = (r: XdrReader): unknown[] => [
    r.uint32(),
    r.int32(),
    r.bool(),
    r.uint64(),
    r.uint64AsNumber(),
    r.opaqueFixed(3),
    r.opaque(16),
    r.string(16),
  ];
  t.same(readAll(new XdrReader(full)), [7, -2, true, 123n, 2 ** 40, Buffer.from('xyz'), Buffer.from('hello'), 'név']);
  for (let cut = 0; cut < full.length; cut++) {
    // A reader whose end is cut short, and one over a buffer that is itself cut short.
    for (const r of [new XdrReader(full, 0, cut), new XdrReader(full.subarray(0, cut))]) {
      try {
        readAll(r);
        t.fail(`read past the end at ${cut}`);
      } catch (err) {
        if (!(err instanceof XdrError) || err.code !== 'XDR_SHORT') t.fail(`cut ${cut}: ${String(err)}`);
      }
    }
  }
  t.pass('all truncations');
});

t.test('bool other than 0 or 1 is garbage', async (t) => {
  const r = new XdrReader(Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff]));
  t.equal(r.bool(), false);
  t.equal(r.bool(), true);
  t.throws(() => r.bool(), { code: 'XDR_BAD_VALUE' });
  t.throws(() => r.bool(), { code: 'XDR_BAD_VALUE' });
});

t.test('opaque limit and padding', async (t) => {
  const b = Buffer.from([0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 1]);
  t.throws(() => new XdrReader(b).opaque(4), { code: 'XDR_TOO_LONG' });
  const r = new XdrReader(b);
  const data = r.opaque(5);
  t.same(data, Buffer.from([1, 2, 3, 4, 5]));
  t.equal(data.buffer, b.buffer, 'a view, not a copy');
  t.equal(r.offset, 12, 'padding skipped');
  t.equal(r.uint32(), 1);
  // A huge announced length is refused before any allocation.
  t.throws(() => new XdrReader(Buffer.from([0xff, 0xff, 0xff, 0xff])).opaque(0xffffffff), { code: 'XDR_SHORT' });
  // Padding itself missing.
  t.throws(() => new XdrReader(b.subarray(0, 10)).opaque(5), { code: 'XDR_SHORT' });
});

t.test('writer pads opaques with zeros', async (t) => {
  const w = new XdrWriter(1);
  w.buffer.fill(0xee);
  w.opaque(Buffer.from([9])).string('ab');
  t.same(w.result(), Buffer.from([0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0, 2, 0x61, 0x62, 0, 0]));
});

t.test('opaqueInPlace: length, zero padding, growth', async (t) => {
  for (const actual of [0, 1, 2, 3, 4, 5, 100]) {
    const w = new XdrWriter(8);
    w.uint32(0xabcdef01);
    const slot = w.opaqueInPlace(100);
    slot.buffer.fill(0xee, slot.offset, slot.offset + 103); // stale bytes where padding goes
    slot.buffer.fill(7, slot.offset, slot.offset + actual);
    slot.finish(actual);
    w.uint32(0x11223344);
    const pad = (4 - (actual % 4)) % 4;
    const expected = Buffer.concat([
      Buffer.from([0xab, 0xcd, 0xef, 0x01]),
      Buffer.from([0, 0, 0, actual]),
      Buffer.alloc(actual, 7),
      Buffer.alloc(pad, 0),
      Buffer.from([0x11, 0x22, 0x33, 0x44]),
    ]);
    t.same(w.result(), expected, `actual ${actual}`);
    t.equal(w.result().length % 4, 0);
  }
  const w = new XdrWriter(8);
  const slot = w.opaqueInPlace(4);
  t.throws(() => slot.finish(5), RangeError);
});
