import t from 'tap';
import { XdrError } from '../../src/rpc/xdr.js';
import { createMountProgram } from '../../src/mount/program.js';
import { MountList } from '../../src/mount/mountlist.js';
import { Mountstat3 } from '../../src/mount/types.js';
import { Bytes, FH, OTHER_PEER, TCP_PEER, fakeMount, makeCall, newReply } from '../nfs3/fixtures/helpers.js';
import type { Peer } from '../../src/rpc/types.js';

const PROC = { NULL: 0, MNT: 1, DUMP: 2, UMNT: 3, UMNTALL: 4, EXPORT: 5 };

function setup() {
  const { service, calls } = fakeMount(
    { 'tcp:10.0.0.5': ['demo', 'data'], 'cid:7': ['other'] },
    { '/demo': FH, '/data': FH, '/other': FH },
  );
  const mounts = new MountList();
  const program = createMountProgram(service, mounts);
  const call = async (proc: number, args: Buffer, peer: Peer = TCP_PEER) => {
    const reply = newReply();
    const out = await program.procedure(3, proc)!(makeCall(args, { peer, proc, prog: 100005 }), reply);
    t.equal(out, undefined);
    return reply.result();
  };
  return { program, calls, mounts, call };
}

t.test('program identity', async (t) => {
  const { program } = setup();
  t.equal(program.prog, 100005);
  t.equal(program.name, 'mount3');
  t.equal(program.lowVersion, 3);
  t.equal(program.highVersion, 3);
  t.same([0, 1, 2, 3, 4, 5].map((p) => program.procedureName(3, p)), ['NULL', 'MNT', 'DUMP', 'UMNT', 'UMNTALL', 'EXPORT']);
  t.equal(program.procedure(3, 6), undefined);
  t.equal(program.procedure(1, 1), undefined);
});

t.test('NULL is void', async (t) => {
  const { call } = setup();
  t.equal((await call(PROC.NULL, Buffer.alloc(0))).length, 0);
});

t.test('MNT OK: fhandle3 and auth_flavors [AUTH_SYS, AUTH_NONE]', async (t) => {
  const { call, calls, mounts } = setup();
  const bytes = await call(PROC.MNT, new Bytes().opaque('/demo').get());
  t.same(bytes, new Bytes().u32(0).opaque(FH).u32(2).u32(1).u32(0).get());
  t.equal(calls.length, 1);
  t.same(calls[0]!.args, ['/demo']);
  t.equal(calls[0]!.caller.identity, 'tcp:10.0.0.5');
  t.same(mounts.entriesOf('tcp:10.0.0.5'), [{ hostname: 'tcp:10.0.0.5', directory: '/demo' }]);
});

t.test('MNT keeps the bytes of a path that is not UTF-8', async (t) => {
  const { call, calls } = setup();
  const raw = Buffer.from([0x2f, 0x64, 0x65, 0x6d, 0x6f, 0x2f, 0xff, 0xfe]); // "/demo/" + two non-UTF-8 bytes
  await call(PROC.MNT, new Bytes().opaque(raw).get());
  t.same(Buffer.from(calls[0]!.args[0] as string, 'latin1'), raw, 'the service sees the exact bytes');
});

t.test('MNT failure: status only, not recorded', async (t) => {
  const { call, mounts } = setup();
  const bytes = await call(PROC.MNT, new Bytes().opaque('/nope').get());
  t.same(bytes, new Bytes().u32(Mountstat3.MNT3ERR_NOENT).get());
  t.equal(mounts.size, 0);
});

t.test('MNT garbage: truncated or longer than MNTPATHLEN', async (t) => {
  const { program, calls } = setup();
  const args = new Bytes().opaque('/demo').get();
  for (let cut = 0; cut < args.length; cut++) {
    const err = await Promise.resolve(program.procedure(3, PROC.MNT)!(makeCall(args.subarray(0, cut)), newReply())).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof XdrError, `cut ${cut}`);
  }
  const long = new Bytes().opaque('/' + 'a'.repeat(1024)).get();
  await t.rejects(async () => program.procedure(3, PROC.MNT)!(makeCall(long), newReply()), { code: 'XDR_TOO_LONG' });
  t.equal(calls.length, 0);
});

