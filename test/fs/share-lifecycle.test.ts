// Share roots follow the grant table: a share that loses its last grant (or moves) is closed,
// never under a request still using it; a revoked share's handles answer ACCES, a moved share's
// STALE, a re-granted share's work again. Runs as root against a real directory through the native
// bridge; descriptors are counted in /proc/self/fd.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge, type FsBridge } from '../../src/native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from '../../src/fs/handle.js';
import { ShareFileService, MountStat } from '../../src/fs/service.js';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';
import type { Caller } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { Nfs3Status } from '../../src/nfs3/types.js';

const real = fsBridge();
real.raiseFileLimit(); // the 10,000-share test holds 10,000 roots at once

const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mg-lifecycle-')));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exportsDir = path.join(dir, 'exports');
const BIG = 8 * 1024 * 1024;
for (const share of ['one', 'two', 'three', 'four', 'moved', 'moved2', 'five', 'six']) {
  mkdirSync(path.join(exportsDir, share, 'sub'), { recursive: true });
  writeFileSync(path.join(exportsDir, share, 'a.txt'), `${share} data\n`);
}
writeFileSync(path.join(exportsDir, 'two', 'big'), Buffer.alloc(BIG, 0x5a));
for (let i = 0; i < 300; i++) writeFileSync(path.join(exportsDir, 'two', `f${i}`), '');
const codec = new HandleCodec(loadHandleSecret(path.join(dir, 'state')));

const grant = (over: Partial<Grant> & Pick<Grant, 'id' | 'share'>): Grant => ({
  backend: 'local', path: over.share, guest: { tcp: '127.0.0.1' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'controller', ...over,
});

const caller = (address: string): Caller => ({
  peer: { transport: 'tcp', address, port: 1000 },
  identity: `tcp:${address}`,
  flavor: AuthFlavor.AUTH_SYS,
  authSys: { stamp: 0, machineName: 'guest', uid: 0, gid: 0, gids: [] },
});
const guestA = caller('127.0.0.1');
const guestB = caller('10.0.0.2');
const B = (s: string) => Buffer.from(s);

/** A gate a wrapped native call waits at: `entered` resolves when the call arrives, `open()` lets it go. */
function gate() {
  let open!: () => void;
  let arrived!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const entered = new Promise<void>((resolve) => (arrived = resolve));
  return { opened, entered, arrived, open };
}
type Gate = ReturnType<typeof gate>;

/** A service over its own grant table, with a native bridge that records closes and can hold calls. */
function setup(t: Test) {
  const closed: number[] = [];
  const gates: { read?: Gate; readdir?: Gate; openByHandle?: Gate } = {};
  const native: FsBridge = {
    ...real,
    close(fd) {
      closed.push(fd);
      real.close(fd);
    },
    async read(...args) {
      const g = gates.read;
      if (g) {
        g.arrived();
        await g.opened;
      }
      return real.read(...args);
    },
    async openByHandle(...args) {
      const g = gates.openByHandle;
      if (g) {
        g.arrived();
        await g.opened;
      }
      return real.openByHandle(...args);
    },
    async readdir(...args) {
      const g = gates.readdir;
      if (g) {
        g.arrived();
        await g.opened;
      }
      return real.readdir(...args);
    },
  };
  const grants = new GrantTable();
  const service = new ShareFileService({
    native,
    grants,
    backends: { rootOf: (id) => (id === 'local' ? exportsDir : undefined) },
    codec,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => service.close());
  return { grants, service, closed, gates };
}

/** Descriptors of this process open on `where` or anything beneath it. */
function fdsUnder(where: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target === where || target.startsWith(`${where}/`)) count++;
    } catch {
      // the directory listing's own fd, closed by now
    }
  }
  return count;
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

async function mountRoot(service: ShareFileService, who: Caller, share: string): Promise<Buffer> {
  const result = await service.mount(who, `/${share}`);
  if (result.status !== MountStat.MNT3_OK || !result.handle) throw new Error(`mount ${share}: ${result.status}`);
  return result.handle;
}

