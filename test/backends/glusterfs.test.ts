// GlusterFS for real: a single-node volume on 127.x (test/backends/fixtures/gluster-volume.sh),
// mounted by the gateway itself through its glusterfs driver, served to libnfs and to our client.
// Checked: mount on first grant, data written through NFS lands in the brick, gfid handles survive
// a gateway restart (which unmounts and mounts the volume again) and the kernel dropping its caches,
// a frozen Gluster client is answered JUKEBOX, aborted and mounted again with the old handles still
// working, and the volume is unmounted a grace period after its last grant goes.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { nfsUrl, run } from '../helpers/daemon.js';
import { RpcClient } from '../helpers/nfs-client.js';
import { JUKEBOX, backendIn, create, mountedAt as mounted, scrape as scrapeMetrics, sh } from '../helpers/backends.js';
import { freePort, until } from '../helpers/wait.js';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process.js';
import { value } from '../metrics/helpers/exposition.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'gluster-volume.sh');
const VOLUME = 'mgvol';

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (glusterd, FUSE mounts)';
  if (spawnSync('sh', ['-c', 'command -v glusterd && command -v mount.glusterfs && command -v nfs-cat']).status !== 0) {
    return 'glusterfs-server, glusterfs-client or libnfs-utils not installed (scripts/install-deps.sh --test)';
  }
  return existsSync('/dev/fuse') ? false : 'no /dev/fuse';
}




