// Exact reply layouts of the procedures not covered elsewhere, and arguments as the service sees them.
import t from 'tap';
import { createNfsProgram } from '../../src/nfs3/program.js';
import { CreateMode, Ftype3, Nfs3Status } from '../../src/nfs3/types.js';
import type { NfsFileService } from '../../src/fs/types.js';
import { ATTR, DIR_ATTR, FH, FH2, Bytes, fakeFs, makeCall, newReply, postOpAttrBytes } from './fixtures/helpers.js';

const WCC = { before: { size: 10, mtime: { seconds: 1, nseconds: 2 }, ctime: { seconds: 3, nseconds: 4 } }, after: DIR_ATTR };
const wccBytes = () => new Bytes().u32(1).u64(10).u32(1, 2, 3, 4).raw(postOpAttrBytes(DIR_ATTR)).get();

async function run(overrides: Partial<Record<keyof NfsFileService, (...a: any[]) => any>>, proc: number, args: Buffer) {
  const { fs, calls } = fakeFs(overrides);
  const reply = newReply();
  await createNfsProgram(fs).procedure(3, proc)!(makeCall(args, { proc }), reply);
  return { bytes: reply.result(), calls };
}

t.test('SETATTR: arguments and wcc reply', async (t) => {
  const args = new Bytes().opaque(FH).u32(1, 0o600, 0, 0, 1).u64(0).u32(1, 0).u32(1, 77, 88).get();
  const { bytes, calls } = await run({ setattr: () => ({ status: Nfs3Status.NFS3ERR_NOT_SYNC, wcc: WCC }) }, 2, args);
  t.same(calls[0]!.args, [FH, { mode: 0o600, size: 0, atime: { how: 'server' }, mtime: { how: 'dont' } }, { seconds: 77, nseconds: 88 }]);
  t.same(bytes, new Bytes().u32(10002).raw(wccBytes()).get());
});

t.test('ACCESS OK and failure', async (t) => {
  const args = new Bytes().opaque(FH).u32(0x1f).get();
  const ok = await run({ access: () => ({ status: 0, attr: ATTR, access: 0x03 }) }, 4, args);
  t.same(ok.calls[0]!.args, [FH, 0x1f]);
  t.same(ok.bytes, new Bytes().u32(0).raw(postOpAttrBytes(ATTR)).u32(3).get());
  const bad = await run({ access: () => ({ status: 70, attr: null, access: 0 }) }, 4, args);
  t.same(bad.bytes, new Bytes().u32(70, 0).get());
});

t.test('READLINK OK', async (t) => {
  const { bytes } = await run({ readlink: () => ({ status: 0, attr: null, target: Buffer.from('../x') }) }, 5, new Bytes().opaque(FH).get());
  t.same(bytes, new Bytes().u32(0, 0).opaque('../x').get());
});

t.test('CREATE EXCLUSIVE passes the verifier; OK reply is post_op_fh3, post_op_attr, wcc_data', async (t) => {
  const args = new Bytes().opaque(FH).opaque('f').u32(2).fixed('VERF0001').get();
  const { bytes, calls } = await run(
    { create: () => ({ status: 0, handle: FH2, objAttr: ATTR, dirWcc: WCC }) },
    8,
    args,
  );
  t.same(calls[0]!.args, [FH, Buffer.from('f'), { mode: CreateMode.EXCLUSIVE, verifier: Buffer.from('VERF0001') }]);
  t.same(bytes, new Bytes().u32(0).u32(1).opaque(FH2).raw(postOpAttrBytes(ATTR)).raw(wccBytes()).get());
});

t.test('MKDIR failure is status and dir_wcc', async (t) => {
  const args = new Bytes().opaque(FH).opaque('d').u32(1, 0o700, 0, 0, 0, 0, 0).get();
  const { bytes, calls } = await run({ mkdir: () => ({ status: 17, handle: null, objAttr: null, dirWcc: WCC }) }, 9, args);
  t.same(calls[0]!.args, [FH, Buffer.from('d'), { mode: 0o700, atime: { how: 'dont' }, mtime: { how: 'dont' } }]);
  t.same(bytes, new Bytes().u32(17).raw(wccBytes()).get());
});

