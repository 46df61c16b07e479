// Gateway sessions against a fake gateway speaking the real codec: Hello -> Welcome + Snapshot,
// pushed changes with their revisions, Acks in GET /v1/gateways, refusals that keep the session,
// snapshot resends, replacement and heartbeats.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { wireTypes } from '../../src/control/protocol.js';
import { FakeGateway, gateway, gatewayView, grantDoc, request, sleep, start } from './helpers/controller.js';
import { until } from '../helpers/wait.js';

const post = (url: string, over: Record<string, unknown> = {}) => request(url, 'POST', '/v1/grants', { body: grantDoc(over) });

t.test('Hello -> Welcome and a Snapshot of exactly that node', async (t) => {
  const c = await start(t, { heartbeatIntervalMs: 1500 });
  await post(c.url, { id: 'a1', share: 'sa1', path: 'sa1' });
  await post(c.url, { id: 'a2', share: 'sa2', path: 'sa2', access: 'ro', guest: { cid: 12 } });
  await post(c.url, { id: 'b1', share: 'sb1', path: 'sb1', node_id: 'n2' });
  const gw = await gateway(t, c);
  const { welcome, snapshot } = await gw.join('n1');
  t.match(welcome.epoch, /^[0-9a-f]{32}$/);
  t.equal(welcome.revision, 2);
  t.equal(welcome.heartbeatIntervalMs, 1500);
  t.equal(snapshot.epoch, welcome.epoch);
  t.equal(snapshot.revision, 2);
  t.same(
    snapshot.grants.map((g) => [g.id, g.share, g.access, g.guest]),
    [['a1', 'sa1', 'rw', { tcp: '10.0.0.1' }], ['a2', 'sa2', 'ro', { cid: 12 }]],
    "n1's grants only, defaults filled in",
  );
  t.ok(await gw.quiet(200), 'nothing more until something changes');

  const empty = await gateway(t, c);
  const fresh = await empty.join('n-new');
  t.equal(fresh.welcome.revision, 0, 'an unknown node is at revision 0');
  t.same(fresh.snapshot.grants, [], '... and still gets a (empty) Snapshot');
  const view = await gatewayView(c, 'n-new');
  t.equal(view.connected, true, 'a node that connected is listed without grants');
  t.equal(view.software_version, 'fake-1.0');
  t.same(view.capabilities, ['tcp', 'backend:local']);
  t.match(view.remote_address, /^127\.0\.0\.1:\d+$/);
  t.ok(c.logs.some((l) => l.msg === 'gateway hello' && l.node === 'n-new' && l.level === 30), 'connect logged at info');
});

t.test('a POST then a DELETE reach the gateway as Upsert N+1 and Revoke N+2', async (t) => {
  const c = await start(t);
  await post(c.url, { id: 'g0', share: 's0', path: 's0' });
  const gw = await gateway(t, c);
  const { welcome } = await gw.join('n1');
  const n = welcome.revision;
  t.equal((await post(c.url)).status, 201);
  const upsert = await gw.next('upsert');
  t.equal(upsert.revision, n + 1);
  t.same(upsert.grant, { id: 'g1', share: 's1', backend: 'b1', path: 's1', guest: { tcp: '10.0.0.1' }, access: 'rw', squash: 'root', anonUid: 65534, anonGid: 65534 });
  t.equal((await request(c.url, 'DELETE', '/v1/grants/g1')).status, 204);
  const revoke = await gw.next('revoke');
  t.same(revoke, { kind: 'revoke', revision: n + 2, grantId: 'g1' });
  t.equal((await post(c.url, { id: 'x', share: 'sx', path: 'sx', node_id: 'n2' })).status, 201);
  t.ok(await gw.quiet(200), "another node's change is not pushed here");
  t.equal((await post(c.url, { id: 'g0', share: 's0', path: 's0' })).status, 200, 'an unchanged replacement');
  t.ok(await gw.quiet(200), '... pushes nothing');
  const changes = c.logs.filter((l) => l.msg === 'grant changed').map((l) => [l.grant, l.node, l.revision, l.change]);
  t.same(changes, [['g0', 'n1', 1, 'upsert'], ['g1', 'n1', 2, 'upsert'], ['g1', 'n1', 3, 'revoke'], ['x', 'n2', 1, 'upsert']], 'API changes logged');
});

