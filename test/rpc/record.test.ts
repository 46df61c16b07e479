import t from 'tap';
import {
  DEFAULT_MAX_RECORD_SIZE,
  DIRECT_READ_MIN,
  RecordError,
  RecordReader,
  setRecordMark,
} from '../../src/rpc/record.js';
import { fragmented, record, u32 } from '../helpers/rpc-bytes.js';
import { largeBuffers } from '../../src/rpc/buffers.js';

function collect(options?: { maxRecordSize?: number; maxFragments?: number }): { reader: RecordReader; records: Buffer[] } {
  const records: Buffer[] = [];
  const reader = new RecordReader((r) => records.push(Buffer.from(r)), options);
  return { reader, records };
}

const bodyA = Buffer.from('first record, single fragment!!'); // 31 bytes: odd length on purpose
const bodyB = Buffer.from('second record spread over three fragments of the stream');
const bodyC = Buffer.from('third, after an empty non-last fragment');
// A: one fragment. B: fragments of 5, 17 and the rest. C: a zero-length fragment, then the body.
const stream = Buffer.concat([record(bodyA), fragmented(bodyB, [5, 17]), fragmented(bodyC, [0])]);

t.test('a record in one chunk is handed out as a view, not a copy', async (t) => {
  let seen: Buffer | undefined;
  const reader = new RecordReader((r) => (seen = r));
  const chunk = record(bodyA);
  reader.push(chunk);
  t.ok(seen);
  t.same(seen, bodyA);
  t.equal(seen!.buffer, chunk.buffer, 'same memory');
  t.equal(seen!.byteOffset, chunk.byteOffset + 4);
});

t.test('many records in one chunk, multi-fragment reassembly', async (t) => {
  const { reader, records } = collect();
  reader.push(stream);
  t.same(records, [bodyA, bodyB, bodyC]);
  t.equal(reader.bufferedBytes, 0);
});

t.test('the stream split at every byte offset', async (t) => {
  for (let cut = 0; cut <= stream.length; cut++) {
    const { reader, records } = collect();
    reader.push(stream.subarray(0, cut));
    reader.push(stream.subarray(cut));
    t.same(records, [bodyA, bodyB, bodyC], `cut at ${cut}`);
  }
  for (let a = 1; a < stream.length; a += 3) {
    for (let b = a; b < stream.length; b += 5) {
      const { reader, records } = collect();
      reader.push(stream.subarray(0, a));
      reader.push(stream.subarray(a, b));
      reader.push(stream.subarray(b));
      if (records.length !== 3 || !records[1]!.equals(bodyB)) t.fail(`cuts at ${a} and ${b}`);
    }
  }
});

t.test('one byte at a time', async (t) => {
  const { reader, records } = collect();
  for (let i = 0; i < stream.length; i++) reader.push(stream.subarray(i, i + 1));
  t.same(records, [bodyA, bodyB, bodyC]);
});

t.test('an empty record is dropped and the stream goes on', async (t) => {
  const { reader, records } = collect();
  reader.push(Buffer.concat([u32(0), u32(0x80000000), record(bodyA)]));
  t.same(records, [bodyA]);
});

t.test('oversized record: stable error code before the body is buffered', async (t) => {
  const { reader, records } = collect({ maxRecordSize: 100 });
  reader.push(record(Buffer.alloc(100, 1))); // exactly the limit is fine
  t.equal(records.length, 1);
  t.throws(() => reader.push(u32(0x80000000 + 101)), { code: 'RPC_RECORD_TOO_LARGE' });
  // Once failed, the reader stays failed.
  t.throws(() => reader.push(record(bodyA)), { code: 'RPC_RECORD_TOO_LARGE' });
  t.equal(records.length, 1);
});

t.test('oversized across fragments', async (t) => {
  const { reader } = collect({ maxRecordSize: 100 });
  reader.push(Buffer.concat([u32(60), Buffer.alloc(60)]));
  const err = t.throws(() => reader.push(u32(0x80000000 + 41))) as RecordError;
  t.ok(err instanceof RecordError);
  t.equal(err.code, 'RPC_RECORD_TOO_LARGE');
});

