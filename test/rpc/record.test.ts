import t from 'tap';
import {
  DEFAULT_MAX_RECORD_SIZE,
  RecordError,
  RecordReader,
  setRecordMark,
} from '../../src/rpc/record.js';
import { fragmented, record, u32 } from '../helpers/rpc-bytes.js';

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
