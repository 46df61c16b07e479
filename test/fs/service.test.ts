// The authorization rules of the share filesystem layer, each attacked directly: forged and
// cross-share handles, `..` and symlink escapes, other guests' shares, revoked grants, squash,
// read-only grants. Runs as root against a real directory through the native bridge.
import t from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, symlinkSync, statSync, chmodSync, chownSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge } from '../../src/native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from '../../src/fs/handle.js';
import { ShareFileService, MountStat } from '../../src/fs/service.js';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';
import type { Caller } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { ACCESS3, CreateMode, Ftype3, Nfs3Status, StableHow } from '../../src/nfs3/types.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-service-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exportsDir = path.join(dir, 'exports');
mkdirSync(path.join(exportsDir, 'alpha', 'sub'), { recursive: true });
mkdirSync(path.join(exportsDir, 'beta'), { recursive: true });
writeFileSync(path.join(exportsDir, 'secret.txt'), 'outside every share\n');
writeFileSync(path.join(exportsDir, 'beta', 'b.txt'), 'beta data\n');
writeFileSync(path.join(exportsDir, 'alpha', 'a.txt'), 'alpha data\n');
symlinkSync('../secret.txt', path.join(exportsDir, 'alpha', 'up-link'));
symlinkSync('/etc/passwd', path.join(exportsDir, 'alpha', 'abs-link'));
chmodSync(path.join(exportsDir, 'alpha'), 0o777);

