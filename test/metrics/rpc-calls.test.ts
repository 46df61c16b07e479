// The dispatcher's onCall hook feeds rpc_requests_total and the latency histogram: exact counts for
// known calls through a real RpcDispatcher with the real PORTMAP, MOUNT and NFS programs, and
// unknown program, version and procedure numbers all under the one label value 'unknown'.
import t from 'tap';
import { pino } from 'pino';
import { RpcDispatcher } from '../../src/rpc/dispatch.js';
import type { ConnectionInfo, Peer } from '../../src/rpc/types.js';
import { createPortmapProgram } from '../../src/portmap/program.js';
import { createMountProgram } from '../../src/mount/program.js';
import { createNfsProgram } from '../../src/nfs3/program.js';
import { createMetrics, LATENCY_BUCKETS, MAX_CALL_LABELS } from '../../src/metrics/registry.js';
import { authSys, call, opaque, u32 } from '../helpers/rpc-bytes.js';
import { FH, failure, fakeFs, fakeMount } from '../nfs3/fixtures/helpers.js';
import { find, parseExposition, series, value } from './helpers/exposition.js';

const peer: Peer = { transport: 'tcp', address: '10.0.0.5', port: 801 };
const connection: ConnectionInfo = { id: 1, peer, localPort: 2049, close: () => undefined };
const SYS = authSys({ uid: 0, gid: 0 });

t.test('rpc_requests_total counts exactly the calls answered', async (t) => {
  const metrics = createMetrics();
  const d = new RpcDispatcher({ logger: pino({ level: 'silent' }), onCall: metrics.onCall });
  let getattrs = 0;
  const { fs } = fakeFs({
    getattr: () => {
      if (++getattrs === 2) throw new Error('a bug in the layer');
      return failure(5);
    },
  });
  d.register(createPortmapProgram());
  d.register(createMountProgram(fakeMount({ 'tcp:10.0.0.5': ['demo'] }).service));
  d.register(createNfsProgram(fs));

  let xid = 1;
  const send = async (prog: number, vers: number, proc: number, args?: Buffer, extra: { cred?: Buffer; rpcvers?: number } = {}) => {
    const reply = await d.dispatch(call({ xid: xid++, prog, vers, proc, ...(args ? { args } : {}), ...extra }), peer, connection);
    t.not(reply, null);
  };

  await send(100000, 2, 0); // portmap NULL
  await send(100000, 2, 0);
  await send(100000, 2, 3, u32(100003, 3, 6, 0)); // GETPORT
  await send(100000, 2, 3, u32(100003)); // GETPORT, arguments cut short
  await send(100000, 2, 5); // CALLIT: PROC_UNAVAIL
  await send(100005, 3, 0); // mount NULL
  await send(100005, 3, 5); // EXPORT
  await send(100003, 3, 0); // nfs NULL
  await send(100003, 3, 1, opaque(FH), { cred: SYS }); // GETATTR: NFS3ERR_IO is an RPC success
  await send(100003, 3, 1, opaque(FH), { cred: SYS }); // GETATTR: the layer throws
  await send(100003, 3, 99); // no such procedure
  await send(100003, 4, 1); // no such version
  await send(400200, 1, 0); // no such program
  await send(400200, 1, 7);
  await send(0xffffffff, 0xffffffff, 0xffffffff);
  await send(100003, 3, 0, undefined, { rpcvers: 3 }); // RPC_MISMATCH

  const samples = parseExposition(await metrics.metrics());
  t.same(series(samples, 'manila_gateway_rpc_requests_total'), {
    'outcome=ok,procedure=null,program=portmap': 2,
    'outcome=ok,procedure=getport,program=portmap': 1,
    'outcome=garbage,procedure=getport,program=portmap': 1,
    'outcome=unavailable,procedure=callit,program=portmap': 1,
    'outcome=ok,procedure=null,program=mount': 1,
    'outcome=ok,procedure=export,program=mount': 1,
    'outcome=ok,procedure=null,program=nfs3': 1,
    'outcome=ok,procedure=getattr,program=nfs3': 1,
    'outcome=error,procedure=getattr,program=nfs3': 1,
    'outcome=unavailable,procedure=unknown,program=nfs3': 2,
    'outcome=unavailable,procedure=unknown,program=unknown': 3,
    'outcome=denied,procedure=unknown,program=unknown': 1,
  });

  // The histogram: one observation per call, by program and procedure only.
  const counts = series(samples, 'manila_gateway_rpc_request_duration_seconds_count');
  t.same(counts, {
    'procedure=null,program=portmap': 2,
    'procedure=getport,program=portmap': 2,
    'procedure=callit,program=portmap': 1,
    'procedure=null,program=mount': 1,
    'procedure=export,program=mount': 1,
    'procedure=null,program=nfs3': 1,
    'procedure=getattr,program=nfs3': 2,
    'procedure=unknown,program=nfs3': 2,
    'procedure=unknown,program=unknown': 4,
  });
  const buckets = find(samples, 'manila_gateway_rpc_request_duration_seconds_bucket', { program: 'portmap', procedure: 'null' });
  t.same(buckets.map((b) => b.labels.le), [...LATENCY_BUCKETS.map(String), '+Inf']);
  t.equal(buckets.at(-1)!.value, 2, '+Inf bucket holds every call');
  t.ok(buckets[0]!.value <= 2);
  const sum = value(samples, 'manila_gateway_rpc_request_duration_seconds_sum', { program: 'portmap', procedure: 'null' });
  t.ok(sum !== undefined && sum >= 0 && sum < 5, 'durations are in seconds');
});

