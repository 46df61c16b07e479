// The operator endpoint: /metrics, /healthz, /readyz, 404 and 405; and the scrape-time gauges,
// Node's process metrics and the registry of each gateway kept apart.
import t from 'tap';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createMetrics, connectionsByTransport, type BackendHealth, type ControllerSnapshot } from '../../src/metrics/registry.js';
import { readinessOf, startMetricsServer, type Readiness } from '../../src/metrics/http.js';
import { SOFTWARE_VERSION } from '../../src/version.js';
import { parseExposition, series, value } from './helpers/exposition.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

t.test('the endpoints', async (t) => {
  const metrics = createMetrics();
  let readiness: Readiness = { ready: true, reasons: [] };
  const { logger, lines } = capture();
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => readiness, logger });
  t.teardown(() => server.close());
  const base = `http://127.0.0.1:${server.port}`;

  const m = await fetch(`${base}/metrics`);
  t.equal(m.status, 200);
  t.equal(m.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await m.text();
  t.match(text, /^# HELP manila_gateway_build_info /m);
  t.equal(value(parseExposition(text), 'manila_gateway_build_info', { version: SOFTWARE_VERSION }), 1);
  t.equal((await fetch(`${base}/metrics?name[]=x`)).status, 200, 'a query string is ignored');

  const h = await fetch(`${base}/healthz`);
  t.equal(h.status, 200);
  t.equal((await h.text()).trim(), 'ok');
  t.equal((await fetch(`${base}/healthz`, { method: 'HEAD' })).status, 200);

  let r = await fetch(`${base}/readyz`);
  t.equal(r.status, 200);
  t.same(await r.json(), { ready: true });
  readiness = { ready: false, reasons: ['listeners not bound', 'backend ceph1 (cephfs) not healthy'] };
  r = await fetch(`${base}/readyz`);
  t.equal(r.status, 503);
  t.match(r.headers.get('content-type'), /^application\/json/);
  t.same(await r.json(), { ready: false, reasons: ['listeners not bound', 'backend ceph1 (cephfs) not healthy'] });

  const n = await fetch(`${base}/nope`);
  t.equal(n.status, 404);
  await n.text();
  t.equal((await fetch(`${base}/`)).status, 404);
  const p = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  t.equal(p.status, 405);
  t.equal(p.headers.get('allow'), 'GET, HEAD');
  t.equal((await fetch(`${base}/readyz`, { method: 'DELETE' })).status, 405);

  const info = lines.filter((l) => (l.level as number) >= 30).map((l) => l.msg);
  t.same(info, ['metrics endpoint listening'], 'no request is logged at info');
});

t.test('a readiness check that throws answers 503; a failing source does not break /metrics', async (t) => {
  const metrics = createMetrics({
    backends: () => {
      throw new Error('backend table gone');
    },
    grantsFailed: () => {
      throw new Error('applier gone');
    },
  });
  const { logger } = capture();
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    ready: () => {
      throw new Error('not yet');
    },
    logger,
  });
  t.teardown(() => server.close());
  const r = await fetch(`http://127.0.0.1:${server.port}/readyz`);
  t.equal(r.status, 503);
  t.same(await r.json(), { ready: false, reasons: ['readiness check failed: not yet'] });
  const m = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  t.equal(m.status, 200);
  const samples = parseExposition(await m.text());
  t.same(series(samples, 'manila_gateway_backend_up'), {}, 'the failing gauge is left out');
  t.equal(value(samples, 'manila_gateway_grants_failed'), undefined, 'a label-less one too (not a false 0)');
  t.equal(value(samples, 'manila_gateway_build_info', { version: SOFTWARE_VERSION }), 1);
});

t.test('close() ends kept-alive scrapers; a port in use is a clear error', async (t) => {
  const { logger } = capture();
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics(), ready: () => ({ ready: true, reasons: [] }), logger });
  const socket = net.connect(server.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  await new Promise((resolve) => socket.once('data', resolve));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await server.close();
  await closed;
  t.pass('closed with a keep-alive connection open');

  const busy = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics(), ready: () => ({ ready: true, reasons: [] }), logger });
  t.teardown(() => busy.close());
  await t.rejects(
    startMetricsServer({ host: '127.0.0.1', port: busy.port, metrics: createMetrics(), ready: () => ({ ready: true, reasons: [] }), logger }),
    { message: new RegExp(`^metrics endpoint cannot listen on 127\\.0\\.0\\.1:${busy.port}: .*EADDRINUSE`) },
  );
});