const grant = (over: Partial<Grant>): Grant => ({
  id: 'g-alpha', share: 'alpha', backend: 'local', path: 'alpha', guest: { tcp: '127.0.0.1' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'static', ...over,
});

const grants = new GrantTable();
grants.upsert(grant({}));
grants.upsert(grant({ id: 'g-beta', share: 'beta', path: 'beta', guest: { tcp: '10.0.0.2' } }));
grants.upsert(grant({ id: 'g-alpha-ro', share: 'alpha', guest: { tcp: '10.0.0.3' }, access: 'ro' }));
grants.upsert(grant({ id: 'g-alpha-sq', share: 'alpha', guest: { tcp: '10.0.0.4' }, squash: 'root' }));
grants.upsert(grant({ id: 'g-alpha-all', share: 'alpha', guest: { tcp: '10.0.0.5' }, squash: 'all', anonUid: 4242, anonGid: 4343 }));

const codec = new HandleCodec(loadHandleSecret(path.join(dir, 'state')));
const service = new ShareFileService({
  native: fsBridge(),
  grants,
  backends: { rootOf: (id) => (id === 'local' ? exportsDir : undefined) },
  codec,
  logger: pino({ level: 'silent' }),
});
t.teardown(() => service.close());

const caller = (address: string, uid = 0, gid = 0, gids: number[] = []): Caller => ({
  peer: { transport: 'tcp', address, port: 1000 },
  identity: `tcp:${address}`,
  flavor: AuthFlavor.AUTH_SYS,
  authSys: { stamp: 0, machineName: 'guest', uid, gid, gids },
});
const root = caller('127.0.0.1');
const B = (s: string) => Buffer.from(s);

async function mountRoot(who: Caller, share = 'alpha'): Promise<Buffer> {
  const result = await service.mount(who, `/${share}`);
  if (result.status !== 0 || !result.handle) throw new Error(`mount ${share}: ${result.status}`);
  return result.handle;
}

t.test('MOUNT: granted shares only, subdirectories, no escapes', async (t) => {
  t.same(service.exportsFor('tcp:127.0.0.1'), ['alpha']);
  t.same(service.exportsFor('tcp:10.0.0.2'), ['beta']);
  t.same(service.exportsFor('tcp:192.0.2.1'), []);
  t.equal((await service.mount(root, '/alpha')).status, MountStat.MNT3_OK);
  t.equal((await service.mount(root, '/beta')).status, MountStat.MNT3ERR_ACCES, "another guest's share");
  t.equal((await service.mount(root, '/nope')).status, MountStat.MNT3ERR_ACCES, 'unknown share looks the same');
  t.equal((await service.mount(root, '/')).status, MountStat.MNT3ERR_ACCES);
  const sub = await service.mount(root, '/alpha/sub');
  t.equal(sub.status, MountStat.MNT3_OK, 'a directory below the root mounts');
  const up = await service.mount(root, '/alpha/..');
  t.equal(up.status, MountStat.MNT3_OK, '.. at the root is the root');
  t.same(up.handle, (await service.mount(root, '/alpha')).handle);
  t.equal((await service.mount(root, '/alpha/a.txt')).status, MountStat.MNT3ERR_NOTDIR);
  t.equal((await service.mount(root, '/alpha/up-link')).status, MountStat.MNT3ERR_NOTDIR, 'symlinks are not followed');
  t.equal((await service.mount(root, '/alpha/missing')).status, MountStat.MNT3ERR_NOENT);
});

t.test('.. at the share root stays at the root', async (t) => {
  const rootFh = await mountRoot(root);
  const up = await service.lookup(root, rootFh, B('..'));
  t.equal(up.status, Nfs3Status.NFS3_OK);
  t.same(up.handle, rootFh, 'LOOKUP .. of the root is the root');
  const upup = await service.lookup(root, up.handle!, B('..'));
  t.same(upup.handle, rootFh);
  const secret = await service.lookup(root, up.handle!, B('secret.txt'));
  t.equal(secret.status, Nfs3Status.NFS3ERR_NOENT, 'the backend directory above is unreachable');
  const sub = await service.lookup(root, rootFh, B('sub'));
  const back = await service.lookup(root, sub.handle!, B('..'));
  t.same(back.handle, rootFh, '.. of a subdirectory is its parent');
  // READDIRPLUS of the root: ".." carries the root's own handle, never the backend's
  const listing = await service.readdirplus(root, rootFh, 0n, Buffer.alloc(8), 65536, 65536);
  const dotdot = listing.entries.find((e) => e.name.toString() === '..');
  t.ok(dotdot, 'listing has ..');
  if (dotdot?.handle) t.same(dotdot.handle, rootFh);
  t.equal(dotdot?.fileid, statSync(path.join(exportsDir, 'alpha')).ino);
});

t.test('names are single components', async (t) => {
  const rootFh = await mountRoot(root);
  for (const bad of ['a/b', '../secret.txt', '/etc', 'x\0y', '']) {
    const result = await service.lookup(root, rootFh, B(bad));
    t.equal(result.status, bad === '' || bad.includes('/') || bad.includes('\0') ? Nfs3Status.NFS3ERR_INVAL : Nfs3Status.NFS3ERR_NOENT, JSON.stringify(bad));
  }
  t.equal((await service.lookup(root, rootFh, B('x'.repeat(256)))).status, Nfs3Status.NFS3ERR_NAMETOOLONG);
  t.equal((await service.create(root, rootFh, B('../evil'), { mode: CreateMode.UNCHECKED, attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } } })).status, Nfs3Status.NFS3ERR_INVAL);
  t.equal((await service.mkdir(root, rootFh, B('..'), { atime: { how: 'dont' }, mtime: { how: 'dont' } })).status, Nfs3Status.NFS3ERR_EXIST);
  t.equal((await service.remove(root, rootFh, B('..'))).status, Nfs3Status.NFS3ERR_INVAL);
  t.equal((await service.rename(root, rootFh, B('a.txt'), rootFh, B('../moved'))).status, Nfs3Status.NFS3ERR_INVAL);
});

