// Tests of the native addon (native-bridges/) through its TypeScript contract. They run as root:
// per-thread credentials, chown and mknod need it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fsBridge, type NativeStat, type NativeDirEntry } from '../../src/native/fsbridge.js';

const nb = fsBridge();

const O_PATH = 0o10000000;
const O_DIRECTORY = 0o200000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_ISGID = 0o2000;
const { EACCES, EPERM, EEXIST, EINVAL, EISDIR, ENOTDIR, ENOENT, EOPNOTSUPP } = os.constants.errno;

const b = (s: string): Buffer => Buffer.from(s);
const creds = (uid: number, gid: number, ...groups: number[]): Uint32Array => Uint32Array.from([uid, gid, ...groups]);
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

const fdsAtStart = fdCount();
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'manila-native-'));
fs.chmodSync(base, 0o755);
const opened: number[] = [];
t.teardown(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** An O_PATH fd for a path (closed at the end, before the fd-leak check). */
async function opath(p: string, flags = 0): Promise<number> {
  const r = await nb.openPath(p, flags);
  if (r.err !== 0) throw new Error(`openPath ${p}: errno ${r.err}`);
  opened.push(r.fd);
  return r.fd;
}

/** A fresh directory under base with the given mode/owner. */
function mkdirp(name: string, mode: number, uid = 0, gid = 0): string {
  const p = path.join(base, name);
  fs.mkdirSync(p);
  fs.chownSync(p, uid, gid);
  fs.chmodSync(p, mode);
  return p;
}

function mkfile(p: string, content: string, mode: number, uid = 0, gid = 0): void {
  fs.writeFileSync(p, content);
  fs.chownSync(p, uid, gid);
  fs.chmodSync(p, mode);
}

const type = (st: NativeStat | undefined): number => (st ? st.mode & S_IFMT : -1);

t.test('exports every FsBridge function', async (t) => {
  for (const name of [
    'nameToHandle', 'openByHandle', 'openPath', 'close', 'fstat', 'lookup', 'accessMask', 'readlink', 'read',
    'write', 'fsync', 'create', 'mkdir', 'mknod', 'symlink', 'unlink', 'rename', 'link', 'setattr', 'readdir',
    'statfs', 'raiseFileLimit',
  ]) {
    t.equal(typeof (nb as unknown as Record<string, unknown>)[name], 'function', name);
  }
});

t.test('handle round trip: nameToHandle -> openByHandle -> fstat', async (t) => {
  const dir = mkdirp('handles', 0o755);
  mkfile(path.join(dir, 'f'), 'hello', 0o644);
  fs.symlinkSync('f', path.join(dir, 'l'));
  const dirFd = await opath(dir);
  const mountFd = await opath(base);
  const h = await nb.nameToHandle(dirFd, b('f'));
  t.equal(h.err, 0);
  t.ok(h.handle && h.handle.bytes.length > 0 && h.handle.bytes.length <= 128);
  t.type(h.mountId, 'number');
  const o = await nb.openByHandle(mountFd, h.handle!, O_PATH);
  t.equal(o.err, 0);
  opened.push(o.fd);
  const st = await nb.fstat(o.fd);
  t.equal(st.err, 0);
  t.equal(st.stat!.ino, fs.statSync(path.join(dir, 'f')).ino);
  t.equal(st.stat!.size, 5);
  t.equal(type(st.stat), S_IFREG);

  // a real (non-O_PATH) mount fd, as the kernel prefers it
  const realMount = fs.openSync(base, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  const o2 = await nb.openByHandle(realMount, h.handle!, O_PATH);
  fs.closeSync(realMount);
  t.equal(o2.err, 0);
  opened.push(o2.fd);
  t.equal((await nb.fstat(o2.fd)).stat!.ino, st.stat!.ino);
  const rdonly = await nb.openByHandle(mountFd, h.handle!, fs.constants.O_RDONLY);
  t.equal(rdonly.err, 0);
  t.equal(fs.readFileSync(rdonly.fd, 'utf8'), 'hello', 'a readable fd when asked for one');
  fs.closeSync(rdonly.fd);

  // the handle of the fd itself (AT_EMPTY_PATH) is the same handle
  const self = await nb.nameToHandle(o.fd, null);
  t.equal(self.err, 0);
  t.same(self.handle, h.handle);
  t.equal(self.mountId, h.mountId);

  // a symlink's handle opens the symlink itself (O_PATH), not its target
  const hl = await nb.nameToHandle(dirFd, b('l'));
  t.equal(hl.err, 0);
  const ol = await nb.openByHandle(mountFd, hl.handle!, O_PATH);
  t.equal(ol.err, 0);
  opened.push(ol.fd);
  t.equal(type((await nb.fstat(ol.fd)).stat), S_IFLNK);

  // a handle that does not exist: an errno, not a rejection
  const missing = await nb.nameToHandle(dirFd, b('nope'));
  t.equal(missing.err, ENOENT);
  const bogus = await nb.openByHandle(mountFd, { type: h.handle!.type, bytes: Buffer.alloc(h.handle!.bytes.length, 0xff) }, O_PATH);
  t.not(bogus.err, 0);
  t.equal(bogus.fd, -1);
  const tooBig = await nb.openByHandle(mountFd, { type: 1, bytes: Buffer.alloc(129) }, O_PATH);
  t.equal(tooBig.err, EINVAL);

  // openPath never follows a symlink
  const lp = await nb.openPath(path.join(dir, 'l'), 0);
  t.equal(lp.err, 0);
  opened.push(lp.fd);
  t.equal(type((await nb.fstat(lp.fd)).stat), S_IFLNK);
  const ld = await nb.openPath(path.join(dir, 'l'), O_DIRECTORY);
  t.not(ld.err, 0);
});

t.test('lookup does not follow a symlink; readlink', async (t) => {
  const dir = mkdirp('lookup', 0o755);
  mkfile(path.join(dir, 'target'), 'x', 0o644);
  fs.symlinkSync('target', path.join(dir, 'link'));
  const dirFd = await opath(dir);
  const r = await nb.lookup(null, dirFd, b('link'));
  t.equal(r.err, 0);
  t.equal(type(r.stat), S_IFLNK);
  t.equal(r.stat!.ino, fs.lstatSync(path.join(dir, 'link')).ino);
  t.ok(r.handle);
  const tgt = await nb.lookup(null, dirFd, b('target'));
  t.not(tgt.stat!.ino, r.stat!.ino);

  const lfd = await opath(path.join(dir, 'link'));
  const rl = await nb.readlink(creds(1000, 1000), lfd);
  t.equal(rl.err, 0);
  t.equal(rl.target!.toString(), 'target');
  t.equal(type(rl.stat), S_IFLNK);
  const ffd = await opath(path.join(dir, 'target'));
  t.equal((await nb.readlink(null, ffd)).err, EINVAL);

  // "." and ".." are fine for lookup
  const dot = await nb.lookup(null, dirFd, b('.'));
  t.equal(dot.err, 0);
  t.equal(dot.stat!.ino, fs.statSync(dir).ino);
  const dotdot = await nb.lookup(null, dirFd, b('..'));
  t.equal(dotdot.err, 0);
  t.equal(dotdot.stat!.ino, fs.statSync(base).ino);
  t.equal((await nb.lookup(null, dirFd, b('missing'))).err, ENOENT);

  // search permission is the caller's
  const closed = mkdirp('lookup-closed', 0o700);
  mkfile(path.join(closed, 'f'), '', 0o644);
  const closedFd = await opath(closed);
  t.equal((await nb.lookup(creds(1000, 1000), closedFd, b('f'))).err, EACCES);
  t.equal((await nb.lookup(null, closedFd, b('f'))).err, 0);
});

t.test('credentials: mkdir as uid 1000', async (t) => {
  const locked = mkdirp('root755', 0o755);
  const open = mkdirp('tmp1777', 0o1777);
  const lockedFd = await opath(locked);
  const openFd = await opath(open);
  const denied = await nb.mkdir(creds(1000, 1000), lockedFd, b('sub'), 0o755);
  t.equal(denied.err, EACCES);
  t.ok(denied.dirBefore && denied.dirAfter, 'dir stats even on failure');
  t.notOk(denied.object);
  t.notOk(fs.existsSync(path.join(locked, 'sub')));

  const made = await nb.mkdir(creds(1000, 1001), openFd, b('sub'), 0o775);
  t.equal(made.err, 0);
  t.equal(made.object!.err, 0);
  t.equal(made.object!.stat!.uid, 1000);
  t.equal(made.object!.stat!.gid, 1001);
  t.equal(type(made.object!.stat), S_IFDIR);
  t.equal(made.object!.stat!.mode & 0o7777, 0o775, 'no umask applied: the client already did');
  t.ok(made.object!.handle);
  const st = fs.statSync(path.join(open, 'sub'));
  t.equal(st.uid, 1000);
  t.equal(st.gid, 1001);
  t.equal(made.dirAfter!.nlink, made.dirBefore!.nlink + 1);

  // the process umask is untouched for everything else
  const um = process.umask();
  t.equal(process.umask(um), um);
  fs.writeFileSync(path.join(base, 'umask-check'), '');
  t.equal(fs.statSync(path.join(base, 'umask-check')).mode & 0o777, 0o666 & ~um);
});

t.test('setgid directory: new objects get the directory group', async (t) => {
  const dir = mkdirp('setgid', 0o2777, 0, 3000);
  const dirFd = await opath(dir);
  const f = await nb.create(creds(1000, 1000), dirFd, b('file'), 0o664, false);
  t.equal(f.err, 0);
  t.equal(f.object!.stat!.uid, 1000);
  t.equal(f.object!.stat!.gid, 3000);
  t.equal(f.object!.stat!.mode & 0o7777, 0o664);
  const d = await nb.mkdir(creds(1000, 1000), dirFd, b('subdir'), 0o755);
  t.equal(d.err, 0);
  t.equal(d.object!.stat!.gid, 3000);
  t.ok(d.object!.stat!.mode & S_ISGID, 'subdirectory inherits setgid');
});

t.test('sticky directory: uid 1001 cannot unlink a file of uid 1000', async (t) => {
  const dir = mkdirp('sticky', 0o1777);
  const dirFd = await opath(dir);
  const f = await nb.create(creds(1000, 1000), dirFd, b('mine'), 0o666, false);
  t.equal(f.err, 0);
  const other = await nb.unlink(creds(1001, 1001), dirFd, b('mine'), false);
  t.equal(other.err, EPERM);
  t.ok(fs.existsSync(path.join(dir, 'mine')));
  const rn = await nb.rename(creds(1001, 1001), dirFd, b('mine'), dirFd, b('stolen'));
  t.equal(rn.err, EPERM);
  const own = await nb.unlink(creds(1000, 1000), dirFd, b('mine'), false);
  t.equal(own.err, 0);
  t.ok(own.dirBefore && own.dirAfter);
  t.notOk(fs.existsSync(path.join(dir, 'mine')));
});

t.test('supplementary groups grant access', async (t) => {
  const dir = mkdirp('groupdir', 0o770, 0, 4000);
  const dirFd = await opath(dir);
  t.equal((await nb.mkdir(creds(1000, 1000), dirFd, b('a'), 0o755)).err, EACCES);
  t.equal((await nb.mkdir(creds(1000, 1000, 4001, 4002), dirFd, b('a'), 0o755)).err, EACCES);
  const ok = await nb.mkdir(creds(1000, 1000, 4001, 4000), dirFd, b('a'), 0o755);
  t.equal(ok.err, 0);
  t.equal(ok.object!.stat!.gid, 1000, 'owned by the primary gid');
  // primary gid counts too
  t.equal((await nb.mkdir(creds(1001, 4000), dirFd, b('b'), 0o755)).err, 0);
  // a full list of 32 groups is accepted
  const many = Array.from({ length: 31 }, (_, i) => 5000 + i).concat([4000]);
  t.equal((await nb.mkdir(creds(1002, 1002, ...many), dirFd, b('c'), 0o755)).err, 0);
});

t.test('root keeps CAP_DAC_OVERRIDE after credential switches', async (t) => {
  const dir = mkdirp('caps', 0o755);
  mkfile(path.join(dir, 'secret'), 'top secret', 0o000);
  const fd = await opath(path.join(dir, 'secret'));
  const dirFd = await opath(dir);
  const tmp = mkdirp('caps-open', 0o1777);
  const tmpFd = await opath(tmp);
  // occupy every threadpool thread with creds ops, several times over
  const ops: Promise<unknown>[] = [];
  for (let i = 0; i < 64; i++) {
    ops.push(nb.mkdir(creds(1000 + (i % 7), 1000), tmpFd, b(`d${i}`), 0o755));
    ops.push(nb.read(creds(1000, 1000), fd, Buffer.alloc(10), 0, 10, 0n));
  }
  const results = await Promise.all(ops);
  t.ok(results.every((r, i) => (i % 2 === 0 ? (r as { err: number }).err === 0 : (r as { err: number }).err === EACCES)));
  // and now as root, on whatever threads: all must read the 0000 file and write in a 0755 dir
  const rootOps = await Promise.all(
    Array.from({ length: 32 }, () => nb.read(null, fd, Buffer.alloc(10), 0, 10, 0n)),
  );
  t.ok(rootOps.every((r) => r.err === 0 && r.count === 10), 'root reads a 0000 file');
  const am = await nb.accessMask(null, fd);
  t.equal(am.mask, 6, 'root: read and write, no execute without x bits');
  const lockedDir = mkdirp('caps-locked', 0o000, 1234, 1234);
  const lockedFd = await opath(lockedDir);
  const mk = await nb.mkdir(null, lockedFd, b('x'), 0o755);
  t.equal(mk.err, 0, 'root creates in a 0000 dir of someone else');
  t.equal(mk.object!.stat!.uid, 0);
  // and the main thread was never affected
  t.equal(fs.readFileSync(path.join(dir, 'secret'), 'utf8'), 'top secret');
  t.ok(dirFd >= 0);
});

t.test('accessMask for owner, group, other', async (t) => {
  const dir = mkdirp('access', 0o755);
  mkfile(path.join(dir, 'f'), 'x', 0o640, 1000, 2000);
  const fd = await opath(path.join(dir, 'f'));
  t.same(await nb.accessMask(creds(1000, 1000), fd), { err: 0, mask: 6 });
  t.same(await nb.accessMask(creds(1001, 2000), fd), { err: 0, mask: 4 });
  t.same(await nb.accessMask(creds(1001, 1001, 2000), fd), { err: 0, mask: 4 });
  t.same(await nb.accessMask(creds(1002, 1002), fd), { err: 0, mask: 0 });
  t.same(await nb.accessMask(null, fd), { err: 0, mask: 6 });
  const sub = mkdirp('access/d', 0o751, 1000, 2000);
  const dfd = await opath(sub);
  t.same(await nb.accessMask(creds(1000, 1000), dfd), { err: 0, mask: 7 });
  t.same(await nb.accessMask(creds(1005, 2000), dfd), { err: 0, mask: 5 });
  t.same(await nb.accessMask(creds(1005, 1005), dfd), { err: 0, mask: 1 });
  t.same(await nb.accessMask(null, dfd), { err: 0, mask: 7 });
  mkfile(path.join(dir, 'x'), '', 0o711, 1000, 2000);
  t.same(await nb.accessMask(creds(1005, 1005), await opath(path.join(dir, 'x'))), { err: 0, mask: 1 });
});

t.test('read and write, with the owner override', async (t) => {
  const dir = mkdirp('io', 0o755);
  const p = path.join(dir, 'ro');
  mkfile(p, '0123456789', 0o444, 1000, 1000);
  const fd = await opath(p);

  // owner writes its own 0444 file; someone else may not
  const w = await nb.write(creds(1000, 1000), fd, b('AB'), 2n, 0);
  t.equal(w.err, 0);
  t.equal(w.count, 2);
  t.equal(w.before!.size, 10);
  t.equal(w.after!.size, 10);
  t.equal(fs.readFileSync(p, 'utf8'), '01AB456789');
  const denied = await nb.write(creds(1001, 1001), fd, b('zz'), 0n, 0);
  t.equal(denied.err, EACCES);
  t.equal(denied.count, 0);

  // reads
  const buf = Buffer.alloc(32, 0x2e);
  const r = await nb.read(creds(1001, 1001), fd, buf, 4, 6, 0n);
  t.equal(r.err, 0);
  t.equal(r.count, 6);
  t.equal(r.eof, false);
  t.equal(buf.subarray(0, 12).toString(), '....01AB45..', 'read straight into buffer at offset');
  const tail = await nb.read(null, fd, buf, 0, 4, 6n);
  t.equal(tail.count, 4);
  t.equal(tail.eof, true, 'position + count reaches the size');
  const past = await nb.read(null, fd, buf, 0, 4, 100n);
  t.same([past.err, past.count, past.eof], [0, 0, true]);
  const short = await nb.read(null, fd, buf, 0, 32, 8n);
  t.same([short.count, short.eof], [2, true]);
  t.equal(short.after!.size, 10);

  // a 0000 file: only the owner (override) and root
  mkfile(path.join(dir, 'none'), 'secret', 0o000, 1000, 1000);
  const nfd = await opath(path.join(dir, 'none'));
  t.equal((await nb.read(creds(1000, 1000), nfd, Buffer.alloc(6), 0, 6, 0n)).count, 6);
  t.equal((await nb.read(creds(1001, 1000), nfd, Buffer.alloc(6), 0, 6, 0n)).err, EACCES);

  // not regular files
  const dfd = await opath(dir);
  t.equal((await nb.read(null, dfd, buf, 0, 4, 0n)).err, EISDIR);
  t.equal((await nb.write(null, dfd, b('x'), 0n, 0)).err, EISDIR);
  fs.symlinkSync('ro', path.join(dir, 'sl'));
  const sfd = await opath(path.join(dir, 'sl'));
  t.equal((await nb.read(null, sfd, buf, 0, 4, 0n)).err, EINVAL);
  fs.mkdirSync(path.join(dir, 'fifo-dir'));
  const fifo = await nb.mknod(null, await opath(path.join(dir, 'fifo-dir')), b('p'), S_IFIFO | 0o666, 0, 0);
  t.equal(fifo.err, 0);
  const ffd = await opath(path.join(dir, 'fifo-dir', 'p'));
  t.equal((await nb.write(null, ffd, b('x'), 0n, 0)).err, EINVAL, 'no blocking open of a FIFO');

  // a write by a non-owner clears setuid (the write runs as the caller)
  mkfile(path.join(dir, 'suid'), 'abc', 0o4777, 1000, 1000);
  const ufd = await opath(path.join(dir, 'suid'));
  t.equal((await nb.write(creds(1001, 1001), ufd, b('x'), 0n, 0)).err, 0);
  t.equal(fs.statSync(path.join(dir, 'suid')).mode & 0o7777, 0o777);

  // argument misuse throws
  t.throws(() => nb.read(null, fd, buf, 30, 10, 0n), TypeError);
  t.throws(() => nb.read(null, fd, buf, 0, 1, 0 as unknown as bigint), TypeError);
});

t.test('write stable=2 and stable=1, fsync', async (t) => {
  const dir = mkdirp('stable', 0o777);
  const dirFd = await opath(dir);
  const c = await nb.create(creds(1000, 1000), dirFd, b('f'), 0o644, true);
  t.equal(c.err, 0);
  const fd = await opath(path.join(dir, 'f'));
  const data = Buffer.alloc(1 << 20, 7);
  const w2 = await nb.write(creds(1000, 1000), fd, data, 0n, 2);
  t.same([w2.err, w2.count, w2.before!.size, w2.after!.size], [0, 1 << 20, 0, 1 << 20]);
  const w1 = await nb.write(creds(1000, 1000), fd, b('end'), BigInt(1 << 20), 1);
  t.same([w1.err, w1.count, w1.after!.size], [0, 3, (1 << 20) + 3]);
  const s = await nb.fsync(fd);
  t.equal(s.err, 0);
  t.equal(s.after!.size, (1 << 20) + 3);
  t.equal((await nb.fsync(dirFd)).err, 0);
  t.equal((await nb.write(null, fd, b('x'), 2n ** 63n, 0)).err, os.constants.errno.EFBIG);
});

/** Pages through a directory; `between` runs after each page. */
async function listAll(
  fd: number,
  page: number,
  plus: boolean,
  between?: (entries: NativeDirEntry[]) => void,
): Promise<{ names: string[]; pages: number; entries: NativeDirEntry[] }> {
  const names: string[] = [];
  const all: NativeDirEntry[] = [];
  let cookie = 0n;
  let pages = 0;
  for (;;) {
    const r = await nb.readdir(null, fd, cookie, page, plus);
    if (r.err !== 0) throw new Error(`readdir errno ${r.err}`);
    pages++;
    for (const e of r.entries) {
      names.push(e.name.toString());
      all.push(e);
    }
    if (r.eof) break;
    if (r.entries.length === 0) throw new Error('no entries and no eof');
    cookie = r.entries[r.entries.length - 1]!.cookie;
    between?.(r.entries);
  }
  return { names, pages, entries: all };
}

t.test('readdir pages through 5000 files by cookie', async (t) => {
  const dir = mkdirp('many', 0o755);
  const expected = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const n = `file-${i}`;
    fs.writeFileSync(path.join(dir, n), '');
    expected.add(n);
  }
  const fd = await opath(dir);
  const { names, pages, entries } = await listAll(fd, 100, false);
  const real = names.filter((n) => n !== '.' && n !== '..');
  t.equal(real.length, 5000, 'every name once');
  t.equal(new Set(real).size, 5000, 'no duplicates');
  t.ok(real.every((n) => expected.has(n)));
  t.ok(names.includes('.') && names.includes('..'), 'the kernel\'s . and .. are included');
  t.ok(pages >= 50 && pages <= 52, `pages: ${pages}`);
  t.ok(entries.every((e) => typeof e.cookie === 'bigint' && e.cookie > 0n));
  t.ok(entries.every((e) => e.handle === undefined && e.stat === undefined), 'no attributes without plus');
  const reg = entries.find((e) => e.name.toString() === 'file-1')!;
  t.equal(reg.dtype, 8);
  t.equal(reg.ino, fs.statSync(path.join(dir, 'file-1')).ino);

  // exactly full pages: eof is reported with the last page or by an empty one, never lost
  const small = mkdirp('small', 0o755);
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(small, `s${i}`), '');
  const sfd = await opath(small);
  const whole = await nb.readdir(null, sfd, 0n, 10, false);
  t.equal(whole.entries.length, 10);
  t.equal(whole.eof, true, 'peek finds the end');
  const part = await nb.readdir(null, sfd, 0n, 4, false);
  t.same([part.entries.length, part.eof], [4, false]);
  t.ok(part.dirStat && type(part.dirStat) === S_IFDIR);
  const zero = await nb.readdir(null, sfd, 0n, 0, false);
  t.same([zero.err, zero.entries.length, zero.eof], [0, 0, false]);

  // a directory the caller cannot read; a non-directory
  const closed = mkdirp('closed-list', 0o711);
  t.equal((await nb.readdir(creds(1000, 1000), await opath(closed), 0n, 10, false)).err, EACCES);
  fs.writeFileSync(path.join(base, 'not-a-dir'), '');
  t.equal((await nb.readdir(null, await opath(path.join(base, 'not-a-dir')), 0n, 10, false)).err, ENOTDIR);
});

