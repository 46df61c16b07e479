// GlusterFS gfid handles in the native addon (native-bridges/src/gfid.cc): on a real single-node
// volume (test/backends/fixtures/gluster-volume.sh) mounted with --aux-gfid-mount. Runs as root.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fsBridge, GFID_HANDLE_TYPE, type KernelHandle } from '../../src/native/fsbridge.js';
import { HandleCodec } from '../../src/fs/handle.js';
import { XdrReader } from '../../src/rpc/xdr.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'backends', 'fixtures', 'gluster-volume.sh');
const VOLUME = 'manilagfid';
const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const { ESTALE, ENOENT, EINVAL } = os.constants.errno;

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (glusterd, FUSE mounts, drop_caches)';
  const found = spawnSync('sh', ['-c', 'command -v glusterd && command -v glusterfs && command -v getfattr'], { encoding: 'utf8' });
  if (found.status !== 0) return 'glusterd, glusterfs or getfattr not installed (Debian: glusterfs-server glusterfs-client attr)';
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse';
  return undefined;
}

const skip = skipReason();
if (skip) {
  t.plan(0, skip);
} else {
  await main();
}

function run(cmd: string, args: string[], timeoutMs = 120_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? `exit ${r.status}`}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The gfid getfattr reads (of a symlink itself with -h). */
function gfidOf(file: string): Buffer {
  const out = run('getfattr', ['-h', '--absolute-names', '-n', 'glusterfs.gfid', '-e', 'hex', file]);
  const m = /glusterfs\.gfid=0x([0-9a-f]{32})/.exec(out);
  if (!m) throw new Error(`no gfid in getfattr output: ${out}`);
  return Buffer.from(m[1]!, 'hex');
}

const dropCaches = (): void => fs.writeFileSync('/proc/sys/vm/drop_caches', '3');

