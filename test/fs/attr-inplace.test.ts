// GETATTR, LOOKUP and READ encoded in place by the native side (ShareFileService.getattrInPlace,
// lookupInPlace and readInPlace, the program's path when the layer has them) against the JavaScript
// path they replace (getattr/lookup/read and their encoders): every reply byte-identical, for
// objects of every type, names of every padding, the errors (missing, not searchable, not a
// directory, a mount point inside the share, unlinked on the host, forged and revoked handles), and
// a failure answered at a backend's deadline while the worker still runs, which its late write must
// not touch.
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge, type FsBridge } from '../../src/native/fsbridge.js';
import { ShareFileService } from '../../src/fs/service.js';
import { BackendGate } from '../../src/backends/gate.js';
import type { NfsFileService } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { XdrWriter } from '../../src/rpc/xdr.js';
import { getattr } from '../../src/nfs3/getattr.js';
import { lookup } from '../../src/nfs3/lookup.js';
import { read } from '../../src/nfs3/read.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import { Bytes, makeCall } from '../nfs3/fixtures/helpers.js';
import { PEER, alphaGrant, alphaGrants, mountInside } from '../helpers/inplace-share.js';

const isRoot = process.getuid?.() === 0;
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mg-attr-inplace-')));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const shareDir = path.join(dir, 'exports', 'alpha');
mkdirSync(path.join(shareDir, 'sub'), { recursive: true });
chmodSync(shareDir, 0o755);
writeFileSync(path.join(shareDir, 'file'), 'x'.repeat(70_000));
writeFileSync(path.join(shareDir, 'doomed'), 'unlinked on the host');
symlinkSync('file', path.join(shareDir, 'link'));
symlinkSync('/nowhere/at/all', path.join(shareDir, 'dangling'));
execFileSync('mkfifo', [path.join(shareDir, 'fifo')]);
if (isRoot) execFileSync('mknod', [path.join(shareDir, 'null'), 'c', '1', '3']);
for (let n = 1; n <= 5; n++) writeFileSync(path.join(shareDir, 'n'.repeat(n)), '');
writeFileSync(path.join(shareDir, 'L'.repeat(255)), '');
writeFileSync(Buffer.concat([Buffer.from(shareDir + '/'), Buffer.from([0xff, 0xfe, 0x41])]), 'not utf-8');
mkdirSync(path.join(shareDir, 'noexec'));
writeFileSync(path.join(shareDir, 'noexec', 'hidden'), '');
chmodSync(path.join(shareDir, 'noexec'), 0o744); // the caller (uid 1000) may list it, not look in it

const mounted = mountInside(t, shareDir, isRoot);