t.test('symlinks are never followed on the server', async (t) => {
  const rootFh = await mountRoot(root);
  const link = await service.lookup(root, rootFh, B('up-link'));
  t.equal(link.status, Nfs3Status.NFS3_OK);
  t.equal(link.objAttr?.type, Ftype3.NF3LNK, 'LOOKUP gives the link itself');
  const target = await service.readlink(root, link.handle!);
  t.equal(target.target?.toString(), '../secret.txt', 'READLINK gives the text');
  const buffer = Buffer.alloc(100);
  const read = await service.read(root, link.handle!, 0n, 100, { buffer, offset: 0 });
  t.not(read.status, Nfs3Status.NFS3_OK, 'READ of a symlink handle does not read its target');
  t.notOk(buffer.toString().includes('outside'), 'no byte of the target leaked');
  const abs = await service.lookup(root, rootFh, B('abs-link'));
  const write = await service.write(root, abs.handle!, 0n, StableHow.FILE_SYNC, B('pwned'));
  t.not(write.status, Nfs3Status.NFS3_OK, 'WRITE through a symlink to /etc/passwd is refused');
  t.notOk(readFileSync('/etc/passwd', 'utf8').startsWith('pwned'));
  const list = await service.lookup(root, link.handle!, B('x'));
  t.equal(list.status, Nfs3Status.NFS3ERR_NOTDIR, 'a symlink is not a directory to look up in');
  const setattr = await service.setattr(root, abs.handle!, { size: 0, atime: { how: 'dont' }, mtime: { how: 'dont' } }, null);
  t.not(setattr.status, Nfs3Status.NFS3_OK, 'truncate through a symlink refused');
  t.ok(statSync('/etc/passwd').size > 0);
});

t.test('forged, tampered and cross-share handles', async (t) => {
  const rootFh = await mountRoot(root);
  const a = await service.lookup(root, rootFh, B('a.txt'));
  for (let i = 0; i < a.handle!.length; i++) {
    const forged = Buffer.from(a.handle!);
    forged[i]! ^= 0x01;
    const result = await service.getattr(root, forged);
    t.equal(result.status, Nfs3Status.NFS3ERR_BADHANDLE, `byte ${i} flipped`);
  }
  t.equal((await service.getattr(root, Buffer.alloc(0))).status, Nfs3Status.NFS3ERR_BADHANDLE);
  t.equal((await service.getattr(root, Buffer.alloc(64, 0xff))).status, Nfs3Status.NFS3ERR_BADHANDLE);
  // a handle to the backend's secret.txt built with the right kernel handle but no valid tag
  const native = fsBridge();
  const fs = await import('node:fs');
  const fd = fs.openSync(exportsDir, 'r');
  const kernel = await native.nameToHandle(fd, B('secret.txt'));
  fs.closeSync(fd);
  const shareKey = HandleCodec.shareKey('alpha', 'local', 'alpha');
  const untagged = Buffer.concat([Buffer.from([1, kernel.handle!.bytes.length]), shareKey, Buffer.alloc(4), kernel.handle!.bytes, Buffer.alloc(12)]);
  untagged.writeInt32BE(kernel.handle!.type, 10);
  t.equal((await service.getattr(root, untagged)).status, Nfs3Status.NFS3ERR_BADHANDLE, 'crafted handle to an inode outside the share');
  // beta's handle presented by alpha's guest
  const betaGuest = caller('10.0.0.2');
  const betaRoot = await mountRoot(betaGuest, 'beta');
  const b = await service.lookup(betaGuest, betaRoot, B('b.txt'));
  t.equal(b.status, Nfs3Status.NFS3_OK);
  t.equal((await service.getattr(root, b.handle!)).status, Nfs3Status.NFS3ERR_ACCES, "another guest's handle");
  t.equal((await service.read(root, b.handle!, 0n, 10, { buffer: Buffer.alloc(10), offset: 0 })).status, Nfs3Status.NFS3ERR_ACCES);
  // cross-share rename and link are refused even for a guest granted both (here: none is)
  t.equal((await service.rename(root, rootFh, B('a.txt'), betaRoot, B('x'))).status, Nfs3Status.NFS3ERR_ACCES);
});