t.test('a grant moved between connected nodes', async (t) => {
  const c = await start(t);
  await post(c.url);
  const one = await gateway(t, c);
  const two = await gateway(t, c);
  t.equal((await one.join('n1')).welcome.revision, 1);
  t.equal((await two.join('n2')).welcome.revision, 0);
  t.equal((await post(c.url, { node_id: 'n2', access: 'ro' })).status, 200);
  t.same(await one.next('revoke'), { kind: 'revoke', revision: 2, grantId: 'g1' }, 'revoked on the old node');
  const upsert = await two.next('upsert');
  t.equal(upsert.revision, 1, 'upserted on the new node with its own revision');
  t.equal(upsert.grant.access, 'ro');
});

t.test('acks and status reports in GET /v1/gateways', async (t) => {
  const c = await start(t);
  await post(c.url, { id: 'g1' });
  await post(c.url, { id: 'g2', share: 's2', path: 's2' });
  let view = await gatewayView(c, 'n1');
  t.same(
    { connected: view.connected, revision: view.revision, last_acked_revision: view.last_acked_revision, epoch: view.epoch, status: view.status },
    { connected: false, revision: 2, last_acked_revision: null, epoch: null, status: null },
    'a node with grants is listed before it ever connects',
  );
  t.same(view.grants, { g1: { state: 'pending', reason_code: '', reason: '' }, g2: { state: 'pending', reason_code: '', reason: '' } });

  const gw = await gateway(t, c);
  const { welcome, snapshot } = await gw.join('n1');
  gw.ack(welcome.epoch, snapshot.revision, [
    { grantId: 'g1' },
    { grantId: 'g2', state: 'FAILED', reasonCode: 'SHARE_PATH_MISSING', reason: 'b1:s2 does not exist' },
  ]);
  gw.send({
    kind: 'status',
    epoch: welcome.epoch,
    appliedRevision: 2,
    connections: 3,
    backends: [{ id: 'b1', type: 'local', state: 'READY', reason: '' }],
    shares: [{ share: 's1', connections: 2, ops: 42 }],
    uptimeMs: 1234,
  });
  await until('the status report', async () => (await gatewayView(c, 'n1')).status !== null, 3000);
  view = await gatewayView(c, 'n1');
  t.equal(view.connected, true);
  t.ok(view.connected_since);
  t.ok(view.last_heartbeat_at, 'time of the last frame');
  t.equal(view.last_acked_revision, 2);
  t.equal(view.epoch, welcome.epoch);
  t.same(view.grants, {
    g1: { state: 'applied', reason_code: '', reason: '' },
    g2: { state: 'failed', reason_code: 'SHARE_PATH_MISSING', reason: 'b1:s2 does not exist' },
  });
  t.match(view.status, {
    epoch: welcome.epoch,
    applied_revision: 2,
    connections: 3,
    backends: [{ id: 'b1', type: 'local', state: 'READY', reason: '' }],
    shares: [{ share: 's1', connections: 2, ops: 42 }],
    uptime_ms: 1234,
  });

  // A change makes the grant pending again until an Ack at or after its revision reports it.
  await post(c.url, { id: 'g2', share: 's2', path: 's2', access: 'ro' });
  const upsert = await gw.next('upsert');
  t.equal((await gatewayView(c, 'n1')).grants.g2.state, 'pending', 'changed -> pending');
  t.equal((await gatewayView(c, 'n1')).grants.g1.state, 'applied', 'the others keep their state');
  gw.ack(welcome.epoch, snapshot.revision, [{ grantId: 'g2' }]); // an old ack, arriving late
  await sleep(100);
  t.equal((await gatewayView(c, 'n1')).grants.g2.state, 'pending', 'an ack older than the change does not count');
  gw.ack(welcome.epoch, upsert.revision, [{ grantId: 'g2' }]);
  await until('g2 applied', async () => (await gatewayView(c, 'n1')).grants.g2.state === 'applied', 3000);
  t.equal((await gatewayView(c, 'n1')).last_acked_revision, 3);

  // Refused acks change nothing.
  gw.ack('another-epoch', 3, [{ grantId: 'g1', state: 'FAILED', reasonCode: 'X', reason: 'x' }]);
  const wrongEpoch = await gw.next('error');
  t.equal(wrongEpoch.code, 'UNEXPECTED_MESSAGE');
  t.match(wrongEpoch.message, /ack\.epoch/);
  gw.ack(welcome.epoch, 99, [{ grantId: 'g1', state: 'FAILED', reasonCode: 'X', reason: 'x' }]);
  const beyond = await gw.next('error');
  t.equal(beyond.code, 'UNEXPECTED_MESSAGE');
  t.equal(beyond.revision, 99);
  t.match(beyond.message, /ack\.revision: 99 is beyond/);
  view = await gatewayView(c, 'n1');
  t.equal(view.grants.g1.state, 'applied');
  t.equal(view.last_acked_revision, 3);

  gw.close();
  await gw.closed;
  await until('disconnected', async () => (await gatewayView(c, 'n1')).connected === false, 3000);
  view = await gatewayView(c, 'n1');
  t.equal(view.connected_since, null);
  t.equal(view.grants.g1.state, 'applied', 'what was acked stays known after a disconnect');
  t.ok(c.logs.some((l) => l.msg === 'gateway disconnected' && l.node === 'n1' && l.level === 30), 'disconnect logged at info');
});

