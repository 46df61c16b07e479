import t from 'tap';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HandleCodec, loadHandleSecret, MAX_KERNEL_HANDLE } from '../../src/fs/handle.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-handle-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('secret is made once, 0600, and reused', async (t) => {
  const a = loadHandleSecret(path.join(dir, 'state'));
  const b = loadHandleSecret(path.join(dir, 'state'));
  t.ok(a.equals(b));
  t.equal(statSync(path.join(dir, 'state', 'handle-key')).mode & 0o777, 0o600);
});

t.test('round trip, tamper, cross-share, foreign key', async (t) => {
  const codec = new HandleCodec(loadHandleSecret(path.join(dir, 'state')));
  const shareA = HandleCodec.shareKey('a', 'b1', 'a');
  const shareB = HandleCodec.shareKey('b', 'b1', 'b');
  const kernel = { type: 1, bytes: Buffer.from('0102030405060708', 'hex') };
  const handle = codec.encode(shareA, kernel)!;
  t.ok(handle.length <= 64);
  const decoded = codec.decode(handle)!;
  t.equal(decoded.shareKey, shareA.toString('hex'));
  t.same(decoded.kernel, kernel);

  // every single-bit flip anywhere is refused
  let refused = 0;
  for (let i = 0; i < handle.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const forged = Buffer.from(handle);
      forged[i]! ^= 1 << bit;
      if (codec.decode(forged) === null) refused++;
    }
  }
  t.equal(refused, handle.length * 8, 'every bit flip refused');

  // a handle re-labelled for another share (share key swapped, tag kept) is refused
  const relabelled = Buffer.from(handle);
  shareB.copy(relabelled, 2);
  t.equal(codec.decode(relabelled), null);

  // the same object under another gateway's secret is refused
  const other = new HandleCodec(Buffer.alloc(32, 7));
  t.equal(codec.decode(other.encode(shareA, kernel)!), null);

  t.equal(codec.decode(handle.subarray(0, handle.length - 1)), null, 'truncated');
  t.equal(codec.decode(Buffer.concat([handle, Buffer.alloc(1)])), null, 'extended');
  t.equal(codec.decode(Buffer.alloc(0)), null, 'empty');
  t.equal(codec.encode(shareA, { type: 1, bytes: Buffer.alloc(MAX_KERNEL_HANDLE + 1) }), null, 'too long to fit');
  t.equal(codec.encode(shareA, { type: 1, bytes: Buffer.alloc(MAX_KERNEL_HANDLE) })!.length, 64);
});

t.test('share keys depend on where the share lives', async (t) => {
  t.notSame(HandleCodec.shareKey('s', 'b', 'p1'), HandleCodec.shareKey('s', 'b', 'p2'));
  t.same(HandleCodec.shareKey('s', 'b', 'p1'), HandleCodec.shareKey('s', 'b', 'p1'));
});