t.test('readdir under concurrent changes loses and duplicates nothing that stayed', async (t) => {
  const dir = mkdirp('churn', 0o755);
  const initial: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const n = `orig-${i}`;
    fs.writeFileSync(path.join(dir, n), '');
    initial.push(n);
  }
  const fd = await opath(dir);
  const deleted = new Set<string>();
  let added = 0;
  let k = 0;
  const { names } = await listAll(fd, 100, false, () => {
    for (let j = 0; j < 5; j++) {
      const victim = initial[(k * 617 + j * 131) % initial.length]!;
      k++;
      if (!deleted.has(victim)) {
        fs.unlinkSync(path.join(dir, victim));
        deleted.add(victim);
      }
      fs.writeFileSync(path.join(dir, `new-${added++}`), '');
    }
  });
  t.ok(deleted.size > 50 && added > 100);
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  const dup = [...counts].filter(([, c]) => c > 1);
  t.same(dup, [], 'no name twice');
  const lost = initial.filter((n) => !deleted.has(n) && !counts.has(n));
  t.same(lost, [], 'no surviving name lost');
});

t.test('readdir plus gives handles and attributes', async (t) => {
  const dir = mkdirp('plus', 0o755);
  mkfile(path.join(dir, 'a'), 'aaa', 0o600, 1000, 1000);
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync('a', path.join(dir, 'ln'));
  const fd = await opath(dir);
  const mountFd = await opath(base);
  const r = await nb.readdir(creds(1000, 1000), fd, 0n, 100, true);
  t.equal(r.err, 0);
  t.equal(r.eof, true);
  t.equal(type(r.dirStat), S_IFDIR);
  const by = new Map(r.entries.map((e) => [e.name.toString(), e]));
  t.same([...by.keys()].sort(), ['.', '..', 'a', 'ln', 'sub']);
  for (const e of r.entries) {
    t.ok(e.handle && e.stat && typeof e.mountId === 'number', `${e.name} has handle and stat`);
    t.equal(e.stat!.ino, e.ino);
  }
  t.ok(r.entries.every((e) => Buffer.isBuffer(e.name) && Buffer.isBuffer(e.handle!.bytes)), 'names and handles are Buffers');
  t.equal(by.get('a')!.stat!.size, 3);
  t.equal(by.get('a')!.stat!.uid, 1000);
  t.equal(type(by.get('ln')!.stat), S_IFLNK, 'no symlink followed');
  t.equal(type(by.get('sub')!.stat), S_IFDIR);
  const o = await nb.openByHandle(mountFd, by.get('a')!.handle!, O_PATH);
  opened.push(o.fd);
  t.equal((await nb.fstat(o.fd)).stat!.ino, by.get('a')!.ino);
  const direct = await nb.nameToHandle(fd, b('sub'));
  t.same(by.get('sub')!.handle, direct.handle);
  t.equal(by.get('sub')!.mountId, direct.mountId);

  // names are bytes, not text: a name that is not UTF-8 comes back exactly
  const raw = Buffer.from([0x66, 0xff, 0xfe, 0x80]);
  t.equal((await nb.create(null, fd, raw, 0o644, true)).err, 0);
  const again = await nb.readdir(null, fd, 0n, 100, true);
  const found = again.entries.find((e) => e.name.equals(raw));
  t.ok(found && found.stat && type(found.stat) === S_IFREG, 'non-UTF-8 name listed byte for byte');
  t.equal((await nb.lookup(null, fd, raw)).stat!.ino, found!.ino);
});

