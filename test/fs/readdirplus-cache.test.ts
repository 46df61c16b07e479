// The READDIRPLUS listing cache (native-bridges/src/listing_cache.h): a service whose backend keeps
// listings answers byte for byte what the uncached JavaScript path answers, at every budget and
// page, while the cache really serves (its hit counter moves); and the attacks and changes it must
// not hide: a CREATE, WRITE, SETATTR, RENAME or LINK through the gateway seen at once; a change
// made on the host seen at once when it touches the directory, and within the share's
// listing_cache_ms when it touches only an entry; a caller who may not list or search the
// directory never served from a listing another caller filled; another share of the same
// directory never given this share's handles; a revoked grant; and a cache turned off.
import t, { type Test } from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { fsBridge } from '../../src/native/fsbridge.js';
import { ShareFileService } from '../../src/fs/service.js';
import type { NfsFileService } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { CreateMode, Nfs3Status, StableHow, type Sattr3 } from '../../src/nfs3/types.js';
import { PEER, alphaGrant, alphaGrants, makeListingFixtures } from '../helpers/inplace-share.js';
import { type Page, allNames, callReaddirplus, compareListing, parsePage } from '../helpers/readdirplus-pages.js';

const native = fsBridge();
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mg-rdp-cache-')));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const shareDir = path.join(dir, 'exports', 'alpha');
mkdirSync(path.join(shareDir, 'other'), { recursive: true });
chmodSync(shareDir, 0o777);
for (const name of ['file', 'empty', 'n', 'nn', 'nnn', 'nnnn', 'L'.repeat(255)]) writeFileSync(path.join(shareDir, name), name === 'file' ? 'x'.repeat(5000) : '');
makeListingFixtures(shareDir);