async function main(): Promise<void> {
  const nb = fsBridge();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'manila-gfid-'));
  const mnt = path.join(base, 'mnt');
  const fds: number[] = [];
  let mountId = -1;
  t.teardown(() => {
    for (const fd of fds.splice(0)) nb.close(fd);
    if (mountId > 0) nb.unregisterGfidMount(mountId);
    spawnSync('umount', [mnt], { timeout: 20_000 });
    // stop also unmounts what is left under base, and stops every process it started
    const stop = spawnSync('bash', [FIXTURE, 'stop', base, VOLUME], { encoding: 'utf8', timeout: 120_000 });
    if (stop.status !== 0) console.error(`gluster-volume.sh stop: ${stop.stdout}${stop.stderr}`);
    fs.rmSync(base, { recursive: true, force: true });
  });

  try {
    t.comment(run('bash', [FIXTURE, 'start', base, VOLUME]).trim());
    const host = fs.readFileSync(path.join(base, 'volfile-server'), 'utf8').trim();
    fs.mkdirSync(mnt);
    run('glusterfs', [`--volfile-server=${host}`, `--volfile-id=${VOLUME}`, '--aux-gfid-mount', `--log-file=${base}/log/client.log`, mnt]);
  } catch (e) {
    t.fail(`no gluster volume: ${(e as Error).message}`);
    return;
  }

  fs.mkdirSync(path.join(mnt, 'd'));
  fs.mkdirSync(path.join(mnt, 'd', 'sub'));
  fs.writeFileSync(path.join(mnt, 'f'), 'hello');
  fs.writeFileSync(path.join(mnt, 'd', 'inner'), 'inner');
  fs.writeFileSync(path.join(mnt, 'd', 'secret'), 'root only');
  fs.chmodSync(path.join(mnt, 'd', 'secret'), 0o600);
  fs.symlinkSync('f', path.join(mnt, 'l'));
  const ino = (p: string): number => fs.lstatSync(path.join(mnt, p)).ino;

  const rootFd = fs.openSync(mnt, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  fds.push(rootFd);
  const kernel = await nb.nameToHandle(rootFd, Buffer.from('f'));
  t.equal(kernel.err, 0);
  t.not(kernel.handle!.type, GFID_HANDLE_TYPE, 'before registration: a kernel handle');

  t.test('registerGfidMount refuses what is not the root of a FUSE mount', async (t) => {
    const tmp = fs.openSync(os.tmpdir(), fs.constants.O_RDONLY);
    const sub = fs.openSync(path.join(mnt, 'd'), fs.constants.O_RDONLY);
    t.equal(nb.registerGfidMount(tmp), -EINVAL, 'not FUSE');
    t.equal(nb.registerGfidMount(sub), -EINVAL, 'not the mount root');
    fs.closeSync(tmp);
    fs.closeSync(sub);
  });

  mountId = nb.registerGfidMount(rootFd);
  t.ok(mountId > 0, `registered: mount id ${mountId}`);
  t.equal(mountId, kernel.mountId, 'the mount id name_to_handle_at gives');

  const handles: Record<string, KernelHandle> = {};
  t.test('nameToHandle gives the gfid getfattr reads', async (t) => {
    for (const name of ['f', 'd', 'l']) {
      const h = await nb.nameToHandle(rootFd, Buffer.from(name));
      t.equal(h.err, 0, name);
      t.equal(h.handle!.type, GFID_HANDLE_TYPE, `${name}: gfid handle type`);
      t.same(h.handle!.bytes, gfidOf(path.join(mnt, name)), `${name}: the 16-byte gfid (a symlink's own)`);
      t.equal(h.mountId, mountId, `${name}: the real mount id`);
      handles[name] = h.handle!;
    }
    const dirFd = fs.openSync(path.join(mnt, 'd'), O_PATH);
    const self = await nb.nameToHandle(dirFd, null);
    fs.closeSync(dirFd);
    t.same(self.handle, handles.d, 'AT_EMPTY_PATH of an fd: the same handle');
  });

  t.test('lookup and readdir plus give gfid handles; ".gfid" is not a name', async (t) => {
    const dFd = fs.openSync(path.join(mnt, 'd'), O_PATH);
    t.teardown(() => fs.closeSync(dFd));
    const guest = Uint32Array.from([1000, 1000]);
    const secret = await nb.lookup(guest, dFd, Buffer.from('secret'));
    t.equal(secret.err, 0, 'a guest finds a file it may not read (the gfid is read as the daemon)');
    t.same(secret.handle?.bytes, gfidOf(path.join(mnt, 'd', 'secret')));
    t.equal((await nb.effectiveCaps(guest)).effective, 0n, 'guest threads still have no capability');
    const list = await nb.readdir(null, dFd, 0n, 100, true);
    t.equal(list.err, 0);
    const inner = list.entries.find((e) => e.name.toString() === 'inner');
    t.equal(inner?.handle?.type, GFID_HANDLE_TYPE);
    t.same(inner?.handle?.bytes, gfidOf(path.join(mnt, 'd', 'inner')));
    t.equal((await nb.lookup(null, rootFd, Buffer.from('.gfid'))).err, ENOENT, '.gfid in the mount root');
    t.equal((await nb.lookup(guest, rootFd, Buffer.from('.gfid'))).err, ENOENT);
    t.notOk(list.entries.some((e) => e.name.toString() === '.gfid'));

    // READDIRPLUS encoded in place: the same gfid handles, made into NFS handles as HandleCodec does
    const codec = new HandleCodec(Buffer.alloc(32, 7));
    const key = Buffer.alloc(8, 1);
    const share = { secret: Buffer.alloc(32, 7), key, mountId, dev: 0, ino: 0, handle: Buffer.alloc(20, 9), fsid: 1n };
    const out = Buffer.alloc(65536);
    const encoded = await nb.readdirPlusEncode(guest, dFd, 0n, false, 100, 0, out.length, out, 0, out.length, nb.shareContext(share));
    t.equal(encoded.err, 0);
    t.ok(encoded.eof, 'eof');
    const r = new XdrReader(out.subarray(0, encoded.bytes));
    const nfsHandles = new Map<string, Buffer | null>();
    while (r.bool()) {
      r.uint64();
      const name = r.opaque(255).toString();
      r.uint64();
      if (r.bool()) r.opaqueFixed(84);
      nfsHandles.set(name, r.bool() ? Buffer.from(r.opaque(64)) : null);
    }
    t.same([...nfsHandles.keys()].sort(), ['.', '..', 'inner', 'secret', 'sub']);
    for (const name of ['inner', 'secret', 'sub']) {
      const gfid = gfidOf(path.join(mnt, 'd', name));
      t.same(nfsHandles.get(name), codec.encode(key, { type: GFID_HANDLE_TYPE, bytes: gfid }), `${name}: the gfid's NFS handle, found as a guest`);
    }
  });

  t.test('after drop_caches, openByHandle opens a file, a listable directory and a symlink', async (t) => {
    // the kernel's own handle is what goes stale (DESIGN.md "File handles")
    dropCaches();
    const stale = await nb.openByHandle(rootFd, kernel.handle!, O_PATH);
    t.equal(stale.err, ESTALE, 'kernel handle after drop_caches: ESTALE');
    if (stale.fd >= 0) nb.close(stale.fd);

    dropCaches();
    const f = await nb.openByHandle(rootFd, handles.f!, O_PATH);
    t.equal(f.err, 0, 'file');
    fds.push(f.fd);
    const fst = (await nb.fstat(f.fd)).stat!;
    t.equal(fst.mode & S_IFMT, S_IFREG);
    t.equal(fst.ino, ino('f'), 'same st_ino as by path');
    const rd = await nb.openByHandle(rootFd, handles.f!, fs.constants.O_RDONLY);
    t.equal(rd.err, 0);
    t.equal(fs.readFileSync(rd.fd, 'utf8'), 'hello', 'a readable fd when asked');
    fs.closeSync(rd.fd);
    const buf = Buffer.alloc(16);
    const r = await nb.read(Uint32Array.from([1000, 1000]), f.fd, buf, 0, 16, 0n);
    t.equal(r.err, 0);
    t.equal(buf.toString('utf8', 0, r.count), 'hello', 'READ through the O_PATH fd');

    dropCaches();
    const d = await nb.openByHandle(rootFd, handles.d!, O_PATH);
    t.equal(d.err, 0, 'directory');
    fds.push(d.fd);
    const dst = (await nb.fstat(d.fd)).stat!;
    t.equal(dst.mode & S_IFMT, S_IFDIR);
    t.equal(dst.ino, ino('d'), 'the real directory, not gluster\'s virtual .gfid inode');
    const list = await nb.readdir(null, d.fd, 0n, 100, true);
    t.equal(list.err, 0, 'READDIR works on it');
    t.same(list.entries.map((e) => e.name.toString()).sort(), ['.', '..', 'inner', 'secret', 'sub']);
    const up = await nb.beneath(d.fd, fs.statSync(mnt).dev, fs.statSync(mnt).ino);
    t.same(up, { err: 0, beneath: true }, '".." leads to the mount root');
    const child = await nb.lookup(null, d.fd, Buffer.from('inner'));
    t.equal(child.stat?.ino, ino('d/inner'), 'lookup inside');

    dropCaches();
    const l = await nb.openByHandle(rootFd, handles.l!, O_PATH);
    t.equal(l.err, 0, 'symlink');
    fds.push(l.fd);
    t.equal((await nb.fstat(l.fd)).stat!.mode & S_IFMT, S_IFLNK, 'the link itself');
    t.equal((await nb.fstat(l.fd)).stat!.ino, ino('l'));
    t.equal((await nb.readlink(null, l.fd)).target?.toString(), 'f');

    // a share root below the mount root is on the same mount
    const shareFd = fs.openSync(path.join(mnt, 'd'), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    const viaShare = await nb.openByHandle(shareFd, handles.f!, O_PATH);
    fs.closeSync(shareFd);
    t.equal(viaShare.err, 0, 'mountFd may be any fd on the mount');
    nb.close(viaShare.fd);
  });

  t.test('stale and foreign gfid handles', async (t) => {
    fs.writeFileSync(path.join(mnt, 'gone'), 'x');
    const gone = await nb.nameToHandle(rootFd, Buffer.from('gone'));
    fs.unlinkSync(path.join(mnt, 'gone'));
    dropCaches();
    t.equal((await nb.openByHandle(rootFd, gone.handle!, O_PATH)).err, ESTALE, 'a removed object');
    const bogus = { type: GFID_HANDLE_TYPE, bytes: Buffer.alloc(16, 0xab) };
    t.equal((await nb.openByHandle(rootFd, bogus, O_PATH)).err, ESTALE, 'an unknown gfid');
    const short = { type: GFID_HANDLE_TYPE, bytes: Buffer.alloc(8) };
    t.equal((await nb.openByHandle(rootFd, short, O_PATH)).err, EINVAL, 'not 16 bytes');
    const tmp = fs.openSync(os.tmpdir(), fs.constants.O_RDONLY);
    const foreign = await nb.openByHandle(tmp, handles.f!, O_PATH);
    fs.closeSync(tmp);
    t.equal(foreign.err, ESTALE, 'a gfid handle on a mount that is not registered');
  });

  t.test('unregisterGfidMount', async (t) => {
    t.equal(nb.unregisterGfidMount(mountId), true);
    t.equal(nb.unregisterGfidMount(mountId), false, 'once');
    const id = mountId;
    mountId = -1;
    t.equal((await nb.openByHandle(rootFd, handles.f!, O_PATH)).err, ESTALE, 'its handles are stale');
    const h = await nb.nameToHandle(rootFd, Buffer.from('f'));
    t.not(h.handle!.type, GFID_HANDLE_TYPE, 'kernel handles again');
    t.equal(h.mountId, id);
    t.equal((await nb.lookup(null, rootFd, Buffer.from('.gfid'))).err, 0, '.gfid is an ordinary lookup again');
  });
}