t.test('setattr', async (t) => {
  const dir = mkdirp('setattr', 0o777);
  const p = path.join(dir, 'f');
  mkfile(p, '0123456789', 0o644, 1000, 1000);
  const fd = await opath(p);
  const st = (await nb.fstat(fd)).stat!;

  const mismatch = await nb.setattr(null, fd, { mode: 0o600, guardCtime: [st.ctimeSec, st.ctimeNsec + 1 === 1e9 ? 0 : st.ctimeNsec + 1] });
  t.equal(mismatch.err, -1, 'guard mismatch: NOT_SYNC');
  t.equal(mismatch.before!.mode & 0o7777, 0o644);
  t.equal(fs.statSync(p).mode & 0o7777, 0o644, 'nothing changed');

  const guarded = await nb.setattr(creds(1000, 1000), fd, { mode: 0o4600, guardCtime: [st.ctimeSec, st.ctimeNsec] });
  t.equal(guarded.err, 0);
  t.equal(guarded.after!.mode & 0o7777, 0o4600);

  const trunc = await nb.setattr(creds(1000, 1000), fd, { size: 4 });
  t.equal(trunc.err, 0);
  t.equal(trunc.before!.size, 10);
  t.equal(trunc.after!.size, 4);
  t.equal(fs.readFileSync(p, 'utf8'), '0123');
  const grow = await nb.setattr(null, fd, { size: 1 << 20 });
  t.equal(grow.after!.size, 1 << 20);

  // owner override for truncate; a stranger is refused
  fs.chmodSync(p, 0o444);
  t.equal((await nb.setattr(creds(1000, 1000), fd, { size: 1 })).err, 0);
  t.equal((await nb.setattr(creds(1001, 1001), fd, { size: 0 })).err, EACCES);
  t.equal((await nb.setattr(creds(1001, 1001), fd, { mode: 0o777 })).err, EPERM);

  const chown = await nb.setattr(null, fd, { uid: 1234, gid: 5678 });
  t.equal(chown.err, 0);
  t.same([chown.after!.uid, chown.after!.gid], [1234, 5678]);
  t.equal((await nb.setattr(null, fd, { gid: 42 })).after!.uid, 1234, 'uid left alone');
  t.equal((await nb.setattr(creds(1000, 1000), fd, { uid: 1000 })).err, EPERM);

  const times = await nb.setattr(null, fd, { atime: [1_000_000, 5], mtime: [2_000_000, 123456789] });
  t.equal(times.err, 0);
  t.same([times.after!.atimeSec, times.after!.atimeNsec, times.after!.mtimeSec, times.after!.mtimeNsec], [1_000_000, 5, 2_000_000, 123456789]);
  const onlyM = await nb.setattr(null, fd, { mtime: [3_000_000, 0] });
  t.same([onlyM.after!.atimeSec, onlyM.after!.mtimeSec], [1_000_000, 3_000_000], 'atime omitted');
  const now = await nb.setattr(null, fd, { atime: 'now', mtime: 'now' });
  const t0 = Date.now() / 1000;
  t.ok(Math.abs(now.after!.mtimeSec - t0) < 60 && Math.abs(now.after!.atimeSec - t0) < 60);
  // 'now' needs write permission only; a given time needs ownership
  fs.chownSync(p, 1000, 1000);
  fs.chmodSync(p, 0o666);
  t.equal((await nb.setattr(creds(1001, 1001), fd, { mtime: 'now', atime: 'now' })).err, 0);
  t.equal((await nb.setattr(creds(1001, 1001), fd, { mtime: [5, 0] })).err, EPERM);

  // symlinks: chown and times work on the link itself (AT_EMPTY_PATH on an O_PATH fd); no chmod
  fs.symlinkSync('f', path.join(dir, 'l'));
  const lfd = await opath(path.join(dir, 'l'));
  const lchown = await nb.setattr(null, lfd, { uid: 777, gid: 778, mtime: [4_000_000, 9] });
  t.equal(lchown.err, 0);
  const lst = fs.lstatSync(path.join(dir, 'l'));
  t.same([lst.uid, lst.gid, Math.floor(lst.mtimeMs / 1000)], [777, 778, 4_000_000]);
  t.equal(fs.statSync(p).uid, 1000, 'target untouched');
  t.equal((await nb.setattr(null, lfd, { mode: 0o777 })).err, EOPNOTSUPP);
  t.equal((await nb.setattr(null, lfd, { size: 0 })).err, EINVAL);

  const dfd = await opath(dir);
  t.equal((await nb.setattr(null, dfd, { size: 0 })).err, EISDIR);
  const dmode = await nb.setattr(null, dfd, { mode: 0o1770 });
  t.equal(dmode.after!.mode & 0o7777, 0o1770);

  t.throws(() => nb.setattr(null, fd, { mode: -1 }), TypeError);
  t.throws(() => nb.setattr(null, fd, { atime: [1, 2e9] }), TypeError);
  t.throws(() => nb.setattr(null, fd, { mtime: 'later' as 'now' }), TypeError);
});

