// CephFS for real: a single-node cluster (mon, mgr, osd on memstore, mds) on 127.0.0.1
// (test/backends/fixtures/ceph-cluster.sh), mounted by the gateway with its cephfs driver through
// ceph-fuse (this kernel has no ceph module, so `mount -t ceph` cannot be run here). Checked: mount
// on first grant with the keyring from a file, libnfs in and out, kernel handles across a gateway
// restart (ceph-fuse unmounted and mounted again) and dropped caches, a frozen MDS answered with
// JUKEBOX and reported hung (here from the stuck guest calls: statfs goes to the monitors), recovery once the
// MDS answers again, and the unmount after the last grant goes.
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

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ceph-cluster.sh');

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (ceph daemons, FUSE mounts)';
  if (spawnSync('sh', ['-c', 'command -v ceph-mon && command -v ceph-osd && command -v ceph-mds && command -v ceph-fuse && command -v nfs-cat']).status !== 0) {
    return 'ceph-mon, ceph-osd, ceph-mds, ceph-fuse or libnfs-utils not installed (scripts/install-deps.sh --test)';
  }
  return existsSync('/dev/fuse') ? false : 'no /dev/fuse';
}




t.test('CephFS (ceph-fuse) through the gateway', { skip: skipReason() }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-ceph-'));
  const target = path.join(dir, 'run', 'backends', 'ceph');
  const mdsPid = () => readFileSync(path.join(dir, 'run', 'mds.a.pid'), 'utf8').trim();
  let gateway: GatewayProcess | undefined;
  t.teardown(async () => {
    if (existsSync(path.join(dir, 'run', 'mds.a.pid'))) spawnSync('kill', ['-CONT', mdsPid()]);
    await gateway?.stop();
    spawnSync('umount', ['-l', target]);
    const stop = spawnSync('bash', [FIXTURE, 'stop', dir], { encoding: 'utf8', timeout: 180_000 });
    if (stop.status !== 0) console.error(`ceph-cluster.sh stop: ${stop.stdout}${stop.stderr}`);
    rmSync(dir, { recursive: true, force: true });
  });
  t.comment(sh('bash', [FIXTURE, 'start', dir]).trim());
  const conf = path.join(dir, 'ceph.conf');
  const keyring = path.join(dir, 'ceph.client.manila.keyring');

  // The share's directory and some content, through a ceph-fuse mount of the test's own.
  const prep = path.join(dir, 'prep');
  mkdirSync(prep);
  sh('ceph-fuse', ['-c', conf, '-n', 'client.manila', '--keyring', keyring, '-r', '/', prep]);
  mkdirSync(path.join(prep, 'volumes', 'share1', 'sub'), { recursive: true });
  writeFileSync(path.join(prep, 'volumes', 'share1', 'hello'), 'hello from ceph\n');
  for (let i = 0; i < 30; i++) writeFileSync(path.join(prep, 'volumes', 'share1', 'sub', `f${i}`), `${i}\n`);
  sh('umount', [prep]);

  const metricsPort = await freePort();
  const configPath = path.join(dir, 'config.yaml');
  const config = (grants: unknown[]) => ({
    node_id: 'ceph-node',
    state_dir: path.join(dir, 'state'),
    runtime_dir: path.join(dir, 'run-gw'),
    listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
    metrics: { host: '127.0.0.1', port: metricsPort },
    backends: [
      {
        id: 'ceph',
        type: 'cephfs',
        client: 'fuse',
        conf_file: conf,
        user: 'manila',
        keyring_file: keyring,
        fs_name: 'cephfs',
        root: '/volumes',
        max_inflight: 2,
        op_timeout_ms: 1000,
        health_interval_s: 0.3,
        health_timeout_s: 1,
        remount_after_s: 600,
        unmount_grace_s: 1,
        mount_timeout_s: 30,
      },
    ],
    grants,
  });
  const grant = { id: 'g1', share: 'cs', backend: 'ceph', path: 'share1', guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none' };
  writeFileSync(configPath, YAML.stringify(config([grant])));
  const cephTarget = path.join(dir, 'run-gw', 'backends', 'ceph');
  const scrape = () => scrapeMetrics(metricsPort);
  const backendState = (state: string) => backendIn(metricsPort, 'ceph', state);

  gateway = await startGatewayProcess(configPath, 90_000);
  t.match(mounted(cephTarget), / - fuse\.ceph-fuse /, 'the gateway mounted CephFS with ceph-fuse for its grant');

  const local = path.join(dir, 'upload.bin');
  const payload = Buffer.alloc(2 * 1024 * 1024 + 5);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
  writeFileSync(local, payload);
  const cp = await run('nfs-cp', [local, nfsUrl(gateway.port, 'cs', 'upload.bin')]);
  t.equal(cp.code, 0, `nfs-cp into the share ${cp.stderr}`);
  const back = path.join(dir, 'download.bin');
  const cpBack = await run('nfs-cp', [nfsUrl(gateway.port, 'cs', 'upload.bin'), back]);
  t.equal(cpBack.code, 0, `nfs-cp out of the share ${cpBack.stderr}`);
  t.ok(readFileSync(back).equals(payload), 'the same bytes come back');
  t.equal((await run('nfs-cat', [nfsUrl(gateway.port, 'cs', 'hello')])).stdout, 'hello from ceph\n', 'nfs-cat reads a file written on the fs');

  let client = await RpcClient.connect(gateway.port);
  const root = (await client.mount('/cs')).handle!;
  const hello = (await client.lookup(root, 'hello')).handle!;
  const sub = (await client.lookup(root, 'sub')).handle!;
  client.close();

  await t.test('kernel handles survive a gateway restart (ceph-fuse mounted again) and dropped caches', async (t) => {
    await gateway!.stop();
    t.notOk(mounted(cephTarget), 'unmounted at stop');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    gateway = await startGatewayProcess(configPath, 90_000);
    client = await RpcClient.connect(gateway.port);
    t.equal((await client.getattr(hello)).status, 0, 'GETATTR of a file by its old handle');
    const listing = await client.readdir(sub, 0n, Buffer.alloc(8), 8192, true);
    t.equal(listing.status, 0, 'READDIRPLUS of a directory by its old handle');
    t.equal(listing.entries.filter((e) => /^f\d+$/.test(e.name)).length, 30, 'lists every entry');
  });

  await t.test('a frozen MDS: JUKEBOX, reported hung, served again once it answers', async (t) => {
    t.equal(await create(client, root, 'before-freeze'), 0);
    spawnSync('kill', ['-STOP', mdsPid()]);
    const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => create(client, root, `frozen-${i}`)));
    t.equal(statuses.filter((s) => s === JUKEBOX).length, 10, 'calls that need the MDS are answered NFS3ERR_JUKEBOX');
    await until('reported hung', () => backendState('hung'), 15_000);
    const samples = await scrape();
    t.ok((value(samples, 'manila_gateway_backend_ops_in_flight', { backend: 'ceph' }) ?? 99) <= 2, 'no more than max_inflight calls stuck');
    const hung = gateway!.logs().find((l) => l.msg === 'backend state' && l.state === 'hung');
    t.comment(`hung because: ${String(hung?.reason)}`);
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    t.equal(ready.status, 503, '/readyz is 503 while it hangs');
    spawnSync('kill', ['-CONT', mdsPid()]);
    await until('ready again', () => backendState('ready'), 60_000);
    t.equal(await create(client, root, 'after-thaw'), 0, 'CREATE works again');
    t.equal((await client.getattr(hello)).status, 0, 'and old handles');
  });

  await t.test('unmounted a grace period after the last grant is revoked', async (t) => {
    writeFileSync(configPath, YAML.stringify(config([])));
    gateway!.child.kill('SIGHUP');
    await until('unmounted', () => mounted(cephTarget) === undefined, 20_000);
    t.pass('unmounted');
    client.close();
  });
});