t.test('EXPORT lists only the asking peer\'s shares, grouped by the peer', async (t) => {
  const { call } = setup();
  const mine = await call(PROC.EXPORT, Buffer.alloc(0));
  t.same(
    mine,
    new Bytes()
      .u32(1).opaque('/demo').u32(1).opaque('tcp:10.0.0.5').u32(0)
      .u32(1).opaque('/data').u32(1).opaque('tcp:10.0.0.5').u32(0)
      .u32(0)
      .get(),
  );
  const theirs = await call(PROC.EXPORT, Buffer.alloc(0), OTHER_PEER);
  t.same(theirs, new Bytes().u32(1).opaque('/other').u32(1).opaque('cid:7').u32(0).u32(0).get());
  const nobody = await call(PROC.EXPORT, Buffer.alloc(0), { transport: 'hybrid', vm: 'vm9' });
  t.same(nobody, new Bytes().u32(0).get());
});

t.test('DUMP shows each peer only its own mounts; UMNT and UMNTALL remove them', async (t) => {
  const { call } = setup();
  await call(PROC.MNT, new Bytes().opaque('/demo').get());
  await call(PROC.MNT, new Bytes().opaque('/data').get());
  await call(PROC.MNT, new Bytes().opaque('/other').get(), OTHER_PEER);

  t.same(
    await call(PROC.DUMP, Buffer.alloc(0)),
    new Bytes()
      .u32(1).opaque('tcp:10.0.0.5').opaque('/demo')
      .u32(1).opaque('tcp:10.0.0.5').opaque('/data')
      .u32(0)
      .get(),
  );
  t.same(await call(PROC.DUMP, Buffer.alloc(0), OTHER_PEER), new Bytes().u32(1).opaque('cid:7').opaque('/other').u32(0).get());

  // UMNT by another peer of my directory changes nothing of mine.
  t.equal((await call(PROC.UMNT, new Bytes().opaque('/demo').get(), OTHER_PEER)).length, 0);
  t.equal((await call(PROC.UMNT, new Bytes().opaque('/demo').get())).length, 0);
  t.same(await call(PROC.DUMP, Buffer.alloc(0)), new Bytes().u32(1).opaque('tcp:10.0.0.5').opaque('/data').u32(0).get());

  t.equal((await call(PROC.UMNTALL, Buffer.alloc(0))).length, 0);
  t.same(await call(PROC.DUMP, Buffer.alloc(0)), new Bytes().u32(0).get());
  t.same(await call(PROC.DUMP, Buffer.alloc(0), OTHER_PEER), new Bytes().u32(1).opaque('cid:7').opaque('/other').u32(0).get());
});

t.test('UMNT garbage is XdrError', async (t) => {
  const { program } = setup();
  await t.rejects(async () => program.procedure(3, PROC.UMNT)!(makeCall(new Bytes().u32(5).get()), newReply()), {
    code: 'XDR_SHORT',
  });
});

t.test('the mount list is bounded: the oldest entry goes first', async (t) => {
  const list = new MountList(3);
  list.add('a', '/1');
  list.add('a', '/2');
  list.add('b', '/3');
  list.add('a', '/1'); // refreshed: now the newest
  list.add('c', '/4');
  t.equal(list.size, 3);
  t.same(list.entriesOf('a'), [{ hostname: 'a', directory: '/1' }]);
  t.same(list.entriesOf('b'), [{ hostname: 'b', directory: '/3' }]);
  t.same(list.entriesOf('c'), [{ hostname: 'c', directory: '/4' }]);
});