t.test('rename and link with directory attributes', async (t) => {
  const a = mkdirp('rn-a', 0o777);
  const c = mkdirp('rn-b', 0o777);
  const aFd = await opath(a);
  const cFd = await opath(c);
  await nb.create(creds(1000, 1000), aFd, b('f'), 0o644, true);
  await nb.mkdir(creds(1000, 1000), aFd, b('d'), 0o755);
  const r = await nb.rename(creds(1000, 1000), aFd, b('f'), cFd, b('g'));
  t.equal(r.err, 0);
  t.ok(r.fromDirBefore && r.fromDirAfter && r.toDirBefore && r.toDirAfter);
  t.ok(fs.existsSync(path.join(c, 'g')) && !fs.existsSync(path.join(a, 'f')));
  const rd = await nb.rename(creds(1000, 1000), aFd, b('d'), cFd, b('d2'));
  t.equal(rd.err, 0);
  t.equal(rd.fromDirAfter!.nlink, rd.fromDirBefore!.nlink - 1);
  t.equal(rd.toDirAfter!.nlink, rd.toDirBefore!.nlink + 1);
  const same = await nb.rename(null, cFd, b('g'), cFd, b('h'));
  t.equal(same.err, 0);
  t.same(same.fromDirAfter, same.toDirAfter);
  t.equal((await nb.rename(null, cFd, b('missing'), cFd, b('x'))).err, ENOENT);

  const fd = await opath(path.join(c, 'h'));
  const l = await nb.link(creds(1000, 1000), fd, aFd, b('hard'));
  t.equal(l.err, 0);
  t.equal(l.objectAfter!.nlink, 2);
  t.equal(l.object!.stat!.ino, l.objectAfter!.ino);
  t.ok(l.object!.handle);
  t.ok(l.dirBefore && l.dirAfter);
  t.equal((await nb.link(null, fd, aFd, b('hard'))).err, EEXIST);
  // protected_hardlinks: a stranger cannot link someone else's file it cannot write
  mkfile(path.join(c, 'root-file'), '', 0o600);
  const rfd = await opath(path.join(c, 'root-file'));
  t.equal((await nb.link(creds(1000, 1000), rfd, aFd, b('stolen'))).err, EPERM);
  // a symlink is linked itself, not its target
  fs.symlinkSync('h', path.join(c, 'sym'));
  const sfd = await opath(path.join(c, 'sym'));
  const ls = await nb.link(null, sfd, aFd, b('sym2'));
  t.equal(ls.err, 0);
  t.equal(type(ls.object!.stat), S_IFLNK);
  // directories cannot be hard linked
  t.equal((await nb.link(null, await opath(path.join(c, 'd2')), aFd, b('dl'))).err, EPERM);
});

