import t from 'tap';
import { read } from '../../src/nfs3/read.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import type { ReadTarget } from '../../src/fs/types.js';
import { ATTR, FH, Bytes, fakeFs, makeCall, newReply, postOpAttrBytes } from './fixtures/helpers.js';

const args = (offset: bigint, count: number) => new Bytes().opaque(FH).u64(offset).u32(count).get();

t.test('READ of 5 bytes is read in place and padded', async (t) => {
  let seen: ReadTarget | undefined;
  const { fs, calls } = fakeFs({
    read: (_c, _fh, _off, count: number, target: ReadTarget) => {
      seen = target;
      t.ok(target.buffer.length - target.offset >= count);
      target.buffer.write('hello', target.offset);
      // dirty the would-be padding so the handler has to zero it
      target.buffer.fill(0xee, target.offset + 5, target.offset + 8);
      return { status: Nfs3Status.NFS3_OK, attr: ATTR, count: 5, eof: true };
    },
  });
  const reply = newReply();
  reply.uint32(0xaaaaaaaa); // something before the results, as the RPC header would be
  await read(fs)(makeCall(args(10n, 4096)), reply);
  t.equal(seen!.buffer, reply.buffer, 'the fs layer wrote into the reply buffer itself');
  t.equal(seen!.offset, 4 + 4 + 88 + 4 + 4 + 4);
  t.same(calls[0]!.args.slice(0, 3), [FH, 10n, 4096]);
  const want = new Bytes()
    .u32(0xaaaaaaaa)
    .u32(0)
    .raw(postOpAttrBytes(ATTR))
    .u32(5)
    .u32(1)
    .opaque('hello')
    .get();
  t.same(reply.result(), want);
  t.equal(reply.result().length % 4, 0);
});

t.test('READ without attributes slides the data down', async (t) => {
  const { fs } = fakeFs({
    read: (_c, _fh, _off, _count, target: ReadTarget) => {
      target.buffer.write('abcdefg', target.offset);
      return { status: Nfs3Status.NFS3_OK, attr: null, count: 7, eof: false };
    },
  });
  const reply = newReply();
  await read(fs)(makeCall(args(0n, 7)), reply);
  t.same(reply.result(), new Bytes().u32(0, 0, 7, 0).opaque('abcdefg').get());
});

t.test('READ failure rewinds and encodes READ3resfail', async (t) => {
  const { fs } = fakeFs({
    read: (_c, _fh, _off, _count, target: ReadTarget) => {
      target.buffer.write('junk', target.offset);
      return { status: Nfs3Status.NFS3ERR_ISDIR, attr: ATTR, count: 0, eof: false };
    },
  });
  const reply = newReply();
  await read(fs)(makeCall(args(0n, 100)), reply);
  t.same(reply.result(), new Bytes().u32(21).raw(postOpAttrBytes(ATTR)).get());
});

t.test('READ count is clamped to 1 MiB', async (t) => {
  const { fs, calls } = fakeFs({
    read: () => ({ status: Nfs3Status.NFS3_OK, attr: null, count: 0, eof: true }),
  });
  const reply = newReply();
  await read(fs)(makeCall(args(0n, 0xffffffff)), reply);
  t.equal(calls[0]!.args[2], 1024 * 1024);
  t.same(reply.result(), new Bytes().u32(0, 0, 0, 1, 0).get());
});

t.test('READ: a layer claiming more bytes than asked is a bug, not a reply', async (t) => {
  const { fs } = fakeFs({ read: () => ({ status: 0, attr: null, count: 9, eof: true }) });
  await t.rejects(read(fs)(makeCall(args(0n, 8)), newReply()) as Promise<void>);
});