t.test('SYMLINK and MKNOD arguments', async (t) => {
  const s = await run({}, 10, new Bytes().opaque(FH).opaque('l').u32(0, 0, 0, 0, 0, 0).opaque('t/a/r').get());
  t.same(s.calls[0]!.args, [FH, Buffer.from('l'), { atime: { how: 'dont' }, mtime: { how: 'dont' } }, Buffer.from('t/a/r')]);
  const m = await run({}, 11, new Bytes().opaque(FH).opaque('b').u32(3).u32(0, 0, 0, 0, 0, 0).u32(8, 1).get());
  t.same(m.calls[0]!.args[2], {
    type: Ftype3.NF3BLK,
    attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } },
    spec: { specdata1: 8, specdata2: 1 },
  });
  const d = await run({}, 11, new Bytes().opaque(FH).opaque('x').u32(2).get());
  t.same(d.calls[0]!.args[2], { type: Ftype3.NF3DIR });
});

t.test('REMOVE, RMDIR, RENAME, LINK replies', async (t) => {
  const rm = await run({ remove: () => ({ status: 0, wcc: WCC }) }, 12, new Bytes().opaque(FH).opaque('x').get());
  t.same(rm.bytes, new Bytes().u32(0).raw(wccBytes()).get());
  const rd = await run({ rmdir: () => ({ status: 66, wcc: { before: null, after: null } }) }, 13, new Bytes().opaque(FH).opaque('x').get());
  t.same(rd.bytes, new Bytes().u32(66, 0, 0).get());
  const mv = await run(
    { rename: () => ({ status: 0, fromDirWcc: WCC, toDirWcc: { before: null, after: null } }) },
    14,
    new Bytes().opaque(FH).opaque('a').opaque(FH2).opaque('b').get(),
  );
  t.same(mv.calls[0]!.args, [FH, Buffer.from('a'), FH2, Buffer.from('b')]);
  t.same(mv.bytes, new Bytes().u32(0).raw(wccBytes()).u32(0, 0).get());
  const ln = await run(
    { link: () => ({ status: 0, fileAttr: ATTR, linkDirWcc: WCC }) },
    15,
    new Bytes().opaque(FH2).opaque(FH).opaque('h').get(),
  );
  t.same(ln.calls[0]!.args, [FH2, FH, Buffer.from('h')]);
  t.same(ln.bytes, new Bytes().u32(0).raw(postOpAttrBytes(ATTR)).raw(wccBytes()).get());
});

t.test('FSSTAT, FSINFO, PATHCONF', async (t) => {
  const fh = new Bytes().opaque(FH).get();
  const st = await run(
    { fsstat: () => ({ status: 0, attr: null, tbytes: 2 ** 40, fbytes: 5, abytes: 4, tfiles: 3, ffiles: 2, afiles: 1, invarsec: 0 }) },
    18,
    fh,
  );
  t.same(st.bytes, new Bytes().u32(0, 0).u64(2 ** 40).u64(5).u64(4).u64(3).u64(2).u64(1).u32(0).get());
  const info = await run(
    {
      fsinfo: () => ({
        status: 0, attr: DIR_ATTR, rtmax: 1048576, rtpref: 1048576, rtmult: 4096, wtmax: 1048576, wtpref: 1048576,
        wtmult: 4096, dtpref: 65536, maxfilesize: 2 ** 53 - 1, timeDelta: { seconds: 0, nseconds: 1 }, properties: 0x1b,
      }),
    },
    19,
    fh,
  );
  t.same(
    info.bytes,
    new Bytes().u32(0).raw(postOpAttrBytes(DIR_ATTR)).u32(1048576, 1048576, 4096, 1048576, 1048576, 4096, 65536)
      .u64(2 ** 53 - 1).u32(0, 1, 0x1b).get(),
  );
  const pc = await run(
    { pathconf: () => ({ status: 0, attr: null, linkmax: 32000, nameMax: 255, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true }) },
    20,
    fh,
  );
  t.same(pc.bytes, new Bytes().u32(0, 0, 32000, 255, 1, 1, 0, 1).get());
  const bad = await run({ fsinfo: () => ({ status: 10001, attr: null }) }, 19, fh);
  t.same(bad.bytes, new Bytes().u32(10001, 0).get());
});