t.test('create, exclusive and unchecked; mknod; symlink', async (t) => {
  const dir = mkdirp('create', 0o777);
  const dirFd = await opath(dir);
  const first = await nb.create(creds(1000, 1000), dirFd, b('f'), 0o640, true);
  t.equal(first.err, 0);
  t.equal(first.object!.stat!.mode & 0o7777, 0o640);
  t.equal(first.dirAfter!.mtimeSec >= first.dirBefore!.mtimeSec, true);
  const again = await nb.create(creds(1000, 1000), dirFd, b('f'), 0o640, true);
  t.equal(again.err, EEXIST);
  t.equal(again.object!.stat!.ino, first.object!.stat!.ino, 'existing object returned with EEXIST');
  // unchecked create of an existing file: success, no open needed (even without write permission)
  fs.writeFileSync(path.join(dir, 'f'), 'keep');
  const unchecked = await nb.create(creds(1001, 1001), dirFd, b('f'), 0o600, false);
  t.equal(unchecked.err, 0);
  t.equal(unchecked.object!.stat!.ino, first.object!.stat!.ino);
  t.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'keep', 'no truncation');

  const fifo = await nb.mknod(creds(1000, 1000), dirFd, b('fifo'), S_IFIFO | 0o620, 0, 0);
  t.equal(fifo.err, 0);
  t.equal(type(fifo.object!.stat), S_IFIFO);
  t.equal(fifo.object!.stat!.mode & 0o7777, 0o620);
  const onFifo = await nb.create(null, dirFd, b('fifo'), 0o644, false);
  t.equal(onFifo.err, EEXIST, 'an existing FIFO is not opened');
  t.equal(type(onFifo.object!.stat), S_IFIFO);
  t.equal((await nb.mknod(creds(1000, 1000), dirFd, b('null2'), S_IFCHR | 0o666, 1, 3)).err, EPERM);
  const chr = await nb.mknod(null, dirFd, b('null2'), S_IFCHR | 0o666, 1, 3);
  t.equal(chr.err, 0);
  t.same([chr.object!.stat!.rdevMajor, chr.object!.stat!.rdevMinor], [1, 3]);
  t.equal((await nb.mknod(null, dirFd, b('reg'), S_IFREG | 0o644, 0, 0)).err, EINVAL);

  const sl = await nb.symlink(creds(1000, 1000), dirFd, b('sl'), b('../somewhere/else'));
  t.equal(sl.err, 0);
  t.equal(type(sl.object!.stat), S_IFLNK);
  t.equal(sl.object!.stat!.uid, 1000);
  t.equal(fs.readlinkSync(path.join(dir, 'sl')), '../somewhere/else');
  t.equal((await nb.symlink(null, dirFd, b('sl2'), Buffer.from('a\0b'))).err, EINVAL);
  t.equal((await nb.unlink(null, dirFd, b('sl'), true)).err, ENOTDIR);
  t.equal((await nb.unlink(null, dirFd, b('sl'), false)).err, 0);
});

