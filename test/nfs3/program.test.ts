import t from 'tap';
import { createNfsProgram } from '../../src/nfs3/program.js';
import { AuthFlavor, AuthStat } from '../../src/rpc/types.js';
import { FH, Bytes, fakeFs, makeCall, newReply } from './fixtures/helpers.js';

t.test('program identity and procedure table', async (t) => {
  const program = createNfsProgram(fakeFs().fs);
  t.equal(program.prog, 100003);
  t.equal(program.lowVersion, 3);
  t.equal(program.highVersion, 3);
  t.equal(program.name, 'nfs3');
  const names = [
    'NULL', 'GETATTR', 'SETATTR', 'LOOKUP', 'ACCESS', 'READLINK', 'READ', 'WRITE', 'CREATE', 'MKDIR', 'SYMLINK',
    'MKNOD', 'REMOVE', 'RMDIR', 'RENAME', 'LINK', 'READDIR', 'READDIRPLUS', 'FSSTAT', 'FSINFO', 'PATHCONF', 'COMMIT',
  ];
  names.forEach((name, proc) => {
    t.equal(program.procedureName(3, proc), name);
    t.type(program.procedure(3, proc), 'function');
  });
  t.equal(program.procedure(3, 22), undefined);
  t.equal(program.procedureName(3, 22), undefined);
  t.equal(program.procedure(2, 1), undefined);
});

t.test('NULL answers void for any flavor', async (t) => {
  const program = createNfsProgram(fakeFs().fs);
  const reply = newReply();
  t.equal(await program.procedure(3, 0)!(makeCall(Buffer.alloc(0), { flavor: AuthFlavor.RPCSEC_GSS }), reply), undefined);
  t.equal(reply.result().length, 0);
});

t.test('flavors other than AUTH_SYS and AUTH_NONE get AUTH_TOOWEAK', async (t) => {
  const { fs, calls } = fakeFs();
  const program = createNfsProgram(fs);
  const args = new Bytes().opaque(FH).get();
  for (const flavor of [AuthFlavor.RPCSEC_GSS, AuthFlavor.AUTH_DH, AuthFlavor.AUTH_SHORT]) {
    const reply = newReply();
    t.same(await program.procedure(3, 1)!(makeCall(args, { flavor }), reply), { auth: AuthStat.AUTH_TOOWEAK });
    t.equal(reply.result().length, 0);
  }
  t.equal(calls.length, 0);

  const none = newReply();
  t.equal(await program.procedure(3, 1)!(makeCall(args, { flavor: AuthFlavor.AUTH_NONE }), none), undefined);
  t.equal(calls.length, 1);
  t.equal(calls[0]!.caller.flavor, AuthFlavor.AUTH_NONE);
  t.equal(calls[0]!.caller.authSys, null);
});