t.test('the default limit is 1 MiB + 64 KiB, and a 31-bit length is rejected', async (t) => {
  t.equal(DEFAULT_MAX_RECORD_SIZE, 1024 * 1024 + 64 * 1024);
  const { reader } = collect();
  t.throws(() => reader.push(u32(0xffffffff)), { code: 'RPC_RECORD_TOO_LARGE' });
});

t.test('too many fragments', async (t) => {
  const { reader, records } = collect({ maxFragments: 3 });
  reader.push(fragmented(Buffer.from('abc'), [1, 1])); // 3 fragments: fine
  t.same(records, [Buffer.from('abc')]);
  t.throws(() => reader.push(fragmented(Buffer.from('abcd'), [1, 1, 1])), { code: 'RPC_RECORD_TOO_MANY_FRAGMENTS' });
});

t.test('setRecordMark', async (t) => {
  const reply = Buffer.concat([Buffer.alloc(4), Buffer.from('12345678')]);
  t.equal(setRecordMark(reply), reply);
  t.same(reply.subarray(0, 4), u32(0x80000008));
  t.throws(() => setRecordMark(Buffer.alloc(3)), RangeError);
});

/**
 * Plays a socket that reads into what readTarget() says (socket-reads.ts): `stream` arrives in
 * reads of at most `readSize` bytes; scratch reads go through pushReused, and the scratch is
 * scribbled over after each, as the next connection's read would.
 */
function readThrough(reader: RecordReader, stream: Buffer, readSize: number): { direct: number } {
  const scratch = Buffer.alloc(readSize);
  let direct = 0;
  for (let at = 0; at < stream.length; ) {
    const target = reader.readTarget(scratch);
    const bytes = stream.copy(target, 0, at, at + Math.min(readSize, target.length));
    at += bytes;
    if (target === scratch) {
      reader.pushReused(scratch.subarray(0, bytes));
      scratch.fill(0xee);
    } else {
      reader.filledDirect(bytes);
      direct += bytes;
    }
  }
  return { direct };
}

t.test('reads into buffers of our choosing: large records land in their own buffer, the rest is copied out', async (t) => {
  const large = Buffer.alloc(DIRECT_READ_MIN * 3 + 123);
  for (let i = 0; i < large.length; i++) large[i] = (i * 7) & 0xff;
  const small = Buffer.from('a small call after it');
  const lastLarge = Buffer.alloc(DIRECT_READ_MIN + 5, 0x5a);
  const stream = Buffer.concat([record(bodyA), record(large), record(small), fragmented(bodyB, [5, 17]), record(lastLarge), record(bodyC)]);
  for (const readSize of [1, 3, 4096, 65536, 200_000]) {
    const seen: Buffer[] = [];
    const reader = new RecordReader((r) => seen.push(r));
    const { direct } = readThrough(reader, stream, readSize);
    t.same(seen.map((r) => Buffer.from(r)), [bodyA, large, small, bodyB, lastLarge, bodyC], `reads of ${readSize}: every record intact`);
    // straight in once DIRECT_READ_MIN bytes of the record arrived, while at least that much is left
    t.ok(direct >= large.length - DIRECT_READ_MIN - Math.max(readSize, DIRECT_READ_MIN) - 8, `reads of ${readSize}: ${direct} bytes read straight into records`);
    t.equal(reader.bufferedBytes, 0);
    // records handed out earlier survive the scratch being written over since
    t.same(Buffer.from(seen[0]!), bodyA, 'kept records are not views of the scratch');
  }
});

t.test('a large record split in fragments is read straight in only for its last fragment', async (t) => {
  const body = Buffer.alloc(DIRECT_READ_MIN * 3);
  for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
  const seen: Buffer[] = [];
  const reader = new RecordReader((r) => seen.push(Buffer.from(r)));
  const { direct } = readThrough(reader, fragmented(body, [DIRECT_READ_MIN + 1]), 4096);
  t.same(seen, [body]);
  t.ok(direct > DIRECT_READ_MIN && direct < DIRECT_READ_MIN * 2, `only the last fragment's rest (${direct} bytes)`);
});