t.test('label values stay bounded whatever the hook is told', async (t) => {
  const metrics = createMetrics();
  metrics.onCall({ program: 'nfs3', procedure: 'GETATTR', durationMs: 0.05, outcome: 'ok' });
  metrics.onCall({ program: 'Not A Name!', procedure: 'x', durationMs: 1, outcome: 'ok' });
  metrics.onCall({ program: 'nfs3', procedure: '../../etc/passwd', durationMs: 1, outcome: 'ok' });
  metrics.onCall({ program: 'nfs3', procedure: 'null', durationMs: -3, outcome: 'weird' as never });
  for (let i = 0; i < MAX_CALL_LABELS + 50; i++) metrics.onCall({ program: 'nlm4', procedure: `p${i}`, durationMs: 1, outcome: 'ok' });
  const samples = parseExposition(await metrics.metrics());
  const requests = find(samples, 'manila_gateway_rpc_requests_total');
  t.ok(requests.length <= MAX_CALL_LABELS + 5, `${requests.length} series`);
  t.equal(value(samples, 'manila_gateway_rpc_requests_total', { program: 'nfs3', procedure: 'getattr', outcome: 'ok' }), 1, 'names are lower case');
  t.equal(value(samples, 'manila_gateway_rpc_requests_total', { program: 'unknown', procedure: 'unknown', outcome: 'ok' }), 1 + 50 + 4);
  t.equal(value(samples, 'manila_gateway_rpc_requests_total', { program: 'nfs3', procedure: 'unknown', outcome: 'ok' }), 1);
  t.equal(value(samples, 'manila_gateway_rpc_requests_total', { program: 'nfs3', procedure: 'null', outcome: 'unknown' }), 1);
  t.equal(value(samples, 'manila_gateway_rpc_request_duration_seconds_bucket', { program: 'nfs3', procedure: 'getattr', le: '0.00005' }), 1, '50 µs lands in the 50 µs bucket');
  t.equal(value(samples, 'manila_gateway_rpc_request_duration_seconds_bucket', { program: 'nfs3', procedure: 'getattr', le: '0.00002' }), 0);
  for (const s of requests) t.match(s.labels, { program: /^[a-z][a-z0-9_]*$/, procedure: /^[a-z][a-z0-9_]*$/ });
});

t.test('share, procedure and status labels from the observer', async (t) => {
  const metrics = createMetrics();
  metrics.observer.onOp('demo', 'getattr', 0);
  metrics.observer.onOp('demo', 'getattr', 70);
  metrics.observer.onOp('demo', 'getattr', 4242 as never);
  metrics.observer.onOp('demo', 'bogus' as never, 0);
  metrics.observer.onRead('demo', 7);
  metrics.observer.onWrite('demo', 9);
  const samples = parseExposition(await metrics.metrics());
  t.same(series(samples, 'manila_gateway_nfs_ops_total'), {
    'procedure=getattr,share=demo,status=NFS3_OK': 1,
    'procedure=getattr,share=demo,status=NFS3ERR_STALE': 1,
    'procedure=getattr,share=demo,status=unknown': 1,
    'procedure=unknown,share=demo,status=NFS3_OK': 1,
  });
  t.equal(value(samples, 'manila_gateway_read_bytes_total', { share: 'demo' }), 7);
  t.equal(value(samples, 'manila_gateway_written_bytes_total', { share: 'demo' }), 9);
});