t.test('malformed frames are answered with Error and keep the session', async (t) => {
  const c = await start(t);
  await post(c.url);
  const gw = await gateway(t, c);

  // Before Hello: refused, the session stays open for the Hello.
  gw.ack('e', 1, []);
  const early = await gw.next('error');
  t.equal(early.code, 'UNEXPECTED_MESSAGE');
  t.match(early.message, /before Hello/);
  gw.sendRaw(Buffer.from([0xff, 0xff, 0xff]));
  t.equal((await gw.next('error')).code, 'MALFORMED', 'garbage before Hello');
  const { welcome, snapshot } = await gw.join('n1');
  t.equal(snapshot.grants.length, 1);

  const bad: Array<[string, Buffer | string, RegExp]> = [
    ['random bytes', Buffer.concat([Buffer.from([0x0a, 0xff]), randomBytes(64)]), /does not decode|no body/],
    ['a text frame', 'hello', /text frames/],
    ['an empty body', Buffer.alloc(0), /no body/],
    ['an unknown field only', Buffer.from([0xf8, 0x01, 0x01]), /no body/],
    [
      'a bad enum in an ack',
      Buffer.from(wireTypes.GatewayMessage.encode(wireTypes.GatewayMessage.fromObject({ ack: { epoch: welcome.epoch, revision: 1, results: [{ grant_id: 'g1', state: 9 }] } })).finish()),
      /ack\.results\[0\]\.state/,
    ],
    [
      'a bad grant id in an ack',
      Buffer.from(wireTypes.GatewayMessage.encode(wireTypes.GatewayMessage.fromObject({ ack: { epoch: welcome.epoch, revision: 1, results: [{ grant_id: '../x', state: 1 }] } })).finish()),
      /ack\.results\[0\]\.grant_id/,
    ],
  ];
  for (const [what, frame, reason] of bad) {
    gw.sendRaw(frame);
    const error = await gw.next('error');
    t.equal(error.code, 'MALFORMED', what);
    t.match(error.message, reason, `${what}: ${error.message}`);
  }
  gw.hello('n1');
  const second = await gw.next('error');
  t.equal(second.code, 'UNEXPECTED_MESSAGE', 'a second Hello');
  t.match(second.message, /second Hello/);

  t.equal(gw.ws.readyState, gw.ws.OPEN, 'the session is kept');
  t.equal((await gatewayView(c, 'n1')).grants.g1.state, 'pending', 'nothing changed');
  t.equal((await post(c.url, { access: 'ro' })).status, 200);
  t.equal((await gw.next('upsert')).revision, 2, 'changes still arrive');
  const warnings = c.logs.filter((l) => l.msg === 'gateway frame refused' && l.level === 40);
  t.equal(warnings.length, bad.length + 3, 'each refusal logged at warn');
});