t.test('revoked grants take effect on the next request', async (t) => {
  const guest = caller('10.0.0.9');
  grants.upsert(grant({ id: 'g-temp', guest: { tcp: '10.0.0.9' } }));
  const rootFh = await mountRoot(guest);
  t.equal((await service.getattr(guest, rootFh)).status, Nfs3Status.NFS3_OK);
  const a = await service.lookup(guest, rootFh, B('a.txt'));
  t.equal(a.status, Nfs3Status.NFS3_OK);
  grants.revoke('g-temp');
  t.equal((await service.getattr(guest, rootFh)).status, Nfs3Status.NFS3ERR_ACCES, 'root handle refused');
  t.equal((await service.getattr(guest, a.handle!)).status, Nfs3Status.NFS3ERR_ACCES, 'cached handle refused');
  t.equal((await service.mount(guest, '/alpha')).status, MountStat.MNT3ERR_ACCES, 'no new mounts');
  t.same(service.exportsFor('tcp:10.0.0.9'), []);
});

t.test('read-only grants', async (t) => {
  const ro = caller('10.0.0.3');
  const rootFh = await mountRoot(ro);
  const a = await service.lookup(ro, rootFh, B('a.txt'));
  t.equal((await service.write(ro, a.handle!, 0n, StableHow.FILE_SYNC, B('x'))).status, Nfs3Status.NFS3ERR_ROFS);
  t.equal((await service.create(ro, rootFh, B('new'), { mode: CreateMode.GUARDED, attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } } })).status, Nfs3Status.NFS3ERR_ROFS);
  t.equal((await service.remove(ro, rootFh, B('a.txt'))).status, Nfs3Status.NFS3ERR_ROFS);
  t.equal((await service.setattr(ro, a.handle!, { mode: 0o777, atime: { how: 'dont' }, mtime: { how: 'dont' } }, null)).status, Nfs3Status.NFS3ERR_ROFS);
  const access = await service.access(ro, a.handle!, 0x3f);
  t.equal(access.access & (ACCESS3.MODIFY | ACCESS3.EXTEND | ACCESS3.DELETE), 0, 'ACCESS agrees: no write bits');
  t.ok(access.access & ACCESS3.READ);
  const buffer = Buffer.alloc(64);
  const read = await service.read(ro, a.handle!, 0n, 64, { buffer, offset: 0 });
  t.equal(buffer.subarray(0, read.count).toString(), 'alpha data\n', 'reads still work');
});

// A connection's unchanged credential is one object for all its calls (rpc/message.ts), and the
// effective ids are kept per grant and credential: a grant changed in place must still change them.
t.test('a grant changed to squash root squashes the next request of the same credential', async (t) => {
  grants.upsert(grant({ id: 'g-resquash', share: 'alpha', guest: { tcp: '10.0.0.9' } }));
  t.teardown(() => grants.revoke('g-resquash'));
  const same = caller('10.0.0.9', 0, 0, [0]);
  const rootFh = await mountRoot(same);
  const attrs = { mode: 0o644, atime: { how: 'dont' }, mtime: { how: 'dont' } } as const;
  const before = await service.create(same, rootFh, B('resquash-before'), { mode: CreateMode.GUARDED, attributes: attrs });
  t.equal(before.objAttr?.uid, 0, 'squash none: root stays root');
  grants.upsert(grant({ id: 'g-resquash', share: 'alpha', guest: { tcp: '10.0.0.9' }, squash: 'root', anonUid: 5151, anonGid: 5252 }));
  const after = await service.create(same, rootFh, B('resquash-after'), { mode: CreateMode.GUARDED, attributes: attrs });
  t.equal(after.objAttr?.uid, 5151, 'the same credential object, squashed by the new grant');
  t.equal(after.objAttr?.gid, 5252);
  grants.upsert(grant({ id: 'g-resquash', share: 'alpha', guest: { tcp: '10.0.0.9' }, squash: 'all', anonUid: 6161, anonGid: 6262 }));
  const all = await service.create(same, rootFh, B('resquash-all'), { mode: CreateMode.GUARDED, attributes: attrs });
  t.equal(all.objAttr?.uid, 6161, 'then squash all');
  t.equal(all.objAttr?.gid, 6262);
});

