// The metrics endpoint of a real daemon: counters equal exactly the operations and bytes the
// test performs, through our RPC client and through libnfs.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { nfsUrl, run, startDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/wait.js';
import { RpcClient } from '../helpers/nfs-client.js';
import { parseExposition, type Sample } from '../metrics/helpers/exposition.js';

t.test('exact counts after known traffic', async (t) => {
  const metricsPort = await freePort();
  const d = await startDaemon({ shares: [{ id: 'm' }], extraConfig: { metrics: { host: '127.0.0.1', port: metricsPort } } });
  t.teardown(() => d.stop());
  const scrape = async (): Promise<Sample[]> => parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
  const value = (samples: Sample[], name: string, labels: Record<string, string>): number =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

  t.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
  const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
  t.equal(ready.status, 200, 'ready: listeners bound, grants loaded, backends up');

  const c = await RpcClient.connect(d.port);
  t.teardown(() => c.close());
  const root = (await c.mount('/m')).handle!;
  for (let i = 0; i < 3; i++) t.equal((await c.getattr(root)).status, 0);
  t.equal((await c.lookup(root, 'missing')).status, 2, 'NFS3ERR_NOENT');
  let samples = await scrape();
  t.equal(value(samples, 'manila_gateway_nfs_ops_total', { share: 'm', procedure: 'getattr', status: 'NFS3_OK' }), 3, '3 GETATTR');
  t.equal(value(samples, 'manila_gateway_nfs_ops_total', { share: 'm', procedure: 'lookup', status: 'NFS3ERR_NOENT' }), 1, '1 LOOKUP, NOENT');
  t.equal(value(samples, 'manila_gateway_rpc_requests_total', { program: 'mount', procedure: 'mnt' }), 1, '1 MNT');
  t.equal(value(samples, 'manila_gateway_rpc_request_duration_seconds_count', { program: 'nfs3', procedure: 'getattr' }), 3);
  t.equal(value(samples, 'manila_gateway_connections', { transport: 'tcp' }), 1, 'one connection open');
  t.equal(value(samples, 'manila_gateway_grants', { source: 'static' }), 1);
  t.ok(samples.some((s) => s.name === 'manila_gateway_process_resident_memory_bytes'), 'process metrics');

  // libnfs: the bytes it writes and reads back are counted exactly.
  const size = 3 * 1024 * 1024 + 12345;
  const tmp = t.testdir(); // once: every call empties it
  const local = path.join(tmp, 'payload');
  writeFileSync(local, randomBytes(size));
  const cp = await run('nfs-cp', [local, nfsUrl(d.port, 'm', 'payload')], { timeoutMs: 60_000 });
  t.equal(cp.code, 0, cp.stderr);
  const back = path.join(tmp, 'back');
  const get = await run('nfs-cp', [nfsUrl(d.port, 'm', 'payload'), back], { timeoutMs: 60_000 });
  t.equal(get.code, 0, get.stderr);
  t.ok(readFileSync(back).equals(readFileSync(local)), 'the data came back intact');
  samples = await scrape();
  t.equal(value(samples, 'manila_gateway_written_bytes_total', { share: 'm' }), size, `written_bytes_total = ${size}`);
  t.equal(value(samples, 'manila_gateway_read_bytes_total', { share: 'm' }), size, `read_bytes_total = ${size}`);
  t.ok(value(samples, 'manila_gateway_connections_accepted_total', { transport: 'tcp' }) >= 3, 'accepted connections counted');
  // The READ replies and WRITE records of the copies came from the message buffer pool.
  t.ok(value(samples, 'manila_gateway_message_buffers_made_total', {}) >= 1, 'pooled message buffers made');
  for (const sizeClass of ['medium', 'large']) {
    const live = value(samples, 'manila_gateway_message_buffers', { size_class: sizeClass, state: 'live' });
    const free = value(samples, 'manila_gateway_message_buffers', { size_class: sizeClass, state: 'free' });
    t.ok(live >= free, `${sizeClass}: ${live} live, ${free} of them free`);
  }
});