t.test('REVISION_OUT_OF_ORDER from the gateway -> a fresh Snapshot', async (t) => {
  const c = await start(t);
  await post(c.url);
  const gw = await gateway(t, c);
  const { welcome } = await gw.join('n1');
  await post(c.url, { id: 'g2', share: 's2', path: 's2' });
  const upsert = await gw.next('upsert');
  await post(c.url, { id: 'g3', share: 's3', path: 's3' });
  const upsert2 = await gw.next('upsert');
  // The gateway refuses both (say it lost its state): one Snapshot at the current revision.
  gw.send({ kind: 'error', code: 'REVISION_OUT_OF_ORDER', message: 'applied 0, got 2', revision: upsert.revision });
  gw.send({ kind: 'error', code: 'REVISION_OUT_OF_ORDER', message: 'applied 0, got 3', revision: upsert2.revision });
  const snapshot = await gw.next('snapshot');
  t.equal(snapshot.epoch, welcome.epoch);
  t.equal(snapshot.revision, 3);
  t.same(snapshot.grants.map((g) => g.id), ['g1', 'g2', 'g3']);
  t.ok(await gw.quiet(200), 'the second refusal of the same state sends no second Snapshot at once');
  const retried = await gw.next('snapshot', 1500);
  t.equal(retried.revision, 3, '... but one after the retry delay');
  gw.ack(welcome.epoch, 3, [{ grantId: 'g1' }, { grantId: 'g2' }, { grantId: 'g3' }]);
  t.ok(await gw.quiet(1200), 'an Ack of the current revision ends the retries');
  t.ok(c.logs.some((l) => l.msg === 'gateway reported an error' && l.code === 'REVISION_OUT_OF_ORDER' && l.level === 40));

  // After a new change, a refusal gets a Snapshot again.
  await post(c.url, { id: 'g4', share: 's4', path: 's4' });
  const upsert4 = await gw.next('upsert');
  gw.send({ kind: 'error', code: 'REVISION_OUT_OF_ORDER', message: 'no', revision: upsert4.revision });
  t.equal((await gw.next('snapshot')).revision, 4);
  t.equal(gw.ws.readyState, gw.ws.OPEN);
});

t.test('a second connection for a node replaces the first', async (t) => {
  const c = await start(t);
  await post(c.url);
  const first = await gateway(t, c);
  await first.join('n1');
  const second = await gateway(t, c);
  const { snapshot } = await second.join('n1');
  t.same(snapshot.grants.map((g) => g.id), ['g1']);
  t.same(await first.closed, { code: 4000, reason: 'replaced' });
  await post(c.url, { id: 'g2', share: 's2', path: 's2' });
  t.equal((await second.next('upsert')).grant.id, 'g2', 'changes go to the new session');
  await sleep(50);
  t.equal((await gatewayView(c, 'n1')).connected, true, "the old session's close does not disconnect the node");
  const other = await gateway(t, c);
  await other.join('n2');
  t.equal(second.ws.readyState, second.ws.OPEN, 'another node does not replace it');
});

t.test('heartbeats: sent every interval; a silent gateway is cut off', async (t) => {
  const c = await start(t, { heartbeatIntervalMs: 100 });
  const lively = await gateway(t, c);
  await lively.join('n1');
  const beat = setInterval(() => lively.send({ kind: 'heartbeat', sequence: 1, sentAtMs: Date.now() }), 80);
  t.teardown(() => clearInterval(beat));

  const silent = await gateway(t, c);
  const started = Date.now();
  await silent.join('n2');
  const closed = await silent.closed;
  const after = Date.now() - started;
  t.equal(closed.code, 1006, 'terminated (no close handshake)');
  t.ok(after >= 280 && after < 2000, `closed after ${after} ms (3 intervals of 100 ms)`);
  t.ok(silent.heartbeats >= 1, `the controller sent heartbeats (${silent.heartbeats})`);
  t.ok(c.logs.some((l) => l.msg === 'gateway missed heartbeats: closing' && l.node === 'n2'));
  await sleep(500);
  t.equal(lively.ws.readyState, lively.ws.OPEN, 'a gateway that keeps sending stays');
  t.ok(lively.heartbeats >= 5, `heartbeats keep coming (${lively.heartbeats})`);
  t.notOk(c.logs.some((l) => String(l.msg).toLowerCase().includes('heartbeat') && l.msg !== 'gateway missed heartbeats: closing'), 'nothing logged per heartbeat');
});