t.test('invalid names are EINVAL', async (t) => {
  const dir = mkdirp('names', 0o777);
  const dirFd = await opath(dir);
  fs.writeFileSync(path.join(dir, 'f'), '');
  const fd = await opath(path.join(dir, 'f'));
  const bad = [Buffer.alloc(0), b('a/b'), b('/'), Buffer.from('a\0b'), Buffer.alloc(256, 0x61)];
  for (const name of bad) {
    const label = JSON.stringify(name.toString().slice(0, 8));
    t.equal((await nb.lookup(null, dirFd, name)).err, EINVAL, `lookup ${label}`);
    t.equal((await nb.nameToHandle(dirFd, name)).err, EINVAL, `nameToHandle ${label}`);
  }
  for (const name of [...bad, b('.'), b('..')]) {
    const label = JSON.stringify(name.toString().slice(0, 8));
    t.equal((await nb.create(null, dirFd, name, 0o644, false)).err, EINVAL, `create ${label}`);
    t.equal((await nb.mkdir(null, dirFd, name, 0o755)).err, EINVAL, `mkdir ${label}`);
    t.equal((await nb.mknod(null, dirFd, name, S_IFIFO | 0o644, 0, 0)).err, EINVAL, `mknod ${label}`);
    t.equal((await nb.symlink(null, dirFd, name, b('x'))).err, EINVAL, `symlink ${label}`);
    t.equal((await nb.unlink(null, dirFd, name, false)).err, EINVAL, `unlink ${label}`);
    t.equal((await nb.unlink(null, dirFd, name, true)).err, EINVAL, `rmdir ${label}`);
    t.equal((await nb.rename(null, dirFd, name, dirFd, b('x'))).err, EINVAL, `rename from ${label}`);
    t.equal((await nb.rename(null, dirFd, b('f'), dirFd, name)).err, EINVAL, `rename to ${label}`);
    t.equal((await nb.link(null, fd, dirFd, name)).err, EINVAL, `link ${label}`);
  }
  t.equal((await nb.mkdir(null, dirFd, Buffer.alloc(255, 0x62), 0o755)).err, 0, '255 bytes is fine');
  t.same(fs.readdirSync(dir).sort(), ['b'.repeat(255), 'f']);
});