t.test('GlusterFS through the gateway', { skip: skipReason() }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-gluster-'));
  const target = path.join(dir, 'run', 'backends', 'gl');
  let gateway: GatewayProcess | undefined;
  t.teardown(async () => {
    spawnSync('pkill', ['-CONT', '-f', `glusterfs.*${target}`]);
    await gateway?.stop();
    spawnSync('umount', ['-l', target]);
    const stop = spawnSync('bash', [FIXTURE, 'stop', dir, VOLUME], { encoding: 'utf8', timeout: 120_000 });
    if (stop.status !== 0) console.error(`gluster-volume.sh stop: ${stop.stdout}${stop.stderr}`);
    rmSync(dir, { recursive: true, force: true });
  });
  t.comment(sh('bash', [FIXTURE, 'start', dir, VOLUME]).trim());
  const host = readFileSync(path.join(dir, 'volfile-server'), 'utf8').trim();

  // The share's directory and some content, put there through a mount of the test's own.
  const prep = path.join(dir, 'prep');
  mkdirSync(prep);
  sh('mount', ['-t', 'glusterfs', `${host}:/${VOLUME}`, prep]);
  mkdirSync(path.join(prep, 'share1', 'sub'), { recursive: true });
  writeFileSync(path.join(prep, 'share1', 'hello'), 'hello from gluster\n');
  for (let i = 0; i < 50; i++) writeFileSync(path.join(prep, 'share1', 'sub', `f${i}`), `${i}\n`);
  sh('umount', [prep]);

  const metricsPort = await freePort();
  const configPath = path.join(dir, 'config.yaml');
  const config = (grants: unknown[]) => ({
    node_id: 'gl-node',
    state_dir: path.join(dir, 'state'),
    runtime_dir: path.join(dir, 'run'),
    log_level: 'info',
    listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
    metrics: { host: '127.0.0.1', port: metricsPort },
    backends: [
      {
        id: 'gl',
        type: 'glusterfs',
        servers: [host],
        volume: VOLUME,
        max_inflight: 2,
        op_timeout_ms: 1000,
        health_interval_s: 0.3,
        health_timeout_s: 1,
        remount_after_s: 3,
        unmount_grace_s: 1,
      },
    ],
    grants,
  });
  const grant = { id: 'g1', share: 'gs', backend: 'gl', path: 'share1', guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none' };
  writeFileSync(configPath, YAML.stringify(config([grant])));
  const scrape = () => scrapeMetrics(metricsPort);
  const backendState = (state: string) => backendIn(metricsPort, 'gl', state);

  gateway = await startGatewayProcess(configPath);
  const mine = mounted(target);
  t.ok(mine, 'the gateway mounted the volume for its grant');
  t.match(mine, / - fuse\.glusterfs /, 'with the GlusterFS FUSE client');

  // libnfs: the truth of a stock client
  const local = path.join(dir, 'upload.bin');
  const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
  for (let i = 0; i < payload.length; i += 4096) payload[i] = i & 0xff;
  writeFileSync(local, payload);
  const cp = await run('nfs-cp', [local, nfsUrl(gateway.port, 'gs', 'upload.bin')]);
  t.equal(cp.code, 0, `nfs-cp into the share ${cp.stderr}`);
  t.ok(readFileSync(path.join(dir, 'bricks', VOLUME, 'share1', 'upload.bin')).equals(payload), 'the bytes are in the brick');
  const cat = await run('nfs-cat', [nfsUrl(gateway.port, 'gs', 'hello')]);
  t.equal(cat.stdout, 'hello from gluster\n', 'nfs-cat reads a file written on the volume');
  const ls = await run('nfs-ls', [nfsUrl(gateway.port, 'gs', 'sub')]);
  t.equal(ls.stdout.split('\n').filter((l) => / f\d+$/.test(l)).length, 50, 'nfs-ls lists the directory');

  let client = await RpcClient.connect(gateway.port);
  const root = (await client.mount('/gs')).handle!;
  const hello = (await client.lookup(root, 'hello')).handle!;
  const sub = (await client.lookup(root, 'sub')).handle!;
  t.equal(hello.length, 14 + 16 + 12, 'a gfid handle: header, 16-byte gfid, tag');
  client.close();

  await t.test('handles survive a gateway restart (volume unmounted and mounted again) and dropped caches', async (t) => {
    await gateway!.stop();
    t.notOk(mounted(target), 'unmounted at stop');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    gateway = await startGatewayProcess(configPath);
    client = await RpcClient.connect(gateway.port);
    t.equal((await client.getattr(hello)).status, 0, 'GETATTR of a file by its old handle');
    t.equal((await client.getattr(sub)).status, 0, 'GETATTR of a directory by its old handle');
    const listing = await client.readdir(sub, 0n, Buffer.alloc(8), 8192, true);
    t.equal(listing.status, 0, 'READDIRPLUS of a directory opened by gfid');
    t.equal(listing.entries.filter((e) => /^f\d+$/.test(e.name)).length, 50, 'lists every entry');
    t.equal((await client.lookup(sub, 'f7')).status, 0, 'LOOKUP inside it');
    t.equal((await client.lookup(root, '.gfid')).status, 2, 'no .gfid door below the volume root (NOENT)');
  });

  await t.test('a frozen Gluster client: JUKEBOX, then aborted and mounted again; old handles still work', async (t) => {
    t.equal(await create(client, root, 'before-freeze'), 0);
    const pids = sh('pgrep', ['-f', `glusterfs.*${target}`]).trim().split('\n');
    t.equal(pids.length, 1, 'one Gluster client process for the mount');
    sh('kill', ['-STOP', pids[0]!]);
    const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => create(client, root, `frozen-${i}`)));
    t.equal(statuses.filter((s) => s === JUKEBOX).length, 20, 'every call on the frozen client answered NFS3ERR_JUKEBOX');
    await until('reported hung', () => backendState('hung'), 10_000);
    const samples = await scrape();
    t.ok((value(samples, 'manila_gateway_backend_ops_in_flight', { backend: 'gl' }) ?? 99) <= 2, 'no more than max_inflight calls stuck');
    await until('mounted again', async () => (await backendState('ready')) && mounted(target) !== undefined, 30_000);
    spawnSync('kill', ['-CONT', pids[0]!]);
    const newPids = sh('pgrep', ['-f', `glusterfs.*${target}`]).trim().split('\n').filter((p) => p !== pids[0]);
    t.equal(newPids.length, 1, 'a new Gluster client serves the mount');
    t.equal((await client.getattr(hello)).status, 0, 'an old handle works on the new mount');
    t.equal(await create(client, root, 'after-remount'), 0, 'CREATE works again');
    t.ok(gateway!.logs().some((l) => l.msg === 'FUSE connection aborted'), 'the hung connection was aborted');
  });

  await t.test('unmounted a grace period after the last grant is revoked', async (t) => {
    writeFileSync(configPath, YAML.stringify(config([])));
    gateway!.child.kill('SIGHUP');
    await until('unmounted', () => mounted(target) === undefined, 15_000);
    await until('idle', () => backendState('idle'), 5_000);
    t.pass('unmounted and idle');
    client.close();
  });
});
