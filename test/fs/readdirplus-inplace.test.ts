// READDIRPLUS encoded in place by the native side (ShareFileService.readdirplusInPlace, the program's
// path when the layer has it) against the JavaScript path it replaces (ShareFileService.readdirplus
// + encodeReaddirplus3Res): every reply byte-identical, page after page, over entries of every type,
// names of every padding, budgets from TOOSMALL up, `..` in and below the share root, entries a
// caller may list but not look up, a mount point inside the share, and the error replies.
import t, { type Test } from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge } from '../../src/native/fsbridge.js';
import { ShareFileService } from '../../src/fs/service.js';
import type { NfsFileService } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { READDIRPLUS_HEADER_MAX } from '../../src/nfs3/readdirplus.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import { PEER, alphaGrants, makeListingFixtures, mountInside } from '../helpers/inplace-share.js';
import { type Page, allNames, callReaddirplus, compareListing as compareWith, difference, parsePage } from '../helpers/readdirplus-pages.js';

const isRoot = process.getuid?.() === 0;
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mg-rdp-inplace-')));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const shareDir = path.join(dir, 'exports', 'alpha');
mkdirSync(path.join(shareDir, 'sub', 'deeper'), { recursive: true });
chmodSync(shareDir, 0o755);

// every type, and names of every length modulo 4, up to NAME_MAX, some not UTF-8
writeFileSync(path.join(shareDir, 'file'), 'x'.repeat(70_000));
writeFileSync(path.join(shareDir, 'empty'), '');
symlinkSync('file', path.join(shareDir, 'link'));
symlinkSync('/nowhere/at/all', path.join(shareDir, 'dangling'));
execFileSync('mkfifo', [path.join(shareDir, 'fifo')]);
if (isRoot) execFileSync('mknod', [path.join(shareDir, 'null'), 'c', '1', '3']);
for (let n = 1; n <= 9; n++) writeFileSync(path.join(shareDir, 'n'.repeat(n)), '');
writeFileSync(path.join(shareDir, 'L'.repeat(255)), '');
writeFileSync(Buffer.concat([Buffer.from(shareDir + '/'), Buffer.from([0xff, 0xfe, 0x41])]), 'not utf-8');
writeFileSync(path.join(shareDir, 'sub', 'inner'), '');
// big/, and noexec/ and noread/ for the caller (uid 1000 in makeCall)
makeListingFixtures(shareDir);

const server = net.createServer();
t.teardown(() => server.close());

// a mount point inside the share: its entry gets neither handle nor attributes
const mounted = mountInside(t, shareDir, isRoot);

const { grants, codec } = alphaGrants(dir);
const service = new ShareFileService({
  native: fsBridge(),
  grants,
  backends: { rootOf: (id) => (id === 'local' ? path.join(dir, 'exports') : undefined) },
  codec,
  logger: pino({ level: 'silent' }),
});
t.teardown(() => service.close());
/** The same service without readdirplusInPlace: the program's JavaScript path. */
const jsPath = { readdirplus: service.readdirplus.bind(service) } as unknown as NfsFileService;
t.ok(service.readdirplusInPlace, 'the service encodes in place');

const caller = { peer: PEER, identity: 'tcp:10.0.0.5', flavor: AuthFlavor.AUTH_SYS, authSys: { stamp: 1, machineName: 'guest', uid: 1000, gid: 100, gids: [100, 10] } };
let rootFh: Buffer;
async function fhOf(dirFh: Buffer, name: string): Promise<Buffer> {
  const found = await service.lookup(caller, dirFh, Buffer.from(name));
  if (found.status !== Nfs3Status.NFS3_OK) throw new Error(`lookup ${name}: ${found.status}`);
  return found.handle!;
}

const call = (fs: NfsFileService, fh: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number): Promise<Buffer> =>
  callReaddirplus(fs, PEER, fh, cookie, verf, dircount, maxcount);
const parse = (reply: Buffer): Page => parsePage(t, reply);
const compareListing = (t: Test, fh: Buffer, dircount: number, maxcount: number, what: string): Promise<Page[]> =>
  compareWith(t, jsPath, service, PEER, fh, dircount, maxcount, what);

t.before(async () => {
  await new Promise<void>((resolve) => server.listen(path.join(shareDir, 'sock'), resolve));
  const mountedRoot = await service.mount(caller, '/alpha');
  if (!mountedRoot.handle) throw new Error(`MNT /alpha: ${mountedRoot.status}`);
  rootFh = mountedRoot.handle;
  // Directories' atimes move on their first listing (relatime): list each once, then set them
  // ahead of their mtimes, so no listing below moves them again.
  for (const sub of ['', 'sub', 'big', 'noexec']) {
    const fh = sub ? await fhOf(rootFh, sub) : rootFh;
    for (let cookie = 0n, eof = false; !eof;) {
      const page = parse(await call(jsPath, fh, cookie, Buffer.alloc(8), 0, 1 << 20));
      eof = page.eof || page.lastCookie === null;
      cookie = page.lastCookie ?? 0n;
    }
  }
  const now = Date.now() / 1000;
  for (const sub of ['', 'sub', 'big', 'noexec', 'noread']) utimesSync(path.join(shareDir, sub), now + 3600, now - 60);
});