t.test('no Hello in time, or a protocol not spoken: closed', async (t) => {
  const c = await start(t, { helloTimeoutMs: 200 });
  const mute = await gateway(t, c);
  const started = Date.now();
  const closed = await mute.closed;
  t.equal(closed.code, 1008);
  t.ok(Date.now() - started >= 150, 'after the Hello timeout');

  const old = await gateway(t, c);
  old.hello('n1', { protocolVersion: 2 });
  const error = await old.next('error');
  t.equal(error.code, 'UNSUPPORTED_PROTOCOL');
  t.match(error.message, /protocol_version: 2/);
  t.equal((await old.closed).code, 1002);
  t.equal(await gatewayView(c, 'n1'), undefined, 'a refused Hello leaves no trace');
});

t.test('stop() closes sessions with 1001', async (t) => {
  const c = await start(t);
  await post(c.url);
  const gw = await FakeGateway.connect(c.gatewayUrl);
  t.teardown(() => gw.ws.terminate());
  await gw.join('n1');
  const stopping = c.stop();
  t.same(await gw.closed, { code: 1001, reason: 'controller stopping' });
  await stopping;
  await t.rejects(request(c.url, 'GET', '/healthz'), 'the server is closed');
});

t.test('PERSIST_FAILED from the gateway -> a Snapshot after a delay, until it acks', async (t) => {
  const c = await start(t);
  await post(c.url);
  await post(c.url, { id: 'g2', share: 's2', path: 's2' });
  const gw = await gateway(t, c);
  const { welcome, snapshot } = await gw.join('n1');
  gw.ack(welcome.epoch, snapshot.revision, [{ grantId: 'g1' }, { grantId: 'g2' }]);
  await until('the snapshot acked', async () => (await gatewayView(c, 'n1')).last_acked_revision === 2, 3000);

  t.equal((await request(c.url, 'DELETE', '/v1/grants/g2')).status, 204);
  const revoke = await gw.next('revoke');
  t.equal(revoke.revision, 3);
  const refusedAt = Date.now();
  gw.send({ kind: 'error', code: 'PERSIST_FAILED', message: 'disk full', revision: revoke.revision });
  const resent = await gw.next('snapshot', 1500);
  const after = Date.now() - refusedAt;
  t.ok(after >= 900, `not at once (${after} ms)`);
  t.equal(resent.epoch, welcome.epoch);
  t.equal(resent.revision, 3, 'at the current revision');
  t.same(resent.grants.map((g) => g.id), ['g1'], 'without the revoked grant');
  gw.ack(welcome.epoch, resent.revision, [{ grantId: 'g1' }, { grantId: 'g2', state: 'REVOKED' }]);
  await until('the resent snapshot acked', async () => (await gatewayView(c, 'n1')).last_acked_revision === 3, 3000);
  const view = await gatewayView(c, 'n1');
  t.equal(view.last_acked_revision, view.revision, 'the gateway caught up');
  t.same(Object.keys(view.grants), ['g1']);
  t.ok(await gw.quiet(1200), 'no more snapshots once acked');
  t.ok(c.logs.some((l) => l.msg === 'gateway reported an error' && l.code === 'PERSIST_FAILED' && l.level === 40), 'the refusal logged at warn');
});

