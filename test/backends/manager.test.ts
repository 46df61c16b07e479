// The mount manager against fakes of the mount tools (the kernel here has no NFS or Ceph client,
// and GPFS is proprietary): a `mount` on PATH that logs its arguments and mounts a tmpfs (or a
// bindfs, a FUSE file system the test can freeze) at the target, and a fake `mmmount`. What is
// checked: the exact commands each driver runs, mount on first use, reference counting with the
// grace period, remount when the mount vanishes, teardown and remount of a hung mount, adoption of
// a mount left by an earlier run, backoff after a failed mount.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { BackendManager } from '../../src/backends/manager.js';
import { parseBackend, type BackendConfig } from '../../src/backends/config.js';
import { driverFor } from '../../src/backends/drivers/index.js';
import { mountAt } from '../../src/backends/mountinfo.js';
import { until } from '../helpers/wait.js';

const root = process.getuid?.() === 0;
const bindfs = spawnSync('sh', ['-c', 'command -v bindfs']).status === 0;
const logger = pino({ level: process.env.DEBUG_TESTS ? 'debug' : 'silent' });

function backend(raw: Record<string, unknown>): BackendConfig {
  const problems: string[] = [];
  const parsed = parseBackend(raw, 'b', '/', problems);
  if (!parsed) throw new Error(problems.join('; '));
  return parsed;
}

t.test('drivers: the commands each backend type runs', async (t) => {
  const target = '/run/mg/backends/x';
  t.same(driverFor(backend({ id: 'x', type: 'nfs', server: 'isilon.example', export: '/ifs/data', options: ['hard', 'timeo=600'] }), target).mountCommand, {
    file: 'mount',
    args: ['-t', 'nfs', 'isilon.example:/ifs/data', target, '-o', 'vers=3,hard,timeo=600'],
  });
  t.same(driverFor(backend({ id: 'x', type: 'nfs', server: 'fd00::5', export: '/e', version: '4.1' }), target).mountCommand?.args, ['-t', 'nfs4', '[fd00::5]:/e', target, '-o', 'vers=4.1']);
  t.same(
    driverFor(backend({ id: 'x', type: 'cephfs', monitors: ['10.0.0.1', '10.0.0.2:6789'], user: 'manila', secret_file: '/etc/ceph/manila.secret', fs_name: 'fs1', root: '/volumes/g' }), target).mountCommand,
    { file: 'mount', args: ['-t', 'ceph', '10.0.0.1,10.0.0.2:6789:/volumes/g', target, '-o', 'name=manila,secretfile=/etc/ceph/manila.secret,mds_namespace=fs1'] },
  );
  const fuse = driverFor(backend({ id: 'x', type: 'cephfs', client: 'fuse', monitors: ['127.0.0.1:3300'], user: 'manila', keyring_file: '/k', fs_name: 'cephfs', mount_timeout_s: 30 }), target);
  t.same(fuse.mountCommand, {
    file: 'ceph-fuse',
    args: [target, '--id', 'manila', '-r', '/', '-c', '/dev/null', '-m', '127.0.0.1:3300', '--keyring', '/k', '--client_fs', 'cephfs', '--client_mount_timeout=29'],
  });
  t.ok(fuse.fuse && !fuse.gfidHandles, 'ceph-fuse: FUSE, kernel handles');
  const gluster = driverFor(backend({ id: 'x', type: 'glusterfs', servers: ['gl1', 'gl2', 'gl3'], volume: 'vol0' }), target);
  t.same(gluster.mountCommand, { file: 'mount', args: ['-t', 'glusterfs', 'gl1:/vol0', target, '-o', 'aux-gfid-mount,backup-volfile-servers=gl2:gl3'] });
  t.ok(gluster.fuse && gluster.gfidHandles, 'glusterfs: FUSE, gfid handles');
  const gpfs = driverFor(backend({ id: 'x', type: 'gpfs', device: 'gpfs0', mountpoint: '/gpfs/fs0', mmmount: true }), target);
  t.same(gpfs.mountCommand, { file: '/usr/lpp/mmfs/bin/mmmount', args: ['gpfs0'] });
  t.equal(gpfs.root, '/gpfs/fs0', 'GPFS is used where the cluster mounts it');
  t.notOk(gpfs.unmounts, 'and never unmounted by the gateway');
  t.equal(driverFor(backend({ id: 'x', type: 'gpfs', device: 'gpfs0', mountpoint: '/gpfs/fs0' }), target).mountCommand, undefined, 'no mmmount unless asked');
});