t.test('concurrent operations as many uids do not leak credentials', async (t) => {
  const dir = mkdirp('concurrent', 0o1777);
  const dirFd = await opath(dir);
  const n = 400;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => {
      const uid = 20000 + i;
      const gid = 30000 + (i % 13);
      switch (i % 4) {
        case 0:
          return nb.create(creds(uid, gid), dirFd, b(`c${i}`), 0o644, true);
        case 1:
          return nb.mkdir(creds(uid, gid), dirFd, b(`c${i}`), 0o755);
        case 2:
          return nb.symlink(creds(uid, gid), dirFd, b(`c${i}`), b('t'));
        default:
          return nb.mknod(creds(uid, gid), dirFd, b(`c${i}`), S_IFIFO | 0o600, 0, 0);
      }
    }),
  );
  let wrong = 0;
  results.forEach((r, i) => {
    if (r.err !== 0 || r.object?.stat?.uid !== 20000 + i || r.object?.stat?.gid !== 30000 + (i % 13)) wrong++;
    const st = fs.lstatSync(path.join(dir, `c${i}`));
    if (st.uid !== 20000 + i || st.gid !== 30000 + (i % 13)) wrong++;
  });
  t.equal(wrong, 0, 'every object owned by the uid/gid that made it');
  // interleaved with daemon operations that need privilege
  mkfile(path.join(dir, 'locked'), 'L', 0o000, 5, 5);
  const lfd = await opath(path.join(dir, 'locked'));
  const mixed = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      i % 2 ? nb.read(null, lfd, Buffer.alloc(1), 0, 1, 0n) : nb.read(creds(40000 + i, 40000), lfd, Buffer.alloc(1), 0, 1, 0n),
    ),
  );
  t.ok(mixed.every((r, i) => r.err === (i % 2 ? 0 : EACCES)), 'root always succeeds, guests always refused');
});

t.test('statfs, raiseFileLimit', async (t) => {
  const fd = await opath(base);
  const s = await nb.statfs(fd);
  t.equal(s.err, 0);
  for (const k of ['totalBytes', 'freeBytes', 'availBytes', 'totalFiles', 'freeFiles', 'nameMax'] as const) {
    t.ok((s[k] ?? 0) > 0, `${k} > 0`);
  }
  t.ok(s.totalBytes! >= s.freeBytes! && s.freeBytes! >= s.availBytes!);
  t.equal(s.nameMax, 255);
  const limit = nb.raiseFileLimit();
  t.type(limit, 'number');
  t.ok(limit >= 1024);
});

t.test('misuse throws a TypeError instead of resolving', async (t) => {
  const fd = await opath(base);
  t.throws(() => nb.fstat('3' as unknown as number), TypeError);
  t.throws(() => nb.lookup(null, fd, 'name' as unknown as Buffer), TypeError);
  t.throws(() => nb.lookup(new Uint32Array([1]), fd, b('x')), TypeError);
  t.throws(() => nb.lookup(new Uint32Array(35), fd, b('x')), TypeError);
  t.throws(() => nb.lookup([0, 0] as unknown as Uint32Array, fd, b('x')), TypeError);
  t.throws(() => nb.readdir(null, fd, 0 as unknown as bigint, 10, false), TypeError);
  t.throws(() => nb.openByHandle(fd, { type: 1 } as never, O_PATH), TypeError);
  t.throws(() => nb.close(-1), TypeError);
  // bad fds are errnos, not rejections
  t.equal((await nb.fstat(99999)).err, os.constants.errno.EBADF);
});