t.test('squash root and squash all; objects owned by the caller', async (t) => {
  const squashed = caller('10.0.0.4', 0, 0, [0]);
  const rootFh = await mountRoot(squashed);
  const made = await service.create(squashed, rootFh, B('by-squashed-root'), { mode: CreateMode.GUARDED, attributes: { mode: 0o644, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(made.status, Nfs3Status.NFS3_OK);
  t.equal(made.objAttr?.uid, 65534, 'root squashed to anon uid');
  t.equal(made.objAttr?.gid, 65534);
  const chown = await service.setattr(squashed, made.handle!, { uid: 0, atime: { how: 'dont' }, mtime: { how: 'dont' } }, null);
  t.equal(chown.status, Nfs3Status.NFS3ERR_PERM, 'squashed root cannot chown');
  // a root-owned 0600 file is unreadable to squashed root
  writeFileSync(path.join(exportsDir, 'alpha', 'root-only'), 'root\n', { mode: 0o600 });
  const rootOnly = await service.lookup(squashed, rootFh, B('root-only'));
  const read = await service.read(squashed, rootOnly.handle!, 0n, 10, { buffer: Buffer.alloc(10), offset: 0 });
  t.equal(read.status, Nfs3Status.NFS3ERR_ACCES);
  const access = await service.access(squashed, rootOnly.handle!, ACCESS3.READ);
  t.equal(access.access, 0, 'ACCESS agrees with READ');

  const user = caller('10.0.0.4', 1000, 1000);
  const own = await service.create(user, rootFh, B('by-1000'), { mode: CreateMode.GUARDED, attributes: { mode: 0o600, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(own.objAttr?.uid, 1000, 'non-root uid passes through root squash');
  t.equal(own.objAttr?.mode, 0o600);

  const all = caller('10.0.0.5', 1000, 1000);
  const allRoot = await mountRoot(all);
  const byAll = await service.mkdir(all, allRoot, B('by-all'), { mode: 0o755, atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.equal(byAll.objAttr?.uid, 4242, 'squash all uses the anon ids');
  t.equal(byAll.objAttr?.gid, 4343);
  const noneFlavor: Caller = { ...root, flavor: AuthFlavor.AUTH_NONE, authSys: null };
  const byNone = await service.mkdir(noneFlavor, rootFh, B('by-auth-none'), { mode: 0o755, atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.equal(byNone.objAttr?.uid, 65534, 'AUTH_NONE is anonymous');
});

t.test('POSIX rules through the kernel: sticky, setgid, permissions, owner override', async (t) => {
  const rootFh = await mountRoot(root);
  const pub = await service.mkdir(root, rootFh, B('pub'), { mode: 0o1777, atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.equal(pub.objAttr?.mode, 0o1777);
  const u1000 = caller('127.0.0.1', 1000, 1000);
  const u1001 = caller('127.0.0.1', 1001, 1001);
  const f = await service.create(u1000, pub.handle!, B('mine'), { mode: CreateMode.GUARDED, attributes: { mode: 0o444, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(f.objAttr?.uid, 1000);
  t.equal((await service.remove(u1001, pub.handle!, B('mine'))).status, Nfs3Status.NFS3ERR_PERM, 'sticky: another user cannot delete (EPERM, as locally)');
  t.equal((await service.rename(u1001, pub.handle!, B('mine'), pub.handle!, B('stolen'))).status, Nfs3Status.NFS3ERR_PERM, 'sticky: nor rename');
  const w = await service.write(u1000, f.handle!, 0n, StableHow.FILE_SYNC, B('owner writes'));
  t.equal(w.status, Nfs3Status.NFS3_OK, 'the owner writes its own 0444 file (NFS owner override)');
  t.equal((await service.write(u1001, f.handle!, 0n, StableHow.FILE_SYNC, B('x'))).status, Nfs3Status.NFS3ERR_ACCES, 'others do not');

  const sgid = path.join(exportsDir, 'alpha', 'team');
  mkdirSync(sgid);
  chownSync(sgid, 0, 777);
  chmodSync(sgid, 0o2777);
  const team = await service.lookup(u1000, rootFh, B('team'));
  const inTeam = await service.create(u1000, team.handle!, B('f'), { mode: CreateMode.GUARDED, attributes: { mode: 0o644, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(inTeam.objAttr?.gid, 777, 'setgid directory: group inherited');
  const sub = await service.mkdir(u1000, team.handle!, B('d'), { mode: 0o755, atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.equal(sub.objAttr!.mode & 0o2000, 0o2000, 'setgid propagates to subdirectories');

  const locked = await service.mkdir(root, rootFh, B('locked'), { mode: 0o700, atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.equal((await service.lookup(u1000, locked.handle!, B('x'))).status, Nfs3Status.NFS3ERR_ACCES, 'no search permission');
  const acc = await service.access(u1000, locked.handle!, 0x3f);
  t.equal(acc.access, 0, 'ACCESS agrees');
  const grp = caller('127.0.0.1', 1000, 1000, [777]);
  const viaGroup = await service.create(grp, team.handle!, B('g'), { mode: CreateMode.GUARDED, attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(viaGroup.status, Nfs3Status.NFS3_OK);

  t.equal((await service.mknod(root, rootFh, B('dev'), { type: Ftype3.NF3CHR, attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } }, spec: { specdata1: 1, specdata2: 3 } })).status, Nfs3Status.NFS3ERR_PERM, 'devices refused, even for root');
  const fifo = await service.mknod(root, rootFh, B('fifo'), { type: Ftype3.NF3FIFO, attributes: { mode: 0o644, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(fifo.objAttr?.type, Ftype3.NF3FIFO, 'FIFOs allowed');
});

t.test('EXCLUSIVE create is idempotent for its verifier only', async (t) => {
  const rootFh = await mountRoot(root);
  const verifier = Buffer.from('0102030405060708', 'hex');
  const first = await service.create(root, rootFh, B('excl'), { mode: CreateMode.EXCLUSIVE, verifier });
  t.equal(first.status, Nfs3Status.NFS3_OK);
  const again = await service.create(root, rootFh, B('excl'), { mode: CreateMode.EXCLUSIVE, verifier });
  t.equal(again.status, Nfs3Status.NFS3_OK, 'a retransmission succeeds');
  t.same(again.handle, first.handle);
  const other = await service.create(root, rootFh, B('excl'), { mode: CreateMode.EXCLUSIVE, verifier: Buffer.alloc(8, 9) });
  t.equal(other.status, Nfs3Status.NFS3ERR_EXIST, 'another verifier gets EXIST');
  const guarded = await service.create(root, rootFh, B('excl'), { mode: CreateMode.GUARDED, attributes: { atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(guarded.status, Nfs3Status.NFS3ERR_EXIST);
  writeFileSync(path.join(exportsDir, 'alpha', 'trunc-me'), 'some bytes');
  const unchecked = await service.create(root, rootFh, B('trunc-me'), { mode: CreateMode.UNCHECKED, attributes: { size: 0, mode: 0o600, atime: { how: 'dont' }, mtime: { how: 'dont' } } });
  t.equal(unchecked.status, Nfs3Status.NFS3_OK);
  t.equal(statSync(path.join(exportsDir, 'alpha', 'trunc-me')).size, 0, 'UNCHECKED on an existing file applies the size');
  t.equal(statSync(path.join(exportsDir, 'alpha', 'trunc-me')).mode & 0o777, 0o644, 'but not the mode');
});

t.test('handles survive a restart of the layer (same secret)', async (t) => {
  const rootFh = await mountRoot(root);
  const a = await service.lookup(root, rootFh, B('a.txt'));
  const fresh = new ShareFileService({
    native: fsBridge(), grants, backends: { rootOf: () => exportsDir }, codec: new HandleCodec(loadHandleSecret(path.join(dir, 'state'))), logger: pino({ level: 'silent' }),
  });
  await fresh.openShare('alpha');
  const attr = await fresh.getattr(root, a.handle!);
  t.equal(attr.status, Nfs3Status.NFS3_OK);
  t.equal(attr.attr?.fileid, statSync(path.join(exportsDir, 'alpha', 'a.txt')).ino);
  t.not(fresh.writeVerifier.toString('hex'), service.writeVerifier.toString('hex'), 'write verifier changes on every start');
  fresh.close();
});

t.test('MNT of a directory whose name is not UTF-8; READDIRPLUS with dircount 0', async (t) => {
  const raw = Buffer.from([0x6e, 0xff, 0xfe]);
  mkdirSync(Buffer.concat([Buffer.from(path.join(exportsDir, 'alpha') + '/'), raw]));
  const mounted = await service.mount(root, '/alpha/' + raw.toString('latin1'));
  t.equal(mounted.status, MountStat.MNT3_OK, 'mounted by its exact bytes');
  const rootFh = await mountRoot(root);
  const listing = await service.readdirplus(root, rootFh, 0n, Buffer.alloc(8), 0, 65536);
  t.ok(listing.entries.length > 5, `dircount 0 sets no separate limit (${listing.entries.length} entries)`);
  t.ok(listing.entries.some((e) => e.name.equals(raw)), 'the raw name is listed byte for byte');
});

t.test('a directory moved out of the share does not lead upward', async (t) => {
  const rootFh = await mountRoot(root);
  mkdirSync(path.join(exportsDir, 'alpha', 'leaving', 'inner'), { recursive: true });
  const leaving = await service.lookup(root, rootFh, B('leaving'));
  const inner = await service.lookup(root, leaving.handle!, B('inner'));
  t.same((await service.lookup(root, inner.handle!, B('..'))).handle, leaving.handle, '.. works while inside');
  const plus = await service.readdirplus(root, inner.handle!, 0n, Buffer.alloc(8), 65536, 65536);
  const dotdot = plus.entries.find((e) => e.name.toString() === '..');
  t.equal(dotdot?.handle, null, "READDIRPLUS leaves a subdirectory's .. handle to LOOKUP");
  // the host (or a guest of an enclosing share) moves it out of the share
  const { renameSync } = await import('node:fs');
  renameSync(path.join(exportsDir, 'alpha', 'leaving'), path.join(exportsDir, 'left'));
  const up = await service.lookup(root, inner.handle!, B('..'));
  t.equal(up.status, Nfs3Status.NFS3ERR_STALE, 'LOOKUP .. from outside the share is refused');
  const upup = await service.lookup(root, leaving.handle!, B('..'));
  t.equal(upup.status, Nfs3Status.NFS3ERR_STALE, 'even one level below the old place');
  t.equal((await service.lookup(root, leaving.handle!, B('secret.txt'))).status, Nfs3Status.NFS3ERR_NOENT);
  renameSync(path.join(exportsDir, 'left'), path.join(exportsDir, 'alpha', 'leaving'));
  t.same((await service.lookup(root, inner.handle!, B('..'))).handle, leaving.handle, 'back inside, it works again');
});

t.test('a file unlinked on the host is stale', async (t) => {
  const rootFh = await mountRoot(root);
  writeFileSync(path.join(exportsDir, 'alpha', 'doomed'), 'x');
  const doomed = await service.lookup(root, rootFh, B('doomed'));
  t.equal((await service.getattr(root, doomed.handle!)).status, Nfs3Status.NFS3_OK);
  (await import('node:fs')).unlinkSync(path.join(exportsDir, 'alpha', 'doomed'));
  t.equal((await service.getattr(root, doomed.handle!)).status, Nfs3Status.NFS3ERR_STALE);
  t.equal((await service.getattr(root, doomed.handle!)).status, Nfs3Status.NFS3ERR_STALE, 'and stays stale');
});

t.test('sattr3 values no backend can take are refused, not thrown', async (t) => {
  const rootFh = await mountRoot(root);
  const a = await service.lookup(root, rootFh, B('a.txt'));
  const keep = { atime: { how: 'dont' as const }, mtime: { how: 'dont' as const } };
  t.equal((await service.setattr(root, a.handle!, { ...keep, uid: 0xffffffff }, null)).status, Nfs3Status.NFS3ERR_INVAL, 'uid -1');
  t.equal((await service.setattr(root, a.handle!, { ...keep, gid: 0xffffffff }, null)).status, Nfs3Status.NFS3ERR_INVAL, 'gid -1');
  t.equal((await service.setattr(root, a.handle!, { ...keep, size: 2 ** 63 }, null)).status, Nfs3Status.NFS3ERR_FBIG);
  t.equal((await service.setattr(root, a.handle!, { atime: { how: 'client', time: { seconds: 1, nseconds: 1e9 } }, mtime: { how: 'dont' } }, null)).status, Nfs3Status.NFS3ERR_INVAL, 'nseconds out of range');
  t.equal((await service.setattr(root, a.handle!, keep, { seconds: 1, nseconds: 2e9 })).status, Nfs3Status.NFS3ERR_INVAL, 'guard nseconds');
  t.equal((await service.mkdir(root, rootFh, B('bad-owner'), { ...keep, uid: 0xffffffff })).status, Nfs3Status.NFS3ERR_INVAL, 'MKDIR checks before creating');
  t.notOk((await import('node:fs')).existsSync(path.join(exportsDir, 'alpha', 'bad-owner')));
});

t.test('a spliced READ that finds no pipe is counted once, by the copying READ that answers', async (t) => {
  const ops: string[] = [];
  const bytes: number[] = [];
  const native = fsBridge();
  // The pipe quota spent: the addon answers ENOBUFS and the handler falls back to a copy.
  const noPipes = Object.create(native, {
    readToPipe: { value: async () => ({ err: os.constants.errno.ENOBUFS, count: 0 }) },
  }) as typeof native;
  const counted = new ShareFileService({
    native: noPipes, grants, backends: { rootOf: () => exportsDir }, codec, logger: pino({ level: 'silent' }),
    observer: {
      onOp: (share, procedure, status) => ops.push(`${share} ${procedure} ${status}`),
      onRead: (_share, n) => bytes.push(n),
      onWrite: () => undefined,
    },
  });
  t.teardown(() => counted.close());
  const rootFh = (await counted.mount(root, '/alpha')).handle!;
  const file = await counted.lookup(root, rootFh, B('a.txt'));
  ops.length = 0;
  const spliced = await counted.readToPipe!(root, file.handle!, 0n, 65536);
  t.equal(spliced.copyInstead, true, 'no pipe: read by copy instead');
  t.same(ops, [], 'the attempt is not an answer, so it is not counted');
  const buffer = Buffer.alloc(65536 + 256);
  const copied = await counted.readInPlace!(root, file.handle!, 0n, 65536, { buffer, offset: 128, attrOffset: 8 });
  t.equal(copied.count, 11);
  t.same(ops, [`alpha read ${Nfs3Status.NFS3_OK}`], 'one READ, one count');
  t.same(bytes, [11]);
});