t.test('snapshot retries back off (1 s, 2 s, ...) and start again at 1 s after an Ack', async (t) => {
  const c = await start(t);
  await post(c.url);
  const gw = await gateway(t, c);
  const { welcome, snapshot } = await gw.join('n1');
  const refuse = (revision: number) => gw.send({ kind: 'error', code: 'PERSIST_FAILED', message: 'disk full', revision });
  const timed = async () => {
    const at = Date.now();
    const frame = await gw.next('snapshot', 3500);
    return { frame, ms: Date.now() - at };
  };
  refuse(snapshot.revision); // the Hello's snapshot
  const first = timed();
  const one = await first;
  t.ok(one.ms >= 900 && one.ms < 1800, `first retry after ~1 s (${one.ms} ms)`);
  refuse(one.frame.revision);
  const two = await timed();
  t.ok(two.ms >= 1900 && two.ms < 3200, `second retry after ~2 s (${two.ms} ms)`);
  gw.ack(welcome.epoch, two.frame.revision, [{ grantId: 'g1' }]);
  await until('acked', async () => (await gatewayView(c, 'n1')).last_acked_revision === 1, 3000);

  await post(c.url, { access: 'ro' });
  const upsert = await gw.next('upsert');
  refuse(upsert.revision);
  const three = await timed();
  t.ok(three.ms >= 900 && three.ms < 1800, `after an Ack the delay is ~1 s again (${three.ms} ms)`);
  t.equal(three.frame.revision, 2);
  t.equal(three.frame.grants[0]?.access, 'ro');
});

t.test('a pending snapshot retry is dropped when the session closes or the controller stops', async (t) => {
  const c = await start(t);
  await post(c.url);
  const resends = () => c.logs.filter((l) => l.msg === 'resending snapshot after a refusal').length;

  const gone = await gateway(t, c);
  const { snapshot } = await gone.join('n1');
  gone.send({ kind: 'error', code: 'PERSIST_FAILED', message: 'disk full', revision: snapshot.revision });
  await until('the refusal', () => c.logs.some((l) => l.msg === 'gateway reported an error'), 3000);
  gone.close();
  await gone.closed;
  await sleep(1300);
  t.equal(resends(), 0, 'no resend for a closed session');

  const stays = await gateway(t, c);
  const joined = await stays.join('n1');
  stays.send({ kind: 'error', code: 'PERSIST_FAILED', message: 'disk full', revision: joined.snapshot.revision });
  await until('the second refusal', () => c.logs.filter((l) => l.msg === 'gateway reported an error').length === 2, 3000);
  const started = Date.now();
  await c.stop();
  t.ok(Date.now() - started < 1000, 'stop does not wait for the retry');
  await sleep(1300);
  t.equal(resends(), 0, 'no resend after stop');
});