const { grants, codec } = alphaGrants(dir);
// beta: alpha's directory bind-mounted as another share (another guest's): the same dev and ino,
// its own handles and listings (needs root and mount)
mkdirSync(path.join(dir, 'exports', 'beta'));
const bound = process.getuid?.() === 0 && spawnSync('mount', ['--bind', shareDir, path.join(dir, 'exports', 'beta')]).status === 0;
if (bound) {
  t.teardown(() => void spawnSync('umount', ['-l', path.join(dir, 'exports', 'beta')]));
  grants.upsert({ ...alphaGrant, id: 'g-beta', share: 'beta', path: 'beta' });
}
const exportsDir = path.join(dir, 'exports');
const serviceWith = (listingCacheMs: number): ShareFileService => {
  const s = new ShareFileService({
    native,
    grants,
    backends: { rootOf: (id) => (id === 'local' ? exportsDir : undefined), listingCacheMsOf: () => listingCacheMs },
    codec,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => s.close());
  return s;
};
const cached = serviceWith(60_000);
const shortLived = serviceWith(400);
const uncached = serviceWith(0);
/** The JavaScript path of the uncached service: what every reply must equal. */
const jsPath = { readdirplus: uncached.readdirplus.bind(uncached) } as unknown as NfsFileService;

const user = { uid: 1000, gid: 100, gids: [100, 10] };
const root = { uid: 0, gid: 0, gids: [0] };
const callerOf = (who: { uid: number; gid: number; gids: number[] }) =>
  ({ peer: PEER, identity: 'tcp:10.0.0.5', flavor: AuthFlavor.AUTH_SYS, authSys: { stamp: 1, machineName: 'guest', ...who } });

async function mountRoot(s: ShareFileService, share: string): Promise<Buffer> {
  const mounted = await s.mount(callerOf(user), `/${share}`);
  if (!mounted.handle) throw new Error(`MNT /${share}: ${mounted.status}`);
  return mounted.handle;
}
async function fhOf(s: ShareFileService, dirFh: Buffer, name: string): Promise<Buffer> {
  const found = await s.lookup(callerOf(user), dirFh, Buffer.from(name));
  if (found.status !== Nfs3Status.NFS3_OK) throw new Error(`lookup ${name}: ${found.status}`);
  return found.handle!;
}
const hits = (): number => native.listingCacheStats().hits;
/** The whole listing through `fs`, one 64 KiB page at a time. */
async function listAll(fs: NfsFileService, fh: Buffer, who = user): Promise<Page[]> {
  const pages: Page[] = [];
  for (let cookie = 0n, n = 0; n < 1000; n++) {
    const page = parsePage(t, await callReaddirplus(fs, PEER, fh, cookie, Buffer.alloc(8), 0, 65536, who));
    pages.push(page);
    if (page.status !== 0 || page.eof || page.lastCookie === null) break;
    cookie = page.lastCookie;
  }
  return pages;
}
const attrOf = (pages: Page[], name: string): Buffer | undefined => pages.map((p) => p.attrs.get(name)).find(Boolean);
/** fattr3's size (bytes 20..28), mode (bytes 4..8) and nlink (bytes 8..12). */
const sizeIn = (attr: Buffer | undefined): bigint => attr!.readBigUInt64BE(20);
const modeIn = (attr: Buffer | undefined): number => attr!.readUInt32BE(4);
const nlinkIn = (attr: Buffer | undefined): number => attr!.readUInt32BE(8);
const sattr = (set: Partial<Sattr3>): Sattr3 => ({ atime: { how: 'dont' }, mtime: { how: 'dont' }, ...set });
/** Directories changed within a second are not filled (their ctime could hide the next change). */
const settle = (): Promise<void> => sleep(1100);

let rootFh: Buffer;
t.before(async () => {
  rootFh = await mountRoot(cached, 'alpha');
  // First listings move directories' atimes (relatime); then their times are set, and the
  // directories left alone for a second so they may be filled.
  for (const sub of ['', 'big', 'other', 'noexec']) await listAll(jsPath, sub ? await fhOf(cached, rootFh, sub) : rootFh);
  const now = Date.now() / 1000;
  for (const sub of ['', 'big', 'other', 'noexec', 'noread']) utimesSync(path.join(shareDir, sub), now + 3600, now - 60);
  await settle();
});

t.test('byte-identical to the uncached path at every budget, served from the cache', async (t) => {
  const big = await fhOf(cached, rootFh, 'big');
  for (const fh of [rootFh, big]) {
    for (const [dircount, maxcount] of [[0, 1 << 20], [65536, 65536], [8192, 32768], [512, 4096], [100, 1000], [0, 1000], [40, 65536]]) {
      const before = hits();
      const pages = await compareListing(t, jsPath, cached, PEER, fh, dircount!, maxcount!, `${fh === big ? 'big' : 'root'} ${dircount}/${maxcount}`);
      t.ok(pages.at(-1)?.eof, 'ends with eof');
      if (fh === big) t.equal(allNames(pages).length, 3002, 'every entry once');
      if (pages.length > 1) t.ok(hits() > before, `${dircount}/${maxcount}: ${hits() - before} of ${pages.length} pages from the cache`);
    }
  }
  // TOOSMALL and every budget around one entry, from a listing already filled
  for (let maxcount = 0; maxcount <= 700; maxcount += 1) {
    const want = await callReaddirplus(jsPath, PEER, rootFh, 0n, Buffer.alloc(8), 0, maxcount);
    const got = await callReaddirplus(cached, PEER, rootFh, 0n, Buffer.alloc(8), 0, maxcount);
    if (!got.equals(want)) t.fail(`maxcount ${maxcount} differs`);
  }
  // a cookie no listing has: the uncached path's answer
  t.same(await callReaddirplus(cached, PEER, rootFh, 12345n, Buffer.alloc(8), 0, 65536), await callReaddirplus(jsPath, PEER, rootFh, 12345n, Buffer.alloc(8), 0, 65536));
  const stats = native.listingCacheStats();
  t.ok(stats.fills >= 2 && stats.bytes > 0 && stats.listings >= 2, `fills ${stats.fills}, ${stats.bytes} bytes in ${stats.listings} listings`);
});

t.test('changes through the gateway are seen at once, whatever the timestamps', async (t) => {
  const other = await fhOf(cached, rootFh, 'other');
  await listAll(cached, other);
  await listAll(cached, other); // filled
  const me = callerOf(root); // the objects are root's
  const created = await cached.create(me, other, Buffer.from('made'), { mode: CreateMode.UNCHECKED, attributes: sattr({ mode: 0o644 }) });
  t.equal(created.status, Nfs3Status.NFS3_OK, 'CREATE');
  t.ok(allNames(await listAll(cached, other)).includes('made'), 'a CREATE: in the next listing');
  await compareListing(t, jsPath, cached, PEER, other, 0, 65536, 'after CREATE');

  await settle();
  await listAll(cached, rootFh);
  await listAll(cached, rootFh);
  const file = await fhOf(cached, rootFh, 'file');
  const before = hits();
  const wrote = await cached.write(me, file, 0n, StableHow.FILE_SYNC, Buffer.alloc(9000, 0x61));
  t.equal(wrote.status, Nfs3Status.NFS3_OK, 'WRITE');
  const pages = await compareListing(t, jsPath, cached, PEER, rootFh, 0, 65536, 'after WRITE');
  t.equal(sizeIn(attrOf(pages, 'file')), 9000n, 'a WRITE: the new size in the next listing');
  t.ok(hits() > before, 'the listing itself still from the cache');

  const set = await cached.setattr(me, file, sattr({ mode: 0o600 }), null);
  t.equal(set.status, Nfs3Status.NFS3_OK, 'SETATTR');
  t.equal(modeIn(attrOf(await listAll(cached, rootFh), 'file')) & 0o7777, 0o600, 'a SETATTR: the new mode');

  const renamed = await cached.rename(me, rootFh, Buffer.from('nn'), other, Buffer.from('moved'));
  t.equal(renamed.status, Nfs3Status.NFS3_OK, 'RENAME');
  t.notOk(allNames(await listAll(cached, rootFh)).includes('nn'), 'a RENAME: gone from the source');
  t.ok(allNames(await listAll(cached, other)).includes('moved'), 'and in the target');

  await settle();
  await listAll(cached, rootFh);
  await listAll(cached, rootFh);
  // a link made in another directory: the root's listing is unchanged, its entry's nlink is not
  const linked = await cached.link(me, await fhOf(cached, rootFh, 'nnn'), other, Buffer.from('again'));
  t.equal(linked.status, Nfs3Status.NFS3_OK, 'LINK');
  const hitsBeforeLink = hits();
  const linkedPages = await compareListing(t, jsPath, cached, PEER, rootFh, 0, 65536, 'after LINK');
  t.equal(nlinkIn(attrOf(linkedPages, 'nnn')), 2, 'a LINK elsewhere: the new link count in the next listing');
  t.ok(hits() > hitsBeforeLink, 'the listing itself still from the cache');
});

t.test('changes on the host: at once when the directory changed, within listing_cache_ms otherwise', async (t) => {
  const fh = await mountRoot(shortLived, 'alpha');
  await settle();
  await listAll(shortLived, fh);
  await listAll(shortLived, fh); // filled
  writeFileSync(path.join(shareDir, 'from-host'), '');
  t.ok(allNames(await listAll(shortLived, fh)).includes('from-host'), 'a file made on the host: listed at once');

  await settle();
  await listAll(shortLived, fh);
  await listAll(shortLived, fh); // filled again
  const before = hits();
  truncateSync(path.join(shareDir, 'n'), 77);
  const soon = sizeIn(attrOf(await listAll(shortLived, fh), 'n'));
  t.ok(hits() > before, 'served from the cache');
  t.equal(soon, 0n, 'an entry changed on the host: its cached attributes, for now');
  await sleep(450);
  t.equal(sizeIn(attrOf(await listAll(shortLived, fh), 'n')), 77n, 'after listing_cache_ms (400): the new size');
  await compareListing(t, jsPath, shortLived, PEER, fh, 0, 65536, 'after the refill');
});

t.test('a caller who may not list or search is never served from a listing another caller filled', async (t) => {
  const noexec = await fhOf(cached, rootFh, 'noexec');
  const noread = await fhOf(cached, rootFh, 'noread');
  for (let i = 0; i < 3; i++) {
    await listAll(cached, noexec, root);
    await listAll(cached, noread, root);
  }
  const rootView = await listAll(cached, noexec, root);
  t.ok(rootView[0]!.withHandle.has('hidden'), 'root lists noexec with handles');
  const pages = await compareListing(t, jsPath, cached, PEER, noexec, 0, 65536, 'noexec as uid 1000', user);
  t.notOk(pages[0]!.withAttr.has('hidden') || pages[0]!.withHandle.has('hidden'), 'listable, not searchable: no handles, no attributes');
  const [denied] = await compareListing(t, jsPath, cached, PEER, noread, 0, 65536, 'noread as uid 1000', user);
  t.equal(denied!.status, Nfs3Status.NFS3ERR_ACCES, 'not listable: ACCES');
});

t.test('another share of the same directory gets its own handles; a revoked grant gets nothing', { skip: bound ? false : 'needs root and mount --bind' }, async (t) => {
  const betaRoot = await mountRoot(cached, 'beta');
  await listAll(cached, rootFh);
  await listAll(cached, rootFh);
  const alphaPages = await listAll(cached, rootFh);
  const betaPages = await compareListing(t, jsPath, cached, PEER, betaRoot, 0, 65536, 'beta');
  const raw = async (fh: Buffer) => callReaddirplus(cached, PEER, fh, 0n, Buffer.alloc(8), 0, 65536);
  t.not((await raw(betaRoot)).toString('hex'), (await raw(rootFh)).toString('hex'), 'beta\'s reply is not alpha\'s');
  t.same(allNames(betaPages).sort(), allNames(alphaPages).sort(), 'the same names');

  grants.revoke('g-beta');
  const after = await callReaddirplus(cached, PEER, betaRoot, 0n, Buffer.alloc(8), 0, 65536);
  t.same(after, await callReaddirplus(jsPath, PEER, betaRoot, 0n, Buffer.alloc(8), 0, 65536), 'revoked: the uncached answer');
  t.not(after.readUInt32BE(0), Nfs3Status.NFS3_OK, 'revoked: refused');
});

t.test('listing_cache_ms 0: never from the cache', async (t) => {
  const fh = await mountRoot(uncached, 'alpha');
  const before = native.listingCacheStats();
  for (let i = 0; i < 3; i++) await listAll(uncached, fh);
  const after = native.listingCacheStats();
  t.equal(after.hits, before.hits, 'no hits');
  t.equal(after.fills, before.fills, 'no fills');
});

t.test('an out-of-range listingCacheMs is refused by the addon', async (t) => {
  const base = { secret: Buffer.alloc(32, 1), key: Buffer.alloc(8), mountId: 1, dev: 1, ino: 1, handle: Buffer.alloc(20), fsid: 1n };
  t.throws(() => native.shareContext({ ...base, listingCacheMs: -1 }), /listingCacheMs/);
  t.throws(() => native.shareContext({ ...base, listingCacheMs: 1.5 }), /listingCacheMs/);
  t.ok(native.shareContext({ ...base, listingCacheMs: 1000 }));
});

