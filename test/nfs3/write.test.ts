import t from 'tap';
import { write } from '../../src/nfs3/write.js';
import { commit } from '../../src/nfs3/commit.js';
import { Nfs3Status, StableHow } from '../../src/nfs3/types.js';
import { ATTR, FH, Bytes, fakeFs, makeCall, newReply, postOpAttrBytes } from './fixtures/helpers.js';

const VERF = Buffer.from('VERIFIER');

t.test('WRITE with count < data length writes only count bytes', async (t) => {
  const { fs, calls } = fakeFs({
    write: (_c, _fh, _off, _stable, data: Buffer) => ({
      status: Nfs3Status.NFS3_OK,
      wcc: { before: { size: 0, mtime: { seconds: 1, nseconds: 0 }, ctime: { seconds: 2, nseconds: 0 } }, after: ATTR },
      count: data.length,
      committed: StableHow.FILE_SYNC,
      verifier: VERF,
    }),
  });
  const reply = newReply();
  const args = new Bytes().opaque(FH).u64(2n ** 40n).u32(3).u32(StableHow.UNSTABLE).opaque('abcdef').get();
  await write(fs)(makeCall(args), reply);
  t.same(calls[0]!.args, [FH, 2n ** 40n, StableHow.UNSTABLE, Buffer.from('abc')]);
  const want = new Bytes()
    .u32(0)
    .u32(1).u64(0).u32(1, 0, 2, 0)
    .raw(postOpAttrBytes(ATTR))
    .u32(3)
    .u32(2)
    .fixed(VERF)
    .get();
  t.same(reply.result(), want);
});

t.test('WRITE data is a view, not a copy', async (t) => {
  let got: Buffer | undefined;
  const { fs } = fakeFs({ write: (_c, _fh, _o, _s, data: Buffer) => ((got = data), { status: 5, wcc: { before: null, after: null } }) });
  const args = new Bytes().opaque(FH).u64(0).u32(4).u32(0).opaque('wxyz').get();
  await write(fs)(makeCall(args), newReply());
  t.equal(got!.buffer, args.buffer);
});

t.test('WRITE failure: status and file_wcc only', async (t) => {
  const { fs } = fakeFs({ write: () => ({ status: Nfs3Status.NFS3ERR_ROFS, wcc: { before: null, after: null } }) });
  const reply = newReply();
  await write(fs)(makeCall(new Bytes().opaque(FH).u64(0).u32(1).u32(2).opaque('a').get()), reply);
  t.same(reply.result(), new Bytes().u32(30, 0, 0).get());
});

t.test('WRITE garbage: count beyond data, oversized data, bad stable_how', async (t) => {
  const { fs, calls } = fakeFs();
  const h = write(fs);
  await t.rejects(async () => h(makeCall(new Bytes().opaque(FH).u64(0).u32(7).u32(0).opaque('abc').get()), newReply()), {
    code: 'XDR_BAD_VALUE',
  });
  const huge = new Bytes().opaque(FH).u64(0).u32(0).u32(0).u32(2 * 1024 * 1024).raw(Buffer.alloc(2 * 1024 * 1024)).get();
  await t.rejects(async () => h(makeCall(huge), newReply()), { code: 'XDR_TOO_LONG' });
  await t.rejects(async () => h(makeCall(new Bytes().opaque(FH).u64(0).u32(0).u32(3).opaque('').get()), newReply()), {
    code: 'XDR_BAD_VALUE',
  });
  t.equal(calls.length, 0);
});

t.test('COMMIT OK: wcc_data and verifier', async (t) => {
  const { fs, calls } = fakeFs({
    commit: () => ({ status: 0, wcc: { before: null, after: null }, verifier: VERF }),
  });
  const reply = newReply();
  await commit(fs)(makeCall(new Bytes().opaque(FH).u64(5).u32(0).get()), reply);
  t.same(calls[0]!.args, [FH, 5n, 0]);
  t.same(reply.result(), new Bytes().u32(0, 0, 0).fixed(VERF).get());
});