t.test("a gateway ahead of the controller's state (restored from an older copy): revision moves past it", async (t) => {
  const epoch = 'a'.repeat(32);
  const dir = t.testdir({
    'state.json': JSON.stringify({ format: 1, epoch, nodes: { n1: { revision: 1 } }, grants: [grantDoc()] }),
  });
  const file = path.join(dir, 'state.json');
  const c = await start(t, {}, file);
  const gw = await gateway(t, c);
  gw.hello('n1', { epoch, lastAppliedRevision: 7 });
  const welcome = await gw.next('welcome');
  const snapshot = await gw.next('snapshot');
  t.equal(welcome.epoch, epoch);
  t.equal(welcome.revision, 8, 'Welcome: one past the gateway');
  t.equal(snapshot.revision, 8, 'Snapshot: one past the gateway');
  t.same(snapshot.grants.map((g) => g.id), ['g1'], "the controller's grants");
  t.same(JSON.parse(readFileSync(file, 'utf8')).nodes, { n1: { revision: 8 } }, 'the new revision is on disk');
  const warning = c.logs.find((l) => l.level === 40 && String(l.msg).startsWith("gateway is ahead of the controller's state"));
  t.match(warning, { node: 'n1', revision: 1, gatewayRevision: 7 }, 'warned with both revisions');
  t.equal((await gatewayView(c, 'n1')).revision, 8);
  t.equal((await gatewayView(c, 'n1')).grants.g1.state, 'pending', 'pending until the new snapshot is acked');
  gw.ack(epoch, 8, [{ grantId: 'g1' }]);
  await until('g1 applied', async () => (await gatewayView(c, 'n1')).grants.g1.state === 'applied', 3000);

  t.equal((await request(c.url, 'DELETE', '/v1/grants/g1')).status, 204);
  t.same(await gw.next('revoke'), { kind: 'revoke', revision: 9, grantId: 'g1' }, 'later changes continue from there');
  t.same(JSON.parse(readFileSync(file, 'utf8')).nodes, { n1: { revision: 9 } });

  // Not ahead: another epoch, or the same epoch at or behind the controller.
  const other = await gateway(t, c);
  other.hello('n2', { epoch: 'b'.repeat(32), lastAppliedRevision: 50 });
  t.equal((await other.next('welcome')).revision, 0, 'another epoch: revisions are not compared');
  t.equal((await other.next('snapshot')).revision, 0);
  const behind = await gateway(t, c);
  behind.hello('n1', { epoch, lastAppliedRevision: 9 });
  t.equal((await behind.next('welcome')).revision, 9, 'the same revision: unchanged');
  t.same(JSON.parse(readFileSync(file, 'utf8')).nodes, { n1: { revision: 9 } });
  t.equal(c.logs.filter((l) => String(l.msg).startsWith("gateway is ahead of the controller's state")).length, 1, 'warned once');

  // While the new revision is written, the session is not the node's yet: frames other than
  // heartbeats are refused, and nothing but Welcome then Snapshot comes first.
  const eager = await gateway(t, c);
  eager.hello('n1', { epoch, lastAppliedRevision: 20 });
  eager.send({ kind: 'heartbeat', sequence: 1, sentAtMs: Date.now() });
  eager.ack(epoch, 20, []);
  const early = await eager.next('error');
  t.equal(early.code, 'UNEXPECTED_MESSAGE');
  t.match(early.message, /ack before Welcome/);
  t.equal((await eager.next('welcome')).revision, 21);
  t.equal((await eager.next('snapshot')).revision, 21);
  t.same(await behind.closed, { code: 4000, reason: 'replaced' }, 'then it replaces the older session');
});

t.test('frames over 16 MiB close the session (1009); up to 16 MiB are decoded', async (t) => {
  const c = await start(t);
  const gw = await gateway(t, c);
  await gw.join('n1');
  const limit = 16 * 1024 * 1024;
  gw.sendRaw(Buffer.alloc(limit));
  t.equal((await gw.next('error', 10_000)).code, 'MALFORMED', 'exactly 16 MiB: decoded (and refused as garbage)');
  gw.sendRaw(Buffer.alloc(limit + 1));
  t.equal((await gw.closed).code, 1009, 'one byte more: closed as too big');
  t.equal((await request(c.url, 'GET', '/healthz')).status, 200);
});

t.test('two gateways claiming one node id: newest wins, each replacement counted and warned', async (t) => {
  const c = await start(t);
  await post(c.url);
  t.equal((await gatewayView(c, 'n1')).replaced_sessions, 0, 'none before any connection');
  const first = await gateway(t, c);
  await first.join('n1');
  t.equal((await gatewayView(c, 'n1')).replaced_sessions, 0);
  const second = await gateway(t, c);
  await second.join('n1');
  t.same(await first.closed, { code: 4000, reason: 'replaced' });
  t.equal((await gatewayView(c, 'n1')).replaced_sessions, 1);
  const third = await gateway(t, c);
  await third.join('n1');
  t.same(await second.closed, { code: 4000, reason: 'replaced' });
  const view = await gatewayView(c, 'n1');
  t.equal(view.replaced_sessions, 2);
  t.equal(view.connected, true);
  const warnings = c.logs.filter((l) => l.msg === 'gateway session replaced by a newer connection for this node id');
  t.equal(warnings.length, 2, 'each replacement logged');
  for (const w of warnings) {
    t.equal(w.level, 40, 'at warn');
    t.match(w, { node: 'n1', remote: /^127\.0\.0\.1:\d+$/, replacedRemote: /^127\.0\.0\.1:\d+$/ });
    t.not(w.remote, w.replacedRemote, 'both addresses');
  }
  const other = await gateway(t, c);
  await other.join('n2');
  t.equal((await gatewayView(c, 'n2')).replaced_sessions, 0, 'per node');
});