t.test('readinessOf', async (t) => {
  t.same(readinessOf({ listenersBound: true, grantsLoaded: true, backends: [{ id: 'l', type: 'local', up: true }] }), { ready: true, reasons: [] });
  t.same(readinessOf({ listenersBound: false, grantsLoaded: false, backends: [{ id: 'c', type: 'cephfs', up: false }, { id: 'l', type: 'local', up: true }] }), {
    ready: false,
    reasons: ['listeners not bound', 'grants not loaded', 'backend c (cephfs) not healthy'],
  });
});

t.test('scrape-time gauges follow their sources; process metrics; two registries', async (t) => {
  let connections: Record<string, number> = { tcp: 2, hybrid: 1 };
  let grants = { static: 3, controller: 10 };
  let controller: ControllerSnapshot | undefined = { state: 'connecting' };
  let backends: BackendHealth[] = [{ id: 'local1', type: 'local', up: true }, { id: 'ceph1', type: 'cephfs', up: false }];
  const metrics = createMetrics({
    version: '9.9.9',
    connectionsByTransport: () => connections,
    grantsBySource: () => grants,
    grantsFailed: () => 2,
    controller: () => controller,
    backends: () => backends,
    workerThreads: () => ({ threads: 3, maxThreads: 64 }),
    listingCache: () => listingCache,
    mallocHeap: () => mallocHeap,
    messageBuffers: () => messageBuffers,
  });
  const other = createMetrics();
  const none = { full: 0, pinned: 0, idle: 0 };
  let messageBuffers = {
    medium: { made: 20, live: 12, free: 5, dropped: none },
    large: { made: 7, live: 7, free: 2, dropped: { full: 3, pinned: 1, idle: 0 } },
  };
  let mallocHeap: { inUseBytes: number; freeBytes: number; mmappedBytes: number } | undefined;
  let listingCache = { hits: 40, fills: 2, bytes: 4096 };

  let s = parseExposition(await metrics.metrics());
  t.same(series(s, 'manila_gateway_malloc_heap_bytes'), {}, 'no series before the first trim');
  mallocHeap = { inUseBytes: 3 << 20, freeBytes: 5 << 20, mmappedBytes: 1 << 20 };
  s = parseExposition(await metrics.metrics());
  t.same(series(s, 'manila_gateway_malloc_heap_bytes'), { 'state=in_use': 3 << 20, 'state=free': 5 << 20, 'state=mmapped': 1 << 20 });
  t.equal(value(s, 'manila_gateway_worker_threads'), 3);
  t.equal(value(s, 'manila_gateway_worker_threads_max'), 64);
  t.equal(value(s, 'manila_gateway_listing_cache_hits_total'), 40);
  t.equal(value(s, 'manila_gateway_listing_cache_fills_total'), 2);
  t.equal(value(s, 'manila_gateway_listing_cache_bytes'), 4096);
  listingCache = { hits: 45, fills: 3, bytes: 0 };
  s = parseExposition(await metrics.metrics());
  t.equal(value(s, 'manila_gateway_listing_cache_hits_total'), 45, 'the counter follows the addon\'s count');
  t.equal(value(s, 'manila_gateway_listing_cache_fills_total'), 3);
  t.equal(value(s, 'manila_gateway_listing_cache_bytes'), 0);
  t.same(series(s, 'manila_gateway_message_buffers'), {
    'size_class=medium,state=free': 5, 'size_class=medium,state=live': 12, 'size_class=large,state=free': 2, 'size_class=large,state=live': 7,
  });
  t.same(series(s, 'manila_gateway_message_buffers_made_total'), { 'size_class=medium': 20, 'size_class=large': 7 });
  t.same(series(s, 'manila_gateway_message_buffers_dropped_total'), {
    'reason=full,size_class=medium': 0, 'reason=pinned,size_class=medium': 0, 'reason=idle,size_class=medium': 0,
    'reason=full,size_class=large': 3, 'reason=pinned,size_class=large': 1, 'reason=idle,size_class=large': 0,
  });
  messageBuffers = {
    medium: { made: 20, live: 4, free: 0, dropped: { full: 0, pinned: 0, idle: 5 } },
    large: { made: 9, live: 8, free: 0, dropped: { full: 3, pinned: 1, idle: 2 } },
  };
  s = parseExposition(await metrics.metrics());
  t.equal(value(s, 'manila_gateway_message_buffers', { size_class: 'medium', state: 'live' }), 4, 'live follows the collector');
  t.equal(value(s, 'manila_gateway_message_buffers_made_total', { size_class: 'large' }), 9, 'the counters follow the pool\'s counts');
  t.equal(value(s, 'manila_gateway_message_buffers_dropped_total', { size_class: 'medium', reason: 'idle' }), 5);
  t.equal(value(s, 'manila_gateway_message_buffers_dropped_total', { size_class: 'large', reason: 'idle' }), 2);
  t.equal(value(s, 'manila_gateway_message_buffers_dropped_total', { size_class: 'large', reason: 'full' }), 3);
  t.same(series(s, 'manila_gateway_connections'), { 'transport=tcp': 2, 'transport=vsock': 0, 'transport=hybrid_vsock': 1 });
  t.same(series(s, 'manila_gateway_grants'), { 'source=static': 3, 'source=controller': 10 });
  t.equal(value(s, 'manila_gateway_grants_failed'), 2);
  t.equal(value(s, 'manila_gateway_controller_connected'), 0);
  t.equal(value(s, 'manila_gateway_controller_applied_revision'), undefined, 'no revision applied yet');
  t.same(series(s, 'manila_gateway_controller_state'), {
    'state=connecting': 1,
    'state=connected': 0,
    'state=disconnected': 0,
    'state=stopped': 0,
  });
  t.same(series(s, 'manila_gateway_backend_up'), { 'backend=local1,type=local': 1, 'backend=ceph1,type=cephfs': 0 });
  t.same(series(s, 'manila_gateway_build_info'), { 'version=9.9.9': 1 });
  t.ok((value(s, 'manila_gateway_process_resident_memory_bytes') ?? 0) > 0, 'Node process metrics, prefixed');
  t.ok((value(s, 'manila_gateway_nodejs_heap_size_used_bytes') ?? 0) > 0);
  t.ok(value(s, 'manila_gateway_process_start_time_seconds') !== undefined);

  connections = { tcp: 0, vsock: 4 };
  grants = { static: 3, controller: 0 };
  controller = { state: 'connected', appliedRevision: 42 };
  backends = [{ id: 'local1', type: 'local', up: true }];
  metrics.connectionAccepted('tcp');
  metrics.connectionAccepted('tcp');
  metrics.connectionAccepted('hybrid');
  metrics.connectionAccepted('carrier-pigeon');
  s = parseExposition(await metrics.metrics());
  t.same(series(s, 'manila_gateway_connections'), { 'transport=tcp': 0, 'transport=vsock': 4, 'transport=hybrid_vsock': 0 });
  t.same(series(s, 'manila_gateway_connections_accepted_total'), {
    'transport=tcp': 2,
    'transport=vsock': 0,
    'transport=hybrid_vsock': 1,
    'transport=unknown': 1,
  });
  t.same(series(s, 'manila_gateway_grants'), { 'source=static': 3, 'source=controller': 0 });
  t.equal(value(s, 'manila_gateway_controller_connected'), 1);
  t.equal(value(s, 'manila_gateway_controller_applied_revision'), 42);
  t.equal(value(s, 'manila_gateway_controller_state', { state: 'connected' }), 1);
  t.same(series(s, 'manila_gateway_backend_up'), { 'backend=local1,type=local': 1 }, 'a backend gone is gone from the scrape');

  controller = undefined;
  s = parseExposition(await metrics.metrics());
  t.equal(value(s, 'manila_gateway_controller_connected'), undefined, 'no controller: no controller series');
  t.same(series(s, 'manila_gateway_controller_state'), {});

  const o = parseExposition(await other.metrics());
  t.same(series(o, 'manila_gateway_connections_accepted_total'), { 'transport=tcp': 0, 'transport=vsock': 0, 'transport=hybrid_vsock': 0 }, 'each gateway has its own registry');
  t.same(series(o, 'manila_gateway_backend_up'), {}, 'no source, no gauge');
  t.ok(value(o, 'manila_gateway_process_resident_memory_bytes'));
  for (const sample of [...s, ...o]) t.ok(sample.name.startsWith('manila_gateway_'), sample.name);
});

t.test('connectionsByTransport', async (t) => {
  t.same(
    connectionsByTransport([
      { peer: { transport: 'tcp', address: '::1', port: 1 } },
      { peer: { transport: 'vsock', cid: 3, port: 1 } },
      { peer: { transport: 'hybrid', vm: 'vm1' } },
      { peer: { transport: 'tcp', address: '10.0.0.1', port: 2 } },
    ]),
    { tcp: 2, vsock: 1, hybrid_vsock: 1 },
  );
});