const grant = alphaGrant;
const { grants, codec } = alphaGrants(dir);
function serviceWith(native: FsBridge, gate?: BackendGate): ShareFileService {
  const service = new ShareFileService({
    native,
    grants,
    backends: { rootOf: (id) => (id === 'local' ? path.join(dir, 'exports') : undefined), ...(gate ? { gateOf: () => gate } : {}) },
    codec,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => service.close());
  return service;
}
const service = serviceWith(fsBridge());
/** The same service without the in-place methods: the program's JavaScript path. */
const jsPath = { getattr: service.getattr.bind(service), lookup: service.lookup.bind(service), read: service.read.bind(service) } as unknown as NfsFileService;
t.ok(service.getattrInPlace && service.lookupInPlace && service.readInPlace, 'the service encodes in place');

const caller = { peer: PEER, identity: 'tcp:10.0.0.5', flavor: AuthFlavor.AUTH_SYS, authSys: { stamp: 1, machineName: 'guest', uid: 1000, gid: 100, gids: [100, 10] } };

/** One reply (from the status word), through the program handler, behind a 28-byte RPC header. */
async function getattrReply(fs: NfsFileService, fh: Buffer): Promise<Buffer> {
  const reply = new XdrWriter(64);
  for (let i = 0; i < 7; i++) reply.uint32(0xdeadbeef);
  await getattr(fs)(makeCall(new Bytes().opaque(fh).get(), { peer: PEER, proc: 1 }), reply);
  return Buffer.from(reply.result().subarray(28));
}
async function lookupReply(fs: NfsFileService, dirFh: Buffer, name: Buffer): Promise<Buffer> {
  const reply = new XdrWriter(64);
  for (let i = 0; i < 7; i++) reply.uint32(0xdeadbeef);
  await lookup(fs)(makeCall(new Bytes().opaque(dirFh).opaque(name).get(), { peer: PEER, proc: 3 }), reply);
  return Buffer.from(reply.result().subarray(28));
}

async function readReply(fs: NfsFileService, fh: Buffer, offset: bigint, count: number): Promise<Buffer> {
  const reply = new XdrWriter(64);
  for (let i = 0; i < 7; i++) reply.uint32(0xdeadbeef);
  await read(fs)(makeCall(new Bytes().opaque(fh).u64(offset).u32(count).get(), { peer: PEER, proc: 6 }), reply);
  return Buffer.from(reply.result().subarray(28));
}

let rootFh: Buffer;
async function fhOf(dirFh: Buffer, name: string | Buffer): Promise<Buffer> {
  const found = await service.lookup(caller, dirFh, Buffer.from(name));
  if (found.status !== Nfs3Status.NFS3_OK) throw new Error(`lookup ${name.toString()}: ${found.status}`);
  return found.handle!;
}

t.before(async () => {
  const mountedRoot = await service.mount(caller, '/alpha');
  if (!mountedRoot.handle) throw new Error(`MNT /alpha: ${mountedRoot.status}`);
  rootFh = mountedRoot.handle;
});

const names = [
  'file', 'sub', 'link', 'dangling', 'fifo', ...(isRoot ? ['null'] : []), 'n', 'nn', 'nnn', 'nnnn', 'nnnnn', 'L'.repeat(255),
  'noexec', '.',
].map((n) => Buffer.from(n));
names.push(Buffer.from([0xff, 0xfe, 0x41]));

t.test('LOOKUP: every name, the same reply both ways', async (t) => {
  for (const name of names) {
    const inPlace = await lookupReply(service, rootFh, name);
    const js = await lookupReply(jsPath, rootFh, name);
    t.same(inPlace, js, `LOOKUP ${name.toString('latin1')}`);
    t.equal(inPlace.readUInt32BE(0), Nfs3Status.NFS3_OK, `${name.toString('latin1')} found`);
  }
});

t.test('GETATTR: every object, the same reply both ways', async (t) => {
  for (const fh of [rootFh, ...(await Promise.all(names.map((n) => fhOf(rootFh, n))))]) {
    const inPlace = await getattrReply(service, fh);
    t.same(inPlace, await getattrReply(jsPath, fh), 'GETATTR');
    t.equal(inPlace.length, 4 + 84, 'status and fattr3');
  }
});

t.test('LOOKUP errors: the same reply both ways', async (t) => {
  const file = await fhOf(rootFh, 'file');
  const noexec = await fhOf(rootFh, 'noexec');
  const cases: [string, Buffer, Buffer, Nfs3Status][] = [
    ['a missing name', rootFh, Buffer.from('missing'), Nfs3Status.NFS3ERR_NOENT],
    ['a name in a directory the caller may not search', noexec, Buffer.from('hidden'), Nfs3Status.NFS3ERR_ACCES],
    ['a name in a file', file, Buffer.from('x'), Nfs3Status.NFS3ERR_NOTDIR],
    ['..: the share-root rule, left to lookup()', rootFh, Buffer.from('..'), Nfs3Status.NFS3_OK],
    ['an empty name', rootFh, Buffer.alloc(0), Nfs3Status.NFS3ERR_INVAL],
    ['a name with a slash', rootFh, Buffer.from('sub/..'), Nfs3Status.NFS3ERR_INVAL],
    ['a name of 256 bytes', rootFh, Buffer.from('L'.repeat(256)), Nfs3Status.NFS3ERR_NAMETOOLONG],
    ...(mounted ? [['a mount point inside the share', rootFh, Buffer.from('mnt'), Nfs3Status.NFS3ERR_ACCES] as [string, Buffer, Buffer, Nfs3Status]] : []),
  ];
  for (const [what, dirFh, name, expected] of cases) {
    const inPlace = await lookupReply(service, dirFh, name);
    t.same(inPlace, await lookupReply(jsPath, dirFh, name), what);
    t.equal(inPlace.readUInt32BE(0), expected, `${what}: status`);
  }
});

t.test('GETATTR of a file unlinked on the host, and of forged and revoked handles', async (t) => {
  const doomed = await fhOf(rootFh, 'doomed');
  t.equal((await getattrReply(service, doomed)).readUInt32BE(0), Nfs3Status.NFS3_OK);
  unlinkSync(path.join(shareDir, 'doomed'));
  const inPlace = await getattrReply(service, doomed);
  t.same(inPlace, await getattrReply(jsPath, doomed), 'unlinked');
  t.equal(inPlace.readUInt32BE(0), Nfs3Status.NFS3ERR_STALE, 'STALE');

  const forged = Buffer.from(await fhOf(rootFh, 'file'));
  forged[forged.length - 1]! ^= 1;
  const forgedReply = await getattrReply(service, forged);
  t.same(forgedReply, await getattrReply(jsPath, forged), 'forged tag');
  t.equal(forgedReply.readUInt32BE(0), Nfs3Status.NFS3ERR_BADHANDLE);
  t.same(await lookupReply(service, forged, Buffer.from('x')), await lookupReply(jsPath, forged, Buffer.from('x')), 'LOOKUP in a forged handle');

  const file = await fhOf(rootFh, 'file');
  grants.revoke(grant.id);
  try {
    const revoked = await getattrReply(service, file);
    t.same(revoked, await getattrReply(jsPath, file), 'revoked grant');
    t.equal(revoked.readUInt32BE(0), Nfs3Status.NFS3ERR_ACCES);
    const revokedLookup = await lookupReply(service, rootFh, Buffer.from('file'));
    t.same(revokedLookup, await lookupReply(jsPath, rootFh, Buffer.from('file')), 'LOOKUP after the revoke');
    t.equal(revokedLookup.readUInt32BE(0), Nfs3Status.NFS3ERR_ACCES);
  } finally {
    grants.upsert(grant);
  }
});

t.test('READ: sizes, padding, eof, errors, the owner override: the same reply both ways', async (t) => {
  writeFileSync(path.join(shareDir, 'r'), Buffer.from(Array.from({ length: 10_003 }, (_, i) => (i * 13) & 0xff)));
  writeFileSync(path.join(shareDir, 'mine'), 'the owner may read it whatever its mode');
  if (isRoot) execFileSync('chown', ['1000:100', path.join(shareDir, 'mine')]);
  chmodSync(path.join(shareDir, 'mine'), 0o000);
  writeFileSync(path.join(shareDir, 'secret'), 'not for uid 1000');
  chmodSync(path.join(shareDir, 'secret'), 0o600);
  const r = await fhOf(rootFh, 'r');
  const cases: [string, Buffer, bigint, number, Nfs3Status][] = [
    ['4 KiB', r, 0n, 4096, Nfs3Status.NFS3_OK],
    ['1 byte (3 of padding)', r, 5n, 1, Nfs3Status.NFS3_OK],
    ['2 bytes', r, 7n, 2, Nfs3Status.NFS3_OK],
    ['3 bytes', r, 9n, 3, Nfs3Status.NFS3_OK],
    ['to the end (eof)', r, 8000n, 4096, Nfs3Status.NFS3_OK],
    ['past the end', r, 20_000n, 100, Nfs3Status.NFS3_OK],
    ['nothing', r, 0n, 0, Nfs3Status.NFS3_OK],
    ['a directory', await fhOf(rootFh, 'sub'), 0n, 100, Nfs3Status.NFS3ERR_ISDIR],
    ['a FIFO', await fhOf(rootFh, 'fifo'), 0n, 100, Nfs3Status.NFS3ERR_INVAL],
    ['a file the caller may not read', await fhOf(rootFh, 'secret'), 0n, 100, isRoot ? Nfs3Status.NFS3ERR_ACCES : Nfs3Status.NFS3_OK],
    ...(isRoot ? [['its owner, mode 000', await fhOf(rootFh, 'mine'), 0n, 100, Nfs3Status.NFS3_OK] as [string, Buffer, bigint, number, Nfs3Status]] : []),
  ];
  for (const [what, fh, offset, count, expected] of cases) {
    const inPlace = await readReply(service, fh, offset, count);
    t.same(inPlace, await readReply(jsPath, fh, offset, count), what);
    t.equal(inPlace.readUInt32BE(0), expected, `${what}: status`);
    if (expected === Nfs3Status.NFS3_OK) t.equal(inPlace.readUInt32BE(4), 1, `${what}: with attributes`);
  }
});

t.test('a JUKEBOX answered at the deadline is not written over by the late worker', async (t) => {
  const real = fsBridge();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let late = 0;
  const native: FsBridge = {
    ...real,
    async getattrEncode(...args: Parameters<FsBridge['getattrEncode']>) {
      await held;
      late++;
      return real.getattrEncode(...args);
    },
    async lookupEncode(...args: Parameters<FsBridge['lookupEncode']>) {
      await held;
      late++;
      return real.lookupEncode(...args);
    },
    async readEncode(...args: Parameters<FsBridge['readEncode']>) {
      await held;
      late++;
      return real.readEncode(...args);
    },
  };
  const gate = new BackendGate({ limit: 4, timeoutMs: 100 });
  const slow = serviceWith(native, gate);
  const root = (await slow.mount(caller, '/alpha')).handle!;
  const file = await fhOf(rootFh, 'file');
  // kept as the connection would queue them: the reply buffers, not copies
  const replies: { reply: XdrWriter; bytes: Buffer }[] = [];
  for (const run of [
    (reply: XdrWriter) => getattr(slow)(makeCall(new Bytes().opaque(file).get(), { peer: PEER, proc: 1 }), reply),
    (reply: XdrWriter) => lookup(slow)(makeCall(new Bytes().opaque(root).opaque(Buffer.from('file')).get(), { peer: PEER, proc: 3 }), reply),
    (reply: XdrWriter) => read(slow)(makeCall(new Bytes().opaque(file).u64(0n).u32(4096).get(), { peer: PEER, proc: 6 }), reply),
  ]) {
    const reply = new XdrWriter(64);
    await run(reply);
    const bytes = reply.result();
    replies.push({ reply, bytes: Buffer.from(bytes) });
    t.equal(bytes.readUInt32BE(0), Nfs3Status.NFS3ERR_JUKEBOX, 'JUKEBOX at the deadline');
  }
  release();
  while (late < 3 || gate.inflight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  for (const { reply, bytes } of replies) t.same(reply.buffer.subarray(0, bytes.length), bytes, 'the sent reply is unchanged after the late write');
});