async function lookup(service: ShareFileService, who: Caller, dirFh: Buffer, name: string): Promise<Buffer> {
  const found = await service.lookup(who, dirFh, B(name));
  if (found.status !== Nfs3Status.NFS3_OK || !found.handle) throw new Error(`lookup ${name}: ${found.status}`);
  return found.handle;
}

const readInto = (service: ShareFileService, who: Caller, fh: Buffer, count: number) => {
  const buffer = Buffer.alloc(count);
  return service.read(who, fh, 0n, count, { buffer, offset: 0 }).then((result) => ({ ...result, data: buffer.subarray(0, result.count) }));
};

t.test('revoking the only grant closes the root and the cached objects', async (t) => {
  const { grants, service, closed } = setup(t);
  const where = path.join(exportsDir, 'one');
  grants.upsert(grant({ id: 'g1', share: 'one' }));
  const rootFh = await mountRoot(service, guestA, 'one');
  const file = await lookup(service, guestA, rootFh, 'a.txt');
  const sub = await lookup(service, guestA, rootFh, 'sub');
  t.equal((await service.getattr(guestA, file)).status, Nfs3Status.NFS3_OK);
  t.equal((await service.getattr(guestA, sub)).status, Nfs3Status.NFS3_OK);
  const rootFd = service.shares.get('one')!.fd;
  t.equal(service.openShareCount, 1);
  t.equal(fdsUnder(where), 3, 'root, a.txt and sub are open');
  t.equal(service.shareOps().get('one'), 4, 'LOOKUP x2 and GETATTR x2 counted (MOUNT is not)');

  grants.revoke('g1');
  t.equal(service.openShareCount, 0, 'out of the registry at once');
  t.ok(closed.includes(rootFd), 'root fd closed');
  t.equal(fdsUnder(where), 0, 'no descriptor left on the share');
  t.equal(service.shares.get('one'), undefined);
  t.equal(service.shareOps().get('one'), 4, 'the count outlives the root');
});

