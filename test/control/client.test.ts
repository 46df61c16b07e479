// The gateway's controller client against a scripted fake controller: the exact frames, failover,
// backoff, dead peers, credentials and CA pinning.
import t from 'tap';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket } from 'ws';
import { pino } from 'pino';
import { ControllerClient, type ControllerClientOptions } from '../../src/control/client.js';
import { GrantApplier } from '../../src/control/applier.js';
import { GrantStore } from '../../src/grants/store.js';
import { GrantTable } from '../../src/grants/table.js';
import type { GrantSpec } from '../../src/grants/document.js';
import {
  decodeGatewayMessage,
  encodeControllerMessage,
  wireTypes,
  type ControllerMessage,
  type GatewayMessage,
} from '../../src/control/protocol.js';
import { makeCa, makeCert } from '../helpers/tls.js';

const spec = (id: string, over: Partial<GrantSpec> = {}): GrantSpec => ({
  id, share: `s-${id}`, backend: 'b', path: `p/${id}`, guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, ...over,
});

/** One gateway connection as the fake controller sees it. */
class Peer {
  readonly messages: GatewayMessage[] = [];
  private waiters: Array<() => void> = [];
  constructor(readonly ws: WebSocket, readonly headers: Record<string, string | string[] | undefined>) {
    ws.on('message', (data: Buffer) => {
      const decoded = decodeGatewayMessage(data);
      if (decoded.ok) this.messages.push(decoded.message);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }
  send(message: ControllerMessage | Buffer | string): void {
    this.ws.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : encodeControllerMessage(message));
  }
  /** The next message of `kind` not seen before (consumed). */
  async next<K extends GatewayMessage['kind']>(kind: K, timeoutMs = 5000): Promise<Extract<GatewayMessage, { kind: K }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.messages.findIndex((m) => m.kind === kind);
      if (at >= 0) return this.messages.splice(at, 1)[0] as Extract<GatewayMessage, { kind: K }>;
      if (Date.now() > deadline) throw new Error(`no ${kind} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
  /** Welcome then Snapshot, as a controller does. */
  async greet(epoch: string, revision: number, grants: GrantSpec[], heartbeatIntervalMs = 2000): Promise<void> {
    await this.next('hello');
    this.send({ kind: 'welcome', epoch, revision, heartbeatIntervalMs });
    this.send({ kind: 'snapshot', epoch, revision, grants });
  }
}

class FakeController {
  readonly peers: Peer[] = [];
  readonly wss: WebSocketServer;
  private arrivals: Array<() => void> = [];
  constructor(readonly port: number, wss: WebSocketServer, readonly scheme = 'ws') {
    this.wss = wss;
    wss.on('connection', (ws, request) => {
      this.peers.push(new Peer(ws, request.headers));
      for (const wake of this.arrivals.splice(0)) wake();
    });
  }
  static async start(t: { teardown(fn: () => unknown): void }, options: { token?: string; tls?: { cert: string; key: string; ca: string } } = {}): Promise<FakeController> {
    const verifyClient = options.token
      ? (info: { req: { headers: Record<string, string | string[] | undefined> } }) => info.req.headers.authorization === `Bearer ${options.token}`
      : undefined;
    let controller: FakeController;
    if (options.tls) {
      const server = createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca, requestCert: true, rejectUnauthorized: true });
      const wss = new WebSocketServer({ server, ...(verifyClient ? { verifyClient } : {}) });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      controller = new FakeController((server.address() as AddressInfo).port, wss, 'wss');
      t.teardown(() => new Promise((resolve) => { for (const c of wss.clients) c.terminate(); wss.close(); server.close(resolve); }));
    } else {
      const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...(verifyClient ? { verifyClient } : {}) });
      await once(wss, 'listening');
      controller = new FakeController((wss.address() as AddressInfo).port, wss);
      t.teardown(() => new Promise((resolve) => { for (const c of wss.clients) c.terminate(); wss.close(resolve); }));
    }
    return controller;
  }
  get url(): string {
    return `${this.scheme}://127.0.0.1:${this.port}/v1/gateway`;
  }
  async peer(index: number, timeoutMs = 10_000): Promise<Peer> {
    const deadline = Date.now() + timeoutMs;
    while (this.peers.length <= index) {
      if (Date.now() > deadline) throw new Error(`no connection #${index + 1} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.arrivals.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.peers[index]!;
  }
}

function gateway(t: { teardown(fn: () => unknown): void }, urls: string[], extra: Partial<ControllerClientOptions> = {}) {
  // Not t.testdir(): that empties the test's directory, where the test keeps its own files.
  const dir = mkdtempSync(path.join(tmpdir(), 'mgw-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const grants = new GrantTable();
  const applier = new GrantApplier({
    grants,
    staticGrants: [],
    store: new GrantStore(dir),
    hasBackend: (id) => id === 'b',
    openShare: async () => undefined,
    logger: pino({ level: 'silent' }),
  });
  const client = new ControllerClient({
    nodeId: 'node-1',
    urls,
    applier,
    softwareVersion: '9.9.9',
    capabilities: ['tcp'],
    status: () => ({ connections: 3, backends: [{ id: 'b', type: 'local', state: 'READY', reason: '' }], shares: [] }),
    logger: pino({ level: 'silent' }),
    backoffInitialMs: 50,
    backoffMaxMs: 400,
    ...extra,
  });
  t.teardown(() => client.stop());
  return { dir, grants, applier, client };
}

t.test('hello, snapshot, deltas and acks', async (t) => {
  const fake = await FakeController.start(t);
  const { grants, applier, client } = gateway(t, [fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  const peer = await fake.peer(0);
  t.match(await peer.next('hello'), { protocolVersion: 1, nodeId: 'node-1', softwareVersion: '9.9.9', capabilities: ['tcp'], epoch: '', lastAppliedRevision: 0 });
  peer.send({ kind: 'welcome', epoch: 'E', revision: 2, heartbeatIntervalMs: 2000 });
  peer.send({ kind: 'snapshot', epoch: 'E', revision: 2, grants: [spec('a'), spec('x', { backend: 'other' })] });
  const ack = await peer.next('ack');
  t.same(ack, { kind: 'ack', epoch: 'E', revision: 2, results: [
    { grantId: 'a', state: 'APPLIED', reasonCode: '', reason: '' },
    { grantId: 'x', state: 'FAILED', reasonCode: 'UNKNOWN_BACKEND', reason: 'this node has no backend other' },
  ] });
  t.match(await peer.next('status'), { epoch: 'E', appliedRevision: 2, connections: 3, backends: [{ id: 'b', state: 'READY' }] });
  t.equal(client.state, 'connected');
  peer.send({ kind: 'upsert', revision: 3, grant: spec('b', { access: 'ro' }) });
  t.match(await peer.next('ack'), { revision: 3, results: [{ grantId: 'b', state: 'APPLIED' }] });
  t.equal(grants.get('b')?.access, 'ro');
  peer.send({ kind: 'revoke', revision: 4, grantId: 'a' });
  t.match(await peer.next('ack'), { revision: 4, results: [{ grantId: 'a', state: 'REVOKED' }] });
  t.equal(grants.get('a'), undefined, 'revoked');
});

t.test('bad frames are refused whole, answered, and the session goes on', async (t) => {
  const fake = await FakeController.start(t);
  const { grants, applier, client } = gateway(t, [fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  const peer = await fake.peer(0);
  await peer.greet('E', 1, [spec('a')]);
  await peer.next('ack');
  const raw = wireTypes.ControllerMessage;
  const bad: Array<[string, Buffer | string]> = [
    ['random bytes', Buffer.from([0x0a, 0xff, 0xff, 0x01])],
    ['a text frame', 'hello'],
    ['no body', Buffer.alloc(0)],
    ['an unknown message number', Buffer.from([0xf8, 0x01, 0x01])],
    ['a snapshot with a .. path', encodeControllerMessage({ kind: 'snapshot', epoch: 'E', revision: 9, grants: [spec('b'), spec('c', { path: 'x/../../etc' })] })],
    ['a snapshot with a duplicate id', encodeControllerMessage({ kind: 'snapshot', epoch: 'E', revision: 9, grants: [spec('b'), spec('b', { share: 'z' })] })],
    ['a grant without a guest', Buffer.from(raw.encode(raw.fromObject({ upsert: { revision: 2, grant: { id: 'q', share: 'q', backend: 'b', path: 'q' } } })).finish())],
    ['an unknown access value', Buffer.from(raw.encode(raw.fromObject({ upsert: { revision: 2, grant: { ...spec('q'), guest: { cid: 9 }, access: 9 } } })).finish())],
    ['a revision beyond 2^53', Buffer.from(raw.encode(raw.fromObject({ revoke: { revision: '18446744073709551615', grant_id: 'a' } })).finish())],
    ['100,001 grants (counted before decoding)', manyEmptyGrants(100_001)],
  ];
  for (const [what, frame] of bad) {
    peer.send(frame);
    const error = await peer.next('error');
    t.equal(error.code, 'MALFORMED', `${what}: ${error.message}`);
  }
  peer.send({ kind: 'upsert', revision: 5, grant: spec('b') });
  t.match(await peer.next('error'), { code: 'REVISION_OUT_OF_ORDER', revision: 5 }, 'a gap is refused');
  peer.send({ kind: 'snapshot', epoch: 'other', revision: 5, grants: [] });
  t.match(await peer.next('error'), { code: 'MALFORMED' }, 'a snapshot of another epoch than the session');
  t.same(grants.all().map((g) => g.id), ['a'], 'nothing was applied');
  t.equal(applier.revision, 1);
  peer.send({ kind: 'upsert', revision: 2, grant: spec('b') });
  t.match(await peer.next('ack'), { revision: 2 }, 'the session still works');
  t.equal(fake.peers.length, 1, 'never reconnected');
});

/** A Snapshot frame holding `n` empty Grant entries, built byte by byte (field 2 { field 3 {} x n }). */
function manyEmptyGrants(n: number): Buffer {
  const body = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) body[i * 2] = 0x1a; // field 3, length-delimited, length 0
  const length: number[] = [];
  for (let v = body.length; ; v >>>= 7) {
    if (v < 0x80) {
      length.push(v);
      break;
    }
    length.push((v & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from([0x12, ...length]), body]);
}

t.test('a controller that closes with "replaced" (another gateway has this node id) is backed off from', async (t) => {
  const fake = await FakeController.start(t);
  let sessions = 0;
  fake.wss.on('connection', (ws) => {
    sessions++;
    ws.once('message', () => {
      ws.send(encodeControllerMessage({ kind: 'welcome', epoch: 'E', revision: 0, heartbeatIntervalMs: 2000 }));
      setTimeout(() => ws.close(4000, 'replaced'), 10);
    });
  });
  const { applier, client } = gateway(t, [fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  // Backoff 50 ms doubling to 400 ms: about 7 sessions in 2 s. Resetting it after each welcome
  // would make 30 or more.
  t.ok(sessions >= 2 && sessions <= 12, `${sessions} sessions in 2 s`);
});

t.test('messages before Welcome are refused', async (t) => {
  const fake = await FakeController.start(t);
  const { applier, client } = gateway(t, [fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  const peer = await fake.peer(0);
  await peer.next('hello');
  peer.send({ kind: 'snapshot', epoch: 'E', revision: 1, grants: [spec('a')] });
  t.match(await peer.next('error'), { code: 'UNEXPECTED_MESSAGE' });
  t.equal(applier.revision, 0);
});

t.test('a silent controller is dropped within 3 heartbeat intervals and reconnected', async (t) => {
  const fake = await FakeController.start(t);
  const { applier, client } = gateway(t, [fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  const first = await fake.peer(0);
  await first.greet('E', 1, [spec('a')], 250);
  await first.next('ack');
  // The fake never sends heartbeats: the gateway must give up on it after ~750 ms.
  const started = Date.now();
  await once(first.ws, 'close');
  const silentFor = Date.now() - started;
  t.ok(silentFor < 3000, `closed after ${silentFor} ms`);
  const second = await fake.peer(1);
  t.match(await second.next('hello'), { epoch: 'E', lastAppliedRevision: 1 }, 'reconnects and says what it holds');
});

t.test('fails over to the next url, with backoff between attempts', async (t) => {
  const fake = await FakeController.start(t);
  const dead = await FakeController.start(t);
  const deadUrl = dead.url;
  await new Promise<void>((resolve) => dead.wss.close(() => resolve()));
  const { applier, client } = gateway(t, [deadUrl.replace(/:\d+\//, ':1/'), fake.url]);
  await applier.start({ loadStore: true });
  client.start();
  const peer = await fake.peer(0);
  await peer.greet('E', 1, []);
  await peer.next('ack');
  t.equal(client.url, fake.url);
  // The controller goes away: the client keeps trying both URLs, spaced by backoff.
  let attempts = 0;
  fake.wss.on('connection', (ws) => { attempts++; ws.terminate(); });
  peer.ws.terminate();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.ok(attempts >= 1 && attempts <= 8, `${attempts} attempts on the live URL in 1.5 s (backoff 50 ms doubling to 400 ms, over two URLs)`);
});

t.test('bearer token from a file, read again on every attempt', async (t) => {
  const fake = await FakeController.start(t, { token: 'second' });
  const dir = t.testdir({ token: 'first\n' });
  const tokenFile = path.join(dir, 'token');
  const { applier, client } = gateway(t, [fake.url], { tokenFile });
  await applier.start({ loadStore: true });
  client.start();
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.equal(fake.peers.length, 0, 'the wrong token is refused');
  writeFileSync(tokenFile, 'second\n');
  const peer = await fake.peer(0);
  t.equal(peer.headers.authorization, 'Bearer second', 'the rotated token is sent without a restart');
});

t.test('wss: the configured CA is the only one trusted; client certificate presented', async (t) => {
  const dir = t.testdir();
  const ca = makeCa(dir, 'ca');
  const otherCa = makeCa(dir, 'other-ca');
  const server = makeCert(dir, ca, 'server', '127.0.0.1', 'server');
  const client = makeCert(dir, ca, 'client', 'node-1', 'client');
  const fake = await FakeController.start(t, { tls: { cert: server.cert, key: server.key, ca: ca.cert } });

  const pinned = gateway(t, [fake.url], { caFile: otherCa.certFile, certFile: client.certFile, keyFile: client.keyFile });
  await pinned.applier.start({ loadStore: true });
  pinned.client.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(fake.peers.length, 0, 'a controller certificate from another CA is refused');
  await pinned.client.stop();

  const noCert = gateway(t, [fake.url], { caFile: ca.certFile });
  await noCert.applier.start({ loadStore: true });
  noCert.client.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(fake.peers.length, 0, 'without a client certificate the controller refuses the gateway');
  await noCert.client.stop();

  const good = gateway(t, [fake.url], { caFile: ca.certFile, certFile: client.certFile, keyFile: client.keyFile });
  await good.applier.start({ loadStore: true });
  good.client.start();
  const peer = await fake.peer(0);
  t.match(await peer.next('hello'), { nodeId: 'node-1' });
  const socket = (peer.ws as unknown as { _socket: { getPeerCertificate(): { subject: { CN: string } } } })._socket;
  t.equal(socket.getPeerCertificate().subject.CN, 'node-1', 'the client certificate reached the controller');
});

t.test('stopped while a connection attempt reads its credentials: no crash, nothing left open', async (t) => {
  const fake = await FakeController.start(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'mgw-client-stop-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'tok\n');
  for (let i = 0; i < 20; i++) {
    const { applier, client } = gateway(t, [fake.url], { tokenFile });
    await applier.start({ loadStore: true });
    client.start(); // the attempt now awaits the token file
    await client.stop();
  }
  await new Promise((r) => setTimeout(r, 200)); // an unhandled 'error' would have thrown by now
  t.pass('20 stops during connect, the process is still here');
});