t.test('push is refused while a record is read into its own buffer; filledDirect without a target too', async (t) => {
  const reader = new RecordReader(() => undefined);
  t.throws(() => reader.filledDirect(1), RangeError);
  const scratch = Buffer.alloc(10);
  const whole = record(Buffer.alloc(DIRECT_READ_MIN * 3));
  reader.pushReused(whole.subarray(0, 4));
  t.equal(reader.readTarget(scratch), scratch, 'a record mark alone takes no buffer for the record it announces');
  reader.pushReused(whole.subarray(4, DIRECT_READ_MIN - 1));
  t.equal(reader.readTarget(scratch), scratch, 'nor do fewer than DIRECT_READ_MIN bytes of it, its mark counted');
  reader.pushReused(whole.subarray(DIRECT_READ_MIN - 1, DIRECT_READ_MIN + 4));
  const target = reader.readTarget(scratch);
  t.equal(target.length, DIRECT_READ_MIN * 2, 'then exactly the rest of the record');
  t.throws(() => reader.push(Buffer.alloc(1)), RangeError);
  t.throws(() => reader.filledDirect(target.length + 1), RangeError, 'no more than the rest');
});

t.test('bytes that reach the scratch while a record is read straight in go into the record; discard gives its buffer back', async (t) => {
  const body = Buffer.alloc(DIRECT_READ_MIN * 3);
  for (let i = 0; i < body.length; i++) body[i] = (i * 5) & 0xff;
  const whole = Buffer.concat([record(body), record(bodyA)]);
  const seen: Buffer[] = [];
  const reader = new RecordReader((r) => seen.push(Buffer.from(r)));
  const scratch = Buffer.alloc(DIRECT_READ_MIN * 4);
  reader.pushReused(whole.subarray(0, DIRECT_READ_MIN + 4));
  t.not(reader.readTarget(scratch), scratch, 'reading straight in');
  // a read that still went to the scratch (its target was chosen before the switch): the rest of
  // the record and the next record with it
  whole.copy(scratch, 0, DIRECT_READ_MIN + 4);
  reader.pushReused(scratch.subarray(0, whole.length - DIRECT_READ_MIN - 4));
  t.same(seen, [body, bodyA], 'both records intact');

  const partial = new RecordReader(() => undefined);
  partial.pushReused(record(body).subarray(0, DIRECT_READ_MIN + 4));
  const target = partial.readTarget(scratch);
  const before = largeBuffers.freeCount;
  partial.discard();
  t.equal(largeBuffers.freeCount, before + 1, 'the partly read record buffer is back in the pool');
  t.ok(target.buffer.byteLength >= body.length);
});

t.test('the first scratch read of a large record goes straight into its own buffer, not into a copy', async (t) => {
  // A 1 MiB WRITE arriving in 64 KiB socket reads: its first read lands in the scratch. Once that
  // brought DIRECT_READ_MIN bytes, they are copied into the record's pooled buffer at once (a copy
  // of their own was a 64 KiB allocation per WRITE), and the next read targets that buffer.
  for (const size of [1024 * 1024, DIRECT_READ_MIN + 40_000]) {
    const body = Buffer.alloc(size);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13) & 0xff;
    const whole = record(body);
    const seen: Buffer[] = [];
    const reader = new RecordReader((r) => seen.push(r));
    const scratch = Buffer.alloc(DIRECT_READ_MIN);
    whole.copy(scratch, 0, 0, scratch.length);
    reader.pushReused(scratch);
    scratch.fill(0xee);
    const target = reader.readTarget(scratch);
    t.not(target, scratch, `${size}: the second read goes into the record's buffer`);
    t.equal(target.length, whole.length - DIRECT_READ_MIN, 'exactly the rest of it');
    t.equal(reader.bufferedBytes, DIRECT_READ_MIN - 4);
    whole.copy(target, 0, DIRECT_READ_MIN);
    reader.filledDirect(target.length);
    t.equal(seen.length, 1);
    t.ok(seen[0]!.equals(body), 'the record intact');
    t.equal(seen[0]!.buffer, target.buffer, 'handed out in the buffer it was read into');
  }
});