t.test('a revoke during a slow operation closes the root after it, not before', async (t) => {
  const { grants, service, closed, gates } = setup(t);
  const where = path.join(exportsDir, 'two');
  grants.upsert(grant({ id: 'g2', share: 'two' }));
  const rootFh = await mountRoot(service, guestA, 'two');
  const big = await lookup(service, guestA, rootFh, 'big');
  const rootFd = service.shares.get('two')!.fd;

  gates.readdir = gate();
  gates.read = gate();
  const listing = service.readdir(guestA, rootFh, 0n, Buffer.alloc(8), 1024 * 1024);
  const reading = readInto(service, guestA, big, BIG);
  await Promise.all([gates.readdir.entered, gates.read.entered]);
  grants.revoke('g2');
  t.equal(service.openShareCount, 0, 'retired at once');
  t.notOk(closed.includes(rootFd), 'root fd still open while READDIR and READ run');
  t.equal(fdsUnder(where), 2, 'the root and the file being read stay open');
  t.equal((await service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3ERR_ACCES, 'new requests are refused meanwhile');

  gates.readdir.open();
  const listed = await listing;
  t.equal(listed.status, Nfs3Status.NFS3_OK, 'READDIR completes');
  t.ok(listed.entries.some((e) => e.name.toString() === 'f299'), 'with the entries of the directory');
  t.notOk(closed.includes(rootFd), 'READ still holds the root');
  gates.read.open();
  const read = await reading;
  t.equal(read.status, Nfs3Status.NFS3_OK, 'READ completes');
  t.equal(read.count, BIG);
  t.ok(read.data.every((b) => b === 0x5a), 'with the right bytes');
  t.ok(closed.includes(rootFd), 'root fd closed after the last operation');
  t.equal(fdsUnder(where), 0, 'and the file too');
});

t.test('a revoke right after an operation starts: it completes, nothing stays open', async (t) => {
  const { grants, service, gates } = setup(t);
  const where = path.join(exportsDir, 'two');
  grants.upsert(grant({ id: 'g2b', share: 'two' }));
  const rootFh = await mountRoot(service, guestA, 'two');
  const big = await lookup(service, guestA, rootFh, 'big');
  t.equal((await service.getattr(guestA, big)).status, Nfs3Status.NFS3_OK, 'cached');
  // no gate: revoked in the same tick the operations start
  const reading = readInto(service, guestA, big, BIG);
  const plus = service.readdirplus(guestA, rootFh, 0n, Buffer.alloc(8), 0, 1024 * 1024);
  grants.revoke('g2b');
  const [read, listed] = await Promise.all([reading, plus]);
  t.equal(read.status, Nfs3Status.NFS3_OK);
  t.equal(read.count, BIG);
  t.equal(listed.status, Nfs3Status.NFS3_OK);
  t.ok(listed.entries.length > 300);
  t.equal(fdsUnder(where), 0);

  // an object whose open_by_handle_at is under way when the share is retired: the root stays
  // open for the open, and the object is used but not cached
  grants.upsert(grant({ id: 'g2c', share: 'two' }));
  const file = await lookup(service, guestA, await mountRoot(service, guestA, 'two'), 'a.txt');
  gates.openByHandle = gate();
  const attr = service.getattr(guestA, file);
  await gates.openByHandle.entered;
  grants.revoke('g2c');
  gates.openByHandle.open();
  t.equal((await attr).status, Nfs3Status.NFS3_OK, 'granted when it started');
  t.equal(fdsUnder(where), 0, 'the object opened for it is closed after it');
});

t.test('revoked: ACCES, whether or not the share is still open for another guest', async (t) => {
  const { grants, service, closed } = setup(t);
  grants.upsert(grant({ id: 'ga', share: 'three' }));
  grants.upsert(grant({ id: 'gb', share: 'three', guest: { tcp: '10.0.0.2' } }));
  const rootA = await mountRoot(service, guestA, 'three');
  const fileA = await lookup(service, guestA, rootA, 'a.txt');
  const rootB = await mountRoot(service, guestB, 'three');
  const fileB = await lookup(service, guestB, rootB, 'a.txt');
  t.same(rootA, rootB, 'one share, one root handle');
  const rootFd = service.shares.get('three')!.fd;

  grants.revoke('ga');
  t.equal((await service.getattr(guestA, rootA)).status, Nfs3Status.NFS3ERR_ACCES, 'root handle');
  t.equal((await service.getattr(guestA, fileA)).status, Nfs3Status.NFS3ERR_ACCES, 'file handle');
  t.equal((await service.getattr(guestB, rootB)).status, Nfs3Status.NFS3_OK, 'the other guest keeps working');
  t.equal((await readInto(service, guestB, fileB, 100)).data.toString(), 'three data\n');
  t.equal(service.openShareCount, 1, 'the root stays open');
  t.notOk(closed.includes(rootFd));

  grants.revoke('gb');
  t.equal(service.openShareCount, 0, 'closed with its last grant');
  t.ok(closed.includes(rootFd));
  for (const [who, fh, what] of [[guestA, rootA, 'A root'], [guestA, fileA, 'A file'], [guestB, rootB, 'B root'], [guestB, fileB, 'B file']] as const) {
    t.equal((await service.getattr(who, fh)).status, Nfs3Status.NFS3ERR_ACCES, `${what}: still ACCES once the share is closed`);
  }
  t.equal((await service.mount(guestB, '/three')).status, MountStat.MNT3ERR_ACCES);
  t.equal(service.openShareCount, 0, 'refused handles re-open nothing');
});

t.test('re-granted at the same place: old handles work; moved: STALE', async (t) => {
  const { grants, service } = setup(t);
  grants.upsert(grant({ id: 'g4', share: 'four' }));
  const rootFh = await mountRoot(service, guestA, 'four');
  const file = await lookup(service, guestA, rootFh, 'a.txt');
  t.equal((await service.getattr(guestA, file)).status, Nfs3Status.NFS3_OK);
  grants.revoke('g4');
  t.equal((await service.getattr(guestA, file)).status, Nfs3Status.NFS3ERR_ACCES);

  // granted again under another grant id, and used before any MOUNT: re-opened on demand
  grants.upsert(grant({ id: 'g4-again', share: 'four' }));
  t.equal(service.openShareCount, 0);
  t.equal((await readInto(service, guestA, file, 100)).data.toString(), 'four data\n', 'file handle works again');
  t.equal(service.openShareCount, 1, 're-opened by the request');
  t.equal((await service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3_OK, 'root handle works again');
  t.same(await mountRoot(service, guestA, 'four'), rootFh, 'MOUNT gives the same root handle');
  t.equal(service.shareOps().get('four'), 4, 'LOOKUP, GETATTR, READ, GETATTR: counted across retire and re-open');

  // a grant to a guest of a share that is gone and back: the root handle first this time
  grants.revoke('g4-again');
  grants.upsert(grant({ id: 'g4-b', share: 'four', guest: { tcp: '10.0.0.2' } }));
  t.equal((await service.getattr(guestB, rootFh)).status, Nfs3Status.NFS3_OK, 'another guest granted the same place');
  t.equal((await service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3ERR_ACCES, 'but not the revoked one');
  grants.revoke('g4-b');

  // the same share id at another path: the old handles name a place the share no longer is
  grants.upsert(grant({ id: 'g4-moved', share: 'four', path: 'moved' }));
  t.equal((await service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3ERR_STALE, 'moved: root handle stale');
  t.equal((await service.getattr(guestA, file)).status, Nfs3Status.NFS3ERR_STALE, 'moved: file handle stale');
  const movedRoot = await mountRoot(service, guestA, 'four');
  t.equal((await readInto(service, guestA, await lookup(service, guestA, movedRoot, 'a.txt'), 100)).data.toString(), 'moved data\n', 'the new place mounts and reads');

  // moved by replacing its only grant while open: retired at once, old handles stale
  const before = service.shares.get('four')!;
  grants.upsert(grant({ id: 'g4-moved', share: 'four', path: 'moved2' }));
  t.not(service.shares.get('four'), before, 'the old root is out of the registry');
  t.equal(before.retired, true);
  t.equal(before.fd, -1, 'and closed');
  t.equal((await service.getattr(guestA, movedRoot)).status, Nfs3Status.NFS3ERR_STALE);
  t.equal(service.openShareCount, 0, 'a stale handle opens nothing');
  t.equal((await service.getattr(guestA, await mountRoot(service, guestA, 'four'))).status, Nfs3Status.NFS3_OK);
});

t.test('after a restart a granted share opens on its handle; a key neither granted nor remembered is STALE', async (t) => {
  const { grants, service } = setup(t);
  grants.upsert(grant({ id: 'g5', share: 'five' }));
  grants.upsert(grant({ id: 'g6', share: 'six' }));
  const rootFh = await mountRoot(service, guestA, 'five');
  const sixFh = await mountRoot(service, guestA, 'six');
  // a fresh layer (a restart) that has not opened the share and never retired it
  const other = setup(t);
  other.grants.upsert(grant({ id: 'g5', share: 'five' }));
  t.equal(other.service.openShareCount, 0, 'nothing open yet');
  t.equal((await other.service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3_OK, 'the handle opens its granted share (no MNT needed)');
  t.equal((await other.service.getattr(guestA, sixFh)).status, Nfs3Status.NFS3ERR_STALE, 'a share not granted here and never seen: STALE');
});

t.test('a share revoked while its root is being opened is not registered', async (t) => {
  const { grants, service } = setup(t);
  const where = path.join(exportsDir, 'six');
  grants.upsert(grant({ id: 'g6', share: 'six' }));
  const opening = service.openShare('six');
  const mounting = service.mount(guestA, '/six');
  grants.revoke('g6');
  await t.rejects(opening, { code: 'SHARE_NOT_GRANTED' });
  t.equal((await mounting).status, MountStat.MNT3ERR_ACCES, 'a MOUNT racing the revoke is refused');
  t.equal(service.openShareCount, 0);
  t.equal(fdsUnder(where), 0, 'the descriptor opened meanwhile is closed');

  // revoked and granted again before the open finishes: registered
  grants.upsert(grant({ id: 'g6', share: 'six' }));
  const again = service.openShare('six');
  grants.revoke('g6');
  grants.upsert(grant({ id: 'g6', share: 'six' }));
  const root = await again;
  t.equal(service.shares.get('six'), root);
  t.equal(fdsUnder(where), 1);

  // moved while opening: the old location's open is dropped
  grants.revoke('g6');
  grants.upsert(grant({ id: 'g6', share: 'six' }));
  const old = service.openShare('six');
  grants.upsert(grant({ id: 'g6', share: 'six', path: 'five' }));
  await t.rejects(old, { code: 'SHARE_NOT_GRANTED' });
  t.equal(fdsUnder(where), 0);
});

t.test('10,000 shares granted, then a snapshot revokes them all', async (t) => {
  const { grants, service } = setup(t);
  const many = path.join(exportsDir, 'many');
  const count = 10_000;
  const all: Grant[] = [];
  for (let i = 0; i < count; i++) {
    mkdirSync(path.join(many, `s${i}`), { recursive: true });
    all.push(grant({ id: `m${i}`, share: `s${i}`, path: `many/s${i}` }));
  }
  writeFileSync(path.join(many, 's7', 'f'), 'x');
  const baseline = fdCount();
  grants.replaceAll(all);
  for (let i = 0; i < count; i += 500) {
    await Promise.all(all.slice(i, i + 500).map((g) => service.openShare(g.share)));
  }
  t.equal(service.openShareCount, count);
  const rootFh = await mountRoot(service, guestA, 's7');
  t.equal((await service.getattr(guestA, await lookup(service, guestA, rootFh, 'f'))).status, Nfs3Status.NFS3_OK, 'one cached object');
  t.equal(fdsUnder(many), count + 1);

  const started = process.hrtime.bigint();
  grants.replaceAll([]);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.comment(`retired ${count} shares in ${ms.toFixed(0)} ms`);
  t.equal(service.openShareCount, 0);
  t.equal(fdsUnder(many), 0, 'no descriptor left on any of them');
  t.ok(fdCount() <= baseline, 'back to where it started');
  t.equal((await service.getattr(guestA, rootFh)).status, Nfs3Status.NFS3ERR_ACCES);
});

t.test('grant churn does not leak descriptors', async (t) => {
  const { grants, service } = setup(t);
  const where = path.join(exportsDir, 'one');
  const round = async (i: number) => {
    grants.upsert(grant({ id: `churn-${i}`, share: 'one' }));
    const rootFh = await mountRoot(service, guestA, 'one');
    const file = await lookup(service, guestA, rootFh, 'a.txt');
    const read = await readInto(service, guestA, file, 100);
    if (read.status !== Nfs3Status.NFS3_OK) throw new Error(`round ${i}: READ ${read.status}`);
    await service.readdirplus(guestA, rootFh, 0n, Buffer.alloc(8), 0, 65536);
    grants.revoke(`churn-${i}`);
  };
  await round(-1); // warm up whatever the first round opens for good (threadpool, ...)
  const before = fdCount();
  for (let i = 0; i < 200; i++) await round(i);
  const after = fdCount();
  t.equal(fdsUnder(where), 0, 'nothing left open on the share');
  t.ok(after <= before, `descriptors before ${before}, after ${after}`);
  t.equal(service.openShareCount, 0);
  t.equal(service.shareOps().get('one'), 201 * 3, 'LOOKUP, READ and READDIRPLUS of every round counted');
});

t.test('a share path through a symlink is refused: two shares could otherwise be one directory', async (t) => {
  const { grants, service } = setup(t);
  const { symlinkSync } = await import('node:fs');
  symlinkSync('six', path.join(exportsDir, 'six-link'));
  grants.upsert(grant({ id: 'g-six', share: 'six' }));
  grants.upsert(grant({ id: 'g-alias', share: 'alias', path: 'six-link' }));
  await service.openShare('six');
  await t.rejects(service.openShare('alias'), { code: 'SHARE_PATH_SYMLINK', message: /goes through a symlink \(it is six in backend local\)/ });
  t.equal((await service.mount(guestA, '/alias')).status, MountStat.MNT3ERR_IO, 'and cannot be mounted');
});