t.test('the addon also loads in a worker thread', async (t) => {
  const { Worker } = await import('node:worker_threads');
  const addon = path.resolve('native-bridges/build/Release/manila_native.node');
  const dir = mkdirp('worker', 0o1777);
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const nb = require(workerData.addon);
    (async () => {
      const { fd } = await nb.openPath(workerData.dir, 0);
      const made = await nb.mkdir(Uint32Array.from([1234, 4321]), fd, Buffer.from('w'), 0o755);
      const list = await nb.readdir(null, fd, 0n, 10, true);
      nb.close(fd);
      parentPort.postMessage({ err: made.err, uid: made.object.stat.uid, names: list.entries.map((e) => e.name.toString()) });
    })();
  `;
  const w = new Worker(code, { eval: true, workerData: { addon, dir } });
  const msg = await new Promise<{ err: number; uid: number; names: string[] }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await w.terminate();
  t.equal(msg.err, 0);
  t.equal(msg.uid, 1234);
  t.same(msg.names.sort(), ['.', '..', 'w']);
  // and the main thread's instance still works
  t.equal((await nb.readdir(null, await opath(dir), 0n, 10, true)).entries.length, 3);
});

t.test('no file descriptor leaks', async (t) => {
  for (const fd of opened.splice(0)) if (fd >= 0) nb.close(fd);
  t.equal(fdCount(), fdsAtStart);
});

t.test('a thread acting as a non-root caller has no effective capability; the daemon gets all back', async (t) => {
  const daemon = await nb.effectiveCaps(null);
  t.equal(daemon.err, 0);
  t.ok(daemon.effective > 0n, `daemon effective caps 0x${daemon.effective.toString(16)}`);
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => nb.effectiveCaps(creds(1000 + i, 1000))));
  for (const r of results) t.equal(r.effective, 0n, 'no capability at all, CAP_SYS_RESOURCE included');
  t.equal((await nb.effectiveCaps(creds(0, 0))).effective, daemon.effective, 'a root caller (no squash) keeps them, as with knfsd');
  const after = await Promise.all(Array.from({ length: 16 }, () => nb.effectiveCaps(null)));
  for (const r of after) t.equal(r.effective, daemon.effective, 'every pool thread is back to the daemon');
});

t.test('owner override applies only to the current owner', async (t) => {
  const dir = fs.mkdtempSync(path.join(base, 'override-'));
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'data');
  fs.chownSync(file, 1000, 1000);
  fs.chmodSync(file, 0o000);
  const fd = fs.openSync(file, O_PATH);
  t.teardown(() => fs.closeSync(fd));
  const buffer = Buffer.alloc(16);
  const mine = await nb.read(creds(1000, 1000), fd, buffer, 0, 16, 0n);
  t.equal(mine.err, 0, 'the owner reads its 0000 file');
  fs.chownSync(file, 1001, 1001);
  const notMine = await nb.read(creds(1000, 1000), fd, buffer, 0, 16, 0n);
  t.equal(notMine.err, EACCES, 'after a chown away, the old owner is refused');
});

t.test('trimMemory: malloc_trim on a pool thread, after memory was freed', async (t) => {
  const native = fsBridge();
  // glibc says whether it released anything; the addon, how long the walk of the arenas took
  const trim = await native.trimMemory();
  t.type(trim.released, 'boolean');
  t.ok(trim.seconds >= 0 && trim.seconds < 5, `took ${(trim.seconds * 1000).toFixed(2)} ms`);
  const again = await Promise.all([native.trimMemory(), native.trimMemory()]);
  t.equal(again.length, 2, 'concurrent trims both settle');
});

t.test('trimMemory: glibc\'s totals after the trim follow what is allocated', async (t) => {
  const native = fsBridge();
  const before = await native.trimMemory();
  for (const k of ['arenaBytes', 'inUseBytes', 'freeBytes', 'mmappedBytes'] as const) t.ok(before[k] >= 0, `${k} ${before[k]}`);
  t.ok(before.inUseBytes + before.freeBytes <= before.arenaBytes, 'in use and free lie inside the arenas');
  // 48 MiB in 32 KiB Buffers: below the mmap threshold, so malloc'd from an arena, and held.
  const held = Array.from({ length: 1536 }, () => Buffer.allocUnsafeSlow(32 << 10).fill(1));
  const during = await native.trimMemory();
  t.ok(during.inUseBytes - before.inUseBytes >= 40 << 20,
    `in use grew ${((during.inUseBytes - before.inUseBytes) / 2 ** 20).toFixed(1)} MiB with 48 MiB held`);
  t.equal(held.length, 1536);
});

// The pooled message buffers (68 KiB and 1.06 MiB) are mapped on their own, even after one of
// that size was freed (glibc's dynamic threshold would rise to it). A plain node child that loads
// only the addon: glibc serves even a large request from an arena's free space when it has some,
// and the TypeScript loader of this process leaves plenty.
const heldBuffers = `
  const native = require(process.argv[1]);
  (async () => {
    // Start-up's garbage collected first: mapped blocks it frees would count against the buffers.
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 10));
    const before = await native.trimMemory();
    let held = [Buffer.allocUnsafeSlow(1114112)];
    held = null;
    await new Promise((r) => setTimeout(r, 10));
    globalThis.gc();
    held = Array.from({ length: 64 }, () => Buffer.allocUnsafeSlow(68 << 10).fill(1));
    const during = await native.trimMemory();
    console.log(JSON.stringify({ mapped: during.mmappedBytes - before.mmappedBytes, inUse: during.inUseBytes - before.inUseBytes, n: held.length }));
  })();
`;
async function heldBuffersIn(env: NodeJS.ProcessEnv): Promise<{ mapped: number; inUse: number; n: number }> {
  const { execFile } = await import('node:child_process');
  const addon = new URL('../../native-bridges/build/Release/manila_native.node', import.meta.url).pathname;
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--expose-gc', '-e', heldBuffers, addon], { env }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  return JSON.parse(out.trim().split('\n').pop()!);
}

t.test('TuneMalloc: message buffers get mappings of their own; MALLOC_MMAP_THRESHOLD_ overrides', async (t) => {
  const size = 64 * (68 << 10);
  const env = { ...process.env };
  delete env.MALLOC_MMAP_THRESHOLD_; // (a key set to undefined would reach the child as "undefined")
  const tuned = await heldBuffersIn(env);
  t.ok(tuned.mapped >= size, `4.25 MiB held in 68 KiB buffers: ${(tuned.mapped / 2 ** 20).toFixed(2)} MiB mapped on their own`);
  t.ok(tuned.inUse < size / 2, `and ${(tuned.inUse / 2 ** 20).toFixed(2)} MiB more in use in the arenas`);
  const operator = await heldBuffersIn({ ...env, MALLOC_MMAP_THRESHOLD_: String(4 << 20) });
  t.ok(operator.inUse >= size * 0.9, `with the operator's 4 MiB threshold they come from the arenas (${(operator.inUse / 2 ** 20).toFixed(2)} MiB)`);
});
