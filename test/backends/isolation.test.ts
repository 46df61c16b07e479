// A hung backend must not stall the others (issue 5, "Isolation"). The hung backend is a FUSE file
// system the test controls: bindfs in the foreground, frozen with SIGSTOP (every call into the
// mount then blocks in the kernel, as with a dead MDS or FUSE daemon) and thawed with SIGCONT.
//
// The daemon runs as a real process (its threadpool of 64). 150 CREATEs are sent to the hung share:
// without the per-backend gate they would take every pool thread and the other share would stall
// too; with it, at most max_inflight (2) threads are ever stuck and the other share keeps working.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { RpcClient } from '../helpers/nfs-client.js';
import { JUKEBOX, create } from '../helpers/backends.js';
import { freePort, until } from '../helpers/wait.js';
import { parseExposition, value } from '../metrics/helpers/exposition.js';

const metricValue = (text: string, name: string, labels: Record<string, string>) => value(parseExposition(text), name, labels);

const bindfs = spawnSync('sh', ['-c', 'command -v bindfs']).status === 0;
const skip = process.getuid?.() !== 0 ? 'needs root (FUSE mount)' : !bindfs ? 'bindfs is not installed (scripts/install-deps.sh --test)' : !existsSync('/dev/fuse') ? 'no /dev/fuse' : false;


t.test('a frozen FUSE backend gets JUKEBOX within its bound; the other backend is not touched', { skip }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-isolation-'));
  const source = path.join(dir, 'source');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(path.join(source, 'slow'), { recursive: true });
  mkdirSync(mnt);
  writeFileSync(path.join(source, 'slow', 'hello'), 'hello\n');
  const fuse: ChildProcess = spawn('bindfs', ['-f', source, mnt], { stdio: 'ignore' });
  let frozen = false;
  t.teardown(() => {
    if (frozen) fuse.kill('SIGCONT');
    spawnSync('umount', ['-l', mnt]);
    fuse.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  await until('bindfs mounted', () => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `));

  const metricsPort = await freePort();
  const daemon: Daemon = await startDaemon({
    shares: [{ id: 'fast' }],
    grants: [{ id: 'g-slow', share: 'slow', backend: 'fuse', path: 'slow', guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none' }],
    backends: [{ id: 'fuse', type: 'local', path: mnt, max_inflight: 2, op_timeout_ms: 400, health_interval_s: 0.2, health_timeout_s: 0.6 }],
    extraConfig: { metrics: { host: '127.0.0.1', port: metricsPort } },
  });
  t.teardown(() => daemon.stop());
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();

  const slowClient = await RpcClient.connect(daemon.port);
  const fastClient = await RpcClient.connect(daemon.port);
  t.teardown(() => {
    slowClient.close();
    fastClient.close();
  });
  const slow = (await slowClient.mount('/slow')).handle!;
  const fast = (await fastClient.mount('/fast')).handle!;
  t.equal(await create(slowClient, slow, 'before'), 0, 'the FUSE share works before the freeze');

  fuse.kill('SIGSTOP');
  frozen = true;
  const slowAnswers = Promise.all(Array.from({ length: 150 }, (_, i) => create(slowClient, slow, `frozen-${i}`)));

  // While 150 calls sit on the frozen backend, the other share answers everything.
  let fastOk = 0;
  for (let i = 0; i < 40; i++) {
    if ((await create(fastClient, fast, `f-${i}`, 10_000)) === 0) fastOk++;
    if ((await fastClient.getattr(fast)).status === 0) fastOk++;
  }
  t.equal(fastOk, 80, 'every CREATE and GETATTR on the other backend succeeded during the freeze');

  const statuses = await slowAnswers;
  t.equal(statuses.filter((s) => s === JUKEBOX).length, 150, 'all 150 calls on the frozen backend were answered NFS3ERR_JUKEBOX');

  const hung = await until('backend reported hung', async () => {
    const text = await scrape();
    return metricValue(text, 'manila_gateway_backend_state', { backend: 'fuse', state: 'hung' }) === 1 ? text : undefined;
  });
  t.equal(metricValue(hung, 'manila_gateway_backend_up', { backend: 'fuse', type: 'local' }), 0, 'backend_up 0');
  t.equal(metricValue(hung, 'manila_gateway_backend_up', { backend: 'local1', type: 'local' }), 1, 'the other backend is up');
  t.equal(metricValue(hung, 'manila_gateway_backend_ops_in_flight', { backend: 'fuse' }), 2, 'no more threads stuck than max_inflight');
  t.ok((metricValue(hung, 'manila_gateway_backend_timeouts_total', { backend: 'fuse' }) ?? 0) >= 150, 'timeouts counted');
  const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
  t.equal(ready.status, 503, '/readyz says not ready');
  t.match(await ready.text(), /backend fuse/, 'and names the backend');

  const started = Date.now();
  t.equal(await create(slowClient, slow, 'while-hung'), JUKEBOX, 'a known-hung backend is refused at once');
  t.comment(`JUKEBOX for a known-hung backend after ${Date.now() - started} ms`);

  fuse.kill('SIGCONT');
  frozen = false;
  await until('backend ready again', async () => metricValue(await scrape(), 'manila_gateway_backend_state', { backend: 'fuse', state: 'ready' }) === 1);
  t.equal(await create(slowClient, slow, 'after'), 0, 'the share works again once the backend answers');
  t.equal((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status, 200, 'ready again');
  await until('stuck calls returned', async () => metricValue(await scrape(), 'manila_gateway_backend_ops_in_flight', { backend: 'fuse' }) === 0);
  t.ok(existsSync(path.join(source, 'slow', 'after')), 'the file is on the backend');
});