t.test('the share root: every type, .. is the root, byte-identical at every budget', async (t) => {
  for (const [dircount, maxcount] of [[0, 1 << 20], [65536, 65536], [0, 65536], [4096, 8192], [1024, 4096], [100, 1000], [10, 1000], [0, 2000]]) {
    const pages = await compareListing(t, rootFh, dircount!, maxcount!, `root ${dircount}/${maxcount}`);
    const names = allNames(pages);
    t.ok(names.includes('..') && names.includes('.') && names.includes('file') && names.includes('L'.repeat(255)), 'all names listed');
    t.equal(new Set(names).size, names.length, 'each once');
    t.ok(pages.at(-1)?.eof, 'ends with eof');
    if (dircount === 0 && maxcount === 1 << 20) {
      const page = pages[0] ?? parse(Buffer.alloc(4, 0xff));
      t.ok(page.withHandle.has('..') && page.withAttr.has('..'), '.. of the root: handle and attributes');
      t.ok(page.withHandle.has('file') && page.withAttr.has('file') && page.withAttr.has('link') && page.withAttr.has('fifo'));
      if (mounted) t.ok(!page.withHandle.has('mnt') && !page.withAttr.has('mnt'), 'a mount point: no handle, no attributes');
    }
  }
});

t.test('maxcount from TOOSMALL upwards: the same reply, entry by entry', async (t) => {
  let tooSmall = 0;
  for (let maxcount = 0; maxcount <= 1200; maxcount += maxcount < 200 ? 1 : 7) {
    const js = await call(jsPath, rootFh, 0n, Buffer.alloc(8), 0, maxcount);
    const native = await call(service, rootFh, 0n, Buffer.alloc(8), 0, maxcount);
    if (!native.equals(js)) t.fail(`maxcount ${maxcount}: ${difference(native, js)}`);
    if (native.readUInt32BE(0) === Nfs3Status.NFS3ERR_TOOSMALL) tooSmall++;
  }
  t.ok(tooSmall > 100, `TOOSMALL below one entry (${tooSmall} budgets)`);
  t.equal(READDIRPLUS_HEADER_MAX, 100);
});

t.test('dircount from 1 upwards, and each page resumed from the last cookie', async (t) => {
  for (let dircount = 1; dircount <= 400; dircount += 3) {
    const js = await call(jsPath, rootFh, 0n, Buffer.alloc(8), dircount, 65536);
    const native = await call(service, rootFh, 0n, Buffer.alloc(8), dircount, 65536);
    if (!native.equals(js)) t.fail(`dircount ${dircount}: ${difference(native, js)}`);
  }
  const pages = await compareListing(t, rootFh, 40, 65536, 'root, dircount 40');
  t.ok(pages.length > 5, `${pages.length} pages`);
});

t.test('a subdirectory: .. has neither handle nor attributes', async (t) => {
  const sub = await fhOf(rootFh, 'sub');
  const pages = await compareListing(t, sub, 0, 65536, 'sub');
  t.same(allNames(pages).sort(), ['.', '..', 'deeper', 'inner']);
  t.notOk(pages[0]!.withHandle.has('..') || pages[0]!.withAttr.has('..'));
  t.ok(pages[0]!.withHandle.has('inner'));
  await compareListing(t, await fhOf(sub, 'deeper'), 0, 4096, 'deeper');
});

t.test('3000 entries over many pages and getdents batches', async (t) => {
  const big = await fhOf(rootFh, 'big');
  for (const [dircount, maxcount] of [[0, 1 << 20], [65536, 65536], [8192, 32768], [512, 4096], [0, 1000]]) {
    const pages = await compareListing(t, big, dircount!, maxcount!, `big ${dircount}/${maxcount}`);
    t.equal(allNames(pages).length, 3002, `${dircount}/${maxcount}: every entry once, in ${pages.length} pages`);
  }
});

t.test('a directory the caller may list but not search: entries without handles or attributes', async (t) => {
  const noexec = await fhOf(rootFh, 'noexec');
  const pages = await compareListing(t, noexec, 0, 65536, 'noexec');
  t.same(allNames(pages).sort(), ['.', '..', 'hidden']);
  t.notOk(pages[0]!.withAttr.has('hidden') || pages[0]!.withHandle.has('hidden'));
});

t.test('error replies: not listable, not a directory, a bad cookie verifier', async (t) => {
  const [denied] = await compareListing(t, await fhOf(rootFh, 'noread'), 0, 65536, 'noread');
  t.equal(denied!.status, Nfs3Status.NFS3ERR_ACCES);
  const [notDir] = await compareListing(t, await fhOf(rootFh, 'file'), 0, 65536, 'file');
  t.equal(notDir!.status, Nfs3Status.NFS3ERR_NOTDIR);
  const js = await call(jsPath, rootFh, 5n, Buffer.from('badverf!'), 0, 65536);
  const native = await call(service, rootFh, 5n, Buffer.from('badverf!'), 0, 65536);
  t.same(native, js);
  t.equal(native.readUInt32BE(0), Nfs3Status.NFS3ERR_BAD_COOKIE);
  const stale = Buffer.from(rootFh);
  stale[stale.length - 1]! ^= 1;
  t.same(await call(service, stale, 0n, Buffer.alloc(8), 0, 65536), await call(jsPath, stale, 0n, Buffer.alloc(8), 0, 65536), 'bad handle');
});