t.test('mount manager with a fake mount command', { skip: root ? false : 'needs root (mounts)' }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-manager-'));
  const fakeBin = path.join(dir, 'bin');
  const log = path.join(dir, 'mount.log');
  const failFile = path.join(dir, 'fail');
  const source = path.join(dir, 'source');
  mkdirSync(fakeBin);
  mkdirSync(path.join(source, 'share'), { recursive: true });
  writeFileSync(
    path.join(fakeBin, 'mount'),
    `#!/bin/bash
# only "mount -t TYPE SOURCE TARGET -o OPTIONS" is faked; anything else is the real mount
[ "$1" = -t ] && [ "$2" != fusectl ] || exec /bin/mount "$@"
echo "$*" >> "${log}"
if [ -e "${failFile}" ]; then echo "mount error(13): Permission denied" >&2; exit 32; fi
case "$3" in
  bindfs:*) exec bindfs "${source}" "$4" ;;
  *) exec /bin/mount -t tmpfs tmpfs "$4" ;;
esac
`,
  );
  chmodSync(path.join(fakeBin, 'mount'), 0o755);
  const mmmount = path.join(fakeBin, 'mmmount');
  writeFileSync(mmmount, `#!/bin/bash\necho "mmmount $*" >> "${log}"\nexec /bin/mount -t tmpfs "$1" "$GPFS_MOUNTPOINT"\n`);
  chmodSync(mmmount, 0o755);
  const gpfsMountpoint = path.join(dir, 'gpfs');
  mkdirSync(gpfsMountpoint);
  const runtimeDir = path.join(dir, 'run');
  const env = { ...process.env, PATH: `${fakeBin}:${process.env.PATH}`, GPFS_MOUNTPOINT: gpfsMountpoint };
  const logLines = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
  const fast = { health_interval_s: 0.1, health_timeout_s: 0.3, remount_after_s: 0.5, unmount_grace_s: 0.3, mount_timeout_s: 10 };
  const configs = [
    backend({ id: 'filer', type: 'nfs', server: 'filer.example', export: '/ifs/data', options: ['hard'], ...fast }),
    backend({ id: 'frozen', type: 'nfs', server: 'bindfs', export: '/x', ...fast }),
    backend({ id: 'gpfs', type: 'gpfs', device: 'gpfs0', mountpoint: gpfsMountpoint, mmmount: true, bin_dir: fakeBin, ...fast }),
    backend({ id: 'gpfs-manual', type: 'gpfs', device: 'gpfs1', mountpoint: path.join(dir, 'nothing-here'), ...fast }),
    backend({ id: 'gpfs-dead', type: 'gpfs', device: 'gpfs2', mountpoint: path.join(dir, 'gpfs-dead'), ...fast }),
    backend({ id: 'quiet', type: 'local', path: path.join(dir, 'quiet'), max_inflight: 2, op_timeout_ms: 5000, health_interval_s: 0.1, health_timeout_s: 0.3 }),
  ];
  mkdirSync(path.join(dir, 'gpfs-dead'));
  mkdirSync(path.join(dir, 'quiet'));
  const torn: string[] = [];
  const readied: string[] = [];
  const manager = new BackendManager({
    backends: configs,
    runtimeDir,
    logger,
    env,
    fstypesOf: (b) => (b.id === 'frozen' || b.id === 'gpfs-dead' ? ['fuse'] : b.id === 'gpfs-manual' ? undefined : ['tmpfs']),
    onTearDown: (id) => torn.push(id),
    onReady: (id) => readied.push(id),
  });
  manager.start();
  t.teardown(async () => {
    await manager.stop();
    for (const mount of [path.join(runtimeDir, 'backends', 'filer'), path.join(runtimeDir, 'backends', 'frozen'), gpfsMountpoint]) {
      spawnSync('umount', ['-l', mount]);
    }
    spawnSync('pkill', ['-CONT', '-f', `bindfs ${source}`]);
    spawnSync('pkill', ['-f', `bindfs ${source}`]);
    rmSync(dir, { recursive: true, force: true });
  });
  const state = (id: string) => manager.statuses().find((s) => s.id === id)!;
  const filerRoot = path.join(runtimeDir, 'backends', 'filer');

  await t.test('mounted on first use, with the driver command, once', async (t) => {
    t.equal(state('filer').state, 'idle', 'nothing mounted before a grant needs it');
    t.equal(await mountAt(filerRoot), undefined);
    const [a, b] = await Promise.all([manager.rootOf('filer'), manager.rootOf('filer')]);
    t.equal(a, filerRoot);
    t.equal(b, filerRoot);
    t.same(logLines(), [`-t nfs filer.example:/ifs/data ${filerRoot} -o vers=3,hard`], 'one mount for two callers');
    t.equal((await mountAt(filerRoot))?.fstype, 'tmpfs');
    t.match(state('filer'), { state: 'ready', up: true });
    t.same(readied, ['filer']);
    t.equal(((await stat(path.join(runtimeDir, 'backends'))).mode & 0o777), 0o700, 'mount points live in a private directory');
  });

  await t.test('unmounted a grace period after the last grant, not before', async (t) => {
    manager.use('filer', +1);
    manager.use('filer', +1);
    manager.use('filer', -1);
    await new Promise((r) => setTimeout(r, 500));
    t.ok(await mountAt(filerRoot), 'still mounted with a grant left');
    manager.use('filer', -1);
    manager.use('filer', +1); // a grant comes back within the grace
    await new Promise((r) => setTimeout(r, 500));
    t.ok(await mountAt(filerRoot), 'a grant back within the grace keeps it');
    manager.use('filer', -1);
    await until('unmounted after the grace', async () => (await mountAt(filerRoot)) === undefined && state('filer').state === 'idle', 5000);
    t.ok(torn.includes('filer'), 'share roots let go first');
  });

  await t.test('a mount that vanishes is mounted again while a grant needs it', async (t) => {
    manager.use('filer', +1);
    await manager.rootOf('filer');
    const before = logLines().length;
    spawnSync('umount', [filerRoot]);
    await until('mounted again', async () => logLines().length > before && (await mountAt(filerRoot)) !== undefined && state('filer').state === 'ready', 5000);
    t.pass('remounted');
  });

  await t.test('a failed mount is reported with the tool\'s words and retried with backoff', async (t) => {
    manager.use('filer', -1);
    await until('unmounted', async () => (await mountAt(filerRoot)) === undefined, 5000);
    writeFileSync(failFile, '');
    await t.rejects(manager.rootOf('filer'), { code: 'BACKEND_UNAVAILABLE', message: /mount error\(13\): Permission denied/ });
    t.match(state('filer'), { state: 'unavailable', up: false, reason: /exit 32/ });
    const attempts = logLines().length;
    await t.rejects(manager.rootOf('filer'), { code: 'BACKEND_UNAVAILABLE', message: /next mount attempt in \d+ s/ });
    t.equal(logLines().length, attempts, 'no new attempt within the backoff');
    rmSync(failFile);
    await new Promise((r) => setTimeout(r, 1100));
    t.equal(await manager.rootOf('filer'), filerRoot, 'mounts once the backoff has passed');
  });

  await t.test('a mount left by an earlier run is adopted, not mounted twice', async (t) => {
    const other = new BackendManager({ backends: [configs[0]!], runtimeDir, logger, env, fstypesOf: () => ['tmpfs'] });
    const before = logLines().length;
    t.equal(await other.rootOf('filer'), filerRoot);
    t.equal(logLines().length, before, 'no mount command');
    t.equal(other.statuses()[0]!.state, 'ready');
  });

  await t.test('gpfs: mmmount when asked, never unmounted; without mmmount it must already be mounted', async (t) => {
    t.equal(await manager.rootOf('gpfs'), gpfsMountpoint);
    t.ok(logLines().includes('mmmount gpfs0'));
    manager.use('gpfs', +1);
    manager.use('gpfs', -1);
    await new Promise((r) => setTimeout(r, 600));
    t.ok(await mountAt(gpfsMountpoint), 'still mounted after the grace');
    await t.rejects(manager.rootOf('gpfs-manual'), { code: 'BACKEND_UNAVAILABLE', message: /is not mounted \(gpfs expected\)/ });
  });

  await t.test('a failed mount that no grant needs any more goes back to idle', async (t) => {
    writeFileSync(failFile, '');
    const nfsOnly = new BackendManager({ backends: [backend({ id: 'other', type: 'nfs', server: 'filer.example', export: '/x', ...fast })], runtimeDir, logger, env, fstypesOf: () => ['tmpfs'] });
    nfsOnly.start();
    t.teardown(() => nfsOnly.stop());
    nfsOnly.use('other', +1);
    await t.rejects(nfsOnly.rootOf('other'), { code: 'BACKEND_UNAVAILABLE' });
    nfsOnly.use('other', -1);
    await until('idle', () => nfsOnly.statuses()[0]!.state === 'idle', 5000);
    t.match(nfsOnly.statuses()[0], { up: true, reason: '' });
    rmSync(failFile);
  });

  await t.test('one slow call is not a hang; every slot stuck is', async (t) => {
    const gate = manager.gateOf('quiet')!;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const slow = gate.run(() => held);
    await new Promise((r) => setTimeout(r, 700));
    t.equal(state('quiet').state, 'ready', 'a single call running past the health bound leaves it ready');
    const second = gate.run(() => held);
    await until('hung with every slot stuck', () => state('quiet').state === 'hung', 5000);
    t.match(state('quiet').reason, /guest operations have not returned/);
    release();
    await slow;
    await second;
    await until('ready again', () => state('quiet').state === 'ready', 5000);
    t.pass('ready once they return');
  });

  await t.test('a GPFS mount that fails its probe is never unmounted by the gateway', { skip: bindfs ? false : 'bindfs not installed' }, async (t) => {
    const where = path.join(dir, 'gpfs-dead');
    spawnSync('bindfs', [source, where]);
    t.ok(await mountAt(where));
    t.equal(await manager.rootOf('gpfs-dead'), where);
    manager.use('gpfs-dead', +1);
    spawnSync('pkill', ['-KILL', '-f', `bindfs ${source} ${where}`]);
    await until('reported unavailable', () => state('gpfs-dead').state === 'unavailable', 5000);
    await new Promise((r) => setTimeout(r, 1500)); // several checks and retries
    t.ok(await mountAt(where), 'still mounted: the cluster owns it');
    t.match(state('gpfs-dead').reason, /ENOTCONN|ECONNABORTED|statfs/);
    manager.use('gpfs-dead', -1);
    spawnSync('umount', ['-l', where]);
  });

  await t.test('a hung mount is reported, torn down (forced unmount aborts the FUSE connection) and mounted again', { skip: bindfs ? false : 'bindfs not installed' }, async (t) => {
    const frozenRoot = path.join(runtimeDir, 'backends', 'frozen');
    manager.use('frozen', +1);
    t.equal(await manager.rootOf('frozen'), frozenRoot);
    const first = await mountAt(frozenRoot);
    t.equal(first?.fstype, 'fuse');
    const mounts = logLines().length;
    spawnSync('pkill', ['-STOP', '-f', `bindfs ${source}`]);
    const stuck = stat(path.join(frozenRoot, 'share', 'nothing')).then(
      () => 'answered',
      (e: NodeJS.ErrnoException) => e.code,
    );
    await until('reported hung', () => state('frozen').state === 'hung', 5000);
    t.match(state('frozen'), { up: false, reason: /statfs of .* has not returned/ });
    await t.rejects(manager.rootOf('frozen'), { code: 'BACKEND_HUNG' }, 'no new share opens on it');
    await until('mounted again', async () => {
      // (mount ids are reused: the mount command's log tells a new mount)
      return logLines().length > mounts && (await mountAt(frozenRoot)) !== undefined && state('frozen').state === 'ready';
    }, 10_000);
    t.ok(torn.includes('frozen'), 'share roots were let go');
    const released = await stuck;
    t.ok(released === 'ENOTCONN' || released === 'ECONNABORTED', `the call stuck in the hung mount was released (${released})`);
    spawnSync('pkill', ['-KILL', '-f', `bindfs ${source}`]);
  });
});
