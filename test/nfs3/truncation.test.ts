// Every procedure's valid arguments, cut at every byte offset, are GARBAGE_ARGS (an XdrError) and
// never reach the service: a short message must not become a half-done operation.
import t from 'tap';
import { XdrError } from '../../src/rpc/xdr.js';
import { createNfsProgram } from '../../src/nfs3/program.js';
import { FH, FH2, Bytes, fakeFs, makeCall, newReply } from './fixtures/helpers.js';

const sattrAll = () =>
  new Bytes().u32(1, 0o755).u32(1, 1).u32(1, 2).u32(1).u64(100).u32(2, 5, 6).u32(1).get();
const dirop = (fh: Buffer, name: string) => new Bytes().opaque(fh).opaque(name).get();
const VERF = Buffer.from('12345678');

const cases: Array<[string, number, string, Buffer]> = [
  ['GETATTR', 1, 'getattr', new Bytes().opaque(FH).get()],
  ['SETATTR', 2, 'setattr', new Bytes().opaque(FH).raw(sattrAll()).u32(1, 9, 10).get()],
  ['SETATTR no guard', 2, 'setattr', new Bytes().opaque(FH).u32(0, 0, 0, 0, 0, 0).u32(0).get()],
  ['LOOKUP', 3, 'lookup', dirop(FH, 'name')],
  ['ACCESS', 4, 'access', new Bytes().opaque(FH).u32(0x3f).get()],
  ['READLINK', 5, 'readlink', new Bytes().opaque(FH).get()],
  ['READ', 6, 'read', new Bytes().opaque(FH).u64(0).u32(10).get()],
  ['WRITE', 7, 'write', new Bytes().opaque(FH).u64(0).u32(3).u32(2).opaque('abc').get()],
  ['CREATE GUARDED', 8, 'create', new Bytes().raw(dirop(FH, 'new')).u32(1).raw(sattrAll()).get()],
  ['CREATE EXCLUSIVE', 8, 'create', new Bytes().raw(dirop(FH, 'new')).u32(2).fixed(VERF).get()],
  ['MKDIR', 9, 'mkdir', new Bytes().raw(dirop(FH, 'd')).raw(sattrAll()).get()],
  ['SYMLINK', 10, 'symlink', new Bytes().raw(dirop(FH, 'l')).raw(sattrAll()).opaque('../target').get()],
  ['MKNOD CHR', 11, 'mknod', new Bytes().raw(dirop(FH, 'c')).u32(4).raw(sattrAll()).u32(1, 3).get()],
  ['MKNOD FIFO', 11, 'mknod', new Bytes().raw(dirop(FH, 'p')).u32(7).raw(sattrAll()).get()],
  ['MKNOD REG', 11, 'mknod', new Bytes().raw(dirop(FH, 'r')).u32(1).get()],
  ['REMOVE', 12, 'remove', dirop(FH, 'x')],
  ['RMDIR', 13, 'rmdir', dirop(FH, 'x')],
  ['RENAME', 14, 'rename', new Bytes().raw(dirop(FH, 'a')).raw(dirop(FH2, 'bb')).get()],
  ['LINK', 15, 'link', new Bytes().opaque(FH2).raw(dirop(FH, 'ln')).get()],
  ['READDIR', 16, 'readdir', new Bytes().opaque(FH).u64(0).fixed(VERF).u32(4096).get()],
  ['READDIRPLUS', 17, 'readdirplus', new Bytes().opaque(FH).u64(0).fixed(VERF).u32(1024).u32(8192).get()],
  ['FSSTAT', 18, 'fsstat', new Bytes().opaque(FH).get()],
  ['FSINFO', 19, 'fsinfo', new Bytes().opaque(FH).get()],
  ['PATHCONF', 20, 'pathconf', new Bytes().opaque(FH).get()],
  ['COMMIT', 21, 'commit', new Bytes().opaque(FH).u64(0).u32(0).get()],
];

for (const [label, proc, method, args] of cases) {
  t.test(label, async (t) => {
    const { fs, calls } = fakeFs();
    const program = createNfsProgram(fs);
    const handler = program.procedure(3, proc)!;
    t.ok(handler);

    const reply = newReply();
    t.equal(await handler(makeCall(args, { proc }), reply), undefined, 'whole arguments decode');
    t.equal(calls.length, 1);
    t.equal(calls[0]!.method, method);
    t.equal(reply.result().readUInt32BE(0), 5, 'the fake answered NFS3ERR_IO');

    calls.length = 0;
    let garbage = 0;
    for (let cut = 0; cut < args.length; cut++) {
      try {
        await handler(makeCall(args.subarray(0, cut), { proc }), newReply());
        t.fail(`cut at ${cut} was accepted`);
      } catch (err) {
        if (err instanceof XdrError) garbage++;
        else t.fail(`cut at ${cut}: ${String(err)}`);
      }
    }
    t.equal(garbage, args.length, 'every cut is XdrError');
    t.equal(calls.length, 0, 'the service is never called with short arguments');
  });
}

t.test('bad enum values are garbage', async (t) => {
  const { fs, calls } = fakeFs();
  const program = createNfsProgram(fs);
  const bad: Array<[number, Buffer]> = [
    [8, new Bytes().raw(dirop(FH, 'n')).u32(3).get()], // createmode3 3
    [11, new Bytes().raw(dirop(FH, 'n')).u32(0).get()], // ftype3 0
    [11, new Bytes().raw(dirop(FH, 'n')).u32(8).get()], // ftype3 8
    [2, new Bytes().opaque(FH).u32(2, 0, 0, 0, 0, 0).u32(0).get()], // bool 2 in set_mode3
    [2, new Bytes().opaque(FH).u32(0, 0, 0, 0, 0, 0).u32(7).get()], // bool 7 in sattrguard3
    [1, new Bytes().opaque(Buffer.alloc(65)).get()], // nfs_fh3 of 65 bytes
  ];
  for (const [proc, args] of bad) {
    const err = await Promise.resolve(program.procedure(3, proc)!(makeCall(args), newReply())).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof XdrError, `proc ${proc}: ${String(err)}`);
  }
  t.equal(calls.length, 0);
});
