// The vsock transport. This machine has /dev/vsock but no vsock loopback (nothing can connect to a
// local vsock port), so: VsockListener is bound and closed on a real vsock port; the accept path
// (native Acceptor -> stream-fd socket -> RpcServer.accept) is the very same FdListener code run
// over an AF_UNIX listener, with peers identified as a fixed test CID; and the stream layer is
// checked over a socketpair.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { RpcDispatcher } from '../../src/rpc/dispatch.js';
import { RpcServer } from '../../src/rpc/server.js';
import { DEFAULT_MAX_QUEUED_REPLY_BYTES, type RpcConnectionOptions } from '../../src/rpc/connection.js';
import type { Peer, RpcProgram } from '../../src/rpc/types.js';
import { createPortmapProgram } from '../../src/portmap/program.js';
import { createMountProgram } from '../../src/mount/program.js';
import type { MountService } from '../../src/fs/types.js';
import { socketsBridge, VMADDR_CID_ANY } from '../../src/native/sockets.js';
import { socketFromFd } from '../../src/transport/stream-fd.js';
import { FdListener, VsockListener, vsockPeer } from '../../src/transport/vsock.js';
import { Args, MOUNT_PROG, RpcClient } from '../helpers/nfs-client.js';
import { call, parseReply, record, u32 } from '../helpers/rpc-bytes.js';

const sb = socketsBridge();
const logger = pino({ level: 'silent' });
const TEST_CID = 42;
const PROG = 400300;
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-vsock-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
let nextSocket = 0;

interface Harness {
  listener: FdListener;
  path: string;
  accepted: { peer: Peer; options: RpcConnectionOptions; socket: Duplex }[];
  started: () => number;
}

/**
 * PORTMAP, MOUNT (EXPORT shows /demo to cid 42 only) and a test program whose procedure 3 answers
 * a reply of the asked size, behind an FdListener on an AF_UNIX socket whose peers are cid 42.
 */
function start(t: { teardown(fn: () => unknown): void }, options: Omit<RpcConnectionOptions, 'localPort'> = {}): Harness {
  const service: MountService = {
    exportsFor: (identity) => (identity === `cid:${TEST_CID}` ? ['demo'] : []),
    mount: async () => ({ status: 13 }),
  };
  let started = 0;
  const test: RpcProgram = {
    prog: PROG,
    lowVersion: 1,
    highVersion: 1,
    name: 'test',
    procedure: (_v, p) =>
      p === 3
        ? (c, reply) => {
            const size = c.args.uint32();
            started++;
            const slot = reply.opaqueInPlace(size);
            slot.buffer.fill(7, slot.offset, slot.offset + size);
            slot.finish(size);
          }
        : undefined,
    procedureName: (_v, p) => `P${p}`,
  };
  const dispatcher = new RpcDispatcher({ logger });
  dispatcher.register(createPortmapProgram());
  dispatcher.register(createMountProgram(service));
  dispatcher.register(test);
  const rpc = new RpcServer({ dispatcher, logger, connection: options });
  const accepted: Harness['accepted'] = [];
  const accept = rpc.accept.bind(rpc);
  rpc.accept = (socket, peer, opts) => {
    accepted.push({ peer, options: opts ?? {}, socket });
    return accept(socket, peer, opts);
  };
  let n = 0;
  const listener = new FdListener(rpc, logger, {}, () => ({ transport: 'vsock', cid: TEST_CID, port: 1000 + n++ }));
  const sockPath = path.join(dir, `listen-${nextSocket++}.sock`);
  const l = sb.unixListen(sockPath, 128);
  if (l.err) throw new Error(`unixListen ${l.err}`);
  listener.listenFd(l.fd, 2049);
  t.teardown(() => listener.close('test over'));
  return { listener, path: sockPath, accepted, started: () => started };
}

t.test('an RPC session through the FdListener: NULL, MOUNT EXPORT for the CID, PORTMAP GETPORT', async (t) => {
  const before = fdCount();
  const h = start(t);
  t.equal(h.listener.port, 2049);
  t.equal(h.listener.listening, true);
  const c = await RpcClient.connectPath(h.path);
  await c.call(MOUNT_PROG, 3, 0, Buffer.alloc(0)); // NULL
  t.same(await c.exports(), [{ dir: '/demo', groups: [`cid:${TEST_CID}`] }], 'the share granted to cid 42, and only it');
  const getport = await c.call(100000, 2, 3, new Args().u32(MOUNT_PROG).u32(3).u32(6).u32(0).bytes());
  t.equal(getport.u32(), 2049, "GETPORT answers the listener's port (localPort)");

  t.equal(h.accepted.length, 1);
  t.same(h.accepted[0]!.peer, { transport: 'vsock', cid: TEST_CID, port: 1000 }, 'the peer passed to accept()');
  t.equal(h.accepted[0]!.options.localPort, 2049);
  t.ok(h.accepted[0]!.socket instanceof net.Socket, 'a net.Socket, as for TCP');
  t.equal(h.listener.connectionCount, 1);
  const [connection] = [...h.listener.connections()];
  t.same(connection!.peer, { transport: 'vsock', cid: TEST_CID, port: 1000 });

  // A second client, then closeAll reaches both.
  const c2 = await RpcClient.connectPath(h.path);
  t.same(await c2.exports(), [{ dir: '/demo', groups: [`cid:${TEST_CID}`] }]);
  t.equal(h.listener.connectionCount, 2);
  h.listener.closeAll('test');
  t.equal(h.listener.connectionCount, 0);
  await t.rejects(c.call(MOUNT_PROG, 3, 0, Buffer.alloc(0)), { code: 'RPC_CLOSED' });
  c.close();
  c2.close();

  // close(): no more connections, and every descriptor is released.
  await h.listener.close();
  t.equal(h.listener.listening, false);
  await t.rejects(RpcClient.connectPath(h.path), { code: 'ECONNREFUSED' });
  await sleep(50);
  fs.unlinkSync(h.path);
  t.equal(fdCount(), before, 'listening, accepted and client fds all closed');
});

t.test('close() closes live connections and waits for their sockets', async (t) => {
  const h = start(t);
  const c = await RpcClient.connectPath(h.path);
  await c.exports();
  const socket = h.accepted[0]!.socket as net.Socket;
  t.equal(socket.closed, false);
  await h.listener.close('going away');
  t.equal(socket.closed, true, 'the server side socket is closed when close() resolves');
  t.equal(h.listener.connectionCount, 0);
  await t.rejects(c.call(MOUNT_PROG, 3, 0, Buffer.alloc(0)), { code: 'RPC_CLOSED' });
  c.close();
});

t.test('a peer that does not read: the server stops reading instead of buffering 64 MiB of replies', async (t) => {
  const h = start(t, { maxCallsInFlight: 8 });
  const client = net.connect({ path: h.path });
  await once(client, 'connect');
  t.teardown(() => client.destroy());
  client.pause();
  let received = 0;
  const n = 256;
  const size = 256 * 1024; // 64 MiB of replies in all
  const calls: Buffer[] = [];
  for (let i = 0; i < n; i++) calls.push(record(call({ xid: i, prog: PROG, vers: 1, proc: 3, args: u32(size) })));
  client.write(Buffer.concat(calls));
  await sleep(700);
  const server = h.accepted[0]!.socket;
  const startedWhilePaused = h.started();
  t.ok(startedWhilePaused < n / 2, `only ${startedWhilePaused} of ${n} calls dispatched while the peer does not read`);
  // the queue bound, plus at most the calls in flight when it was crossed
  const bound = DEFAULT_MAX_QUEUED_REPLY_BYTES + 8 * (size + 64);
  t.ok(server.writableLength <= bound, `the server holds ${server.writableLength} bytes of replies (bound ${bound}), not 64 MiB`);
  t.ok(server.isPaused(), 'the server paused reading the socket');

  // Then read everything: every reply arrives whole.
  let pending: Buffer = Buffer.alloc(0);
  const replies: Buffer[] = [];
  client.on('data', (chunk: Buffer) => {
    received += chunk.length;
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const len = pending.readUInt32BE(0) & 0x7fffffff;
      if (pending.length < 4 + len) break;
      replies.push(pending.subarray(4, 4 + len));
      pending = pending.subarray(4 + len);
    }
  });
  client.resume();
  const deadline = Date.now() + 30_000;
  while (replies.length < n && Date.now() < deadline) await sleep(20);
  t.equal(replies.length, n, `all ${n} replies (${received} bytes)`);
  const xids = new Set(replies.map((r) => parseReply(r).xid));
  t.equal(xids.size, n, 'each once');
  t.equal(replies[n - 1]!.length, 24 + 4 + size);
});

t.test('stream-fd over a socketpair: 16 MiB both ways, backpressure, half-close, destroy', async (t) => {
  const before = fdCount();
  const pair = sb.socketPair();
  t.equal(pair.err, 0);
  const a = socketFromFd(pair.fds[0]);
  const b = socketFromFd(pair.fds[1]);
  t.ok(a instanceof net.Socket);
  t.equal(a.remoteAddress, undefined, 'no address: the transport knows the peer');

  const size = 16 * 1024 * 1024;
  const toB = randomBytes(size);
  const toA = randomBytes(size);
  const collect = (s: net.Socket): Promise<{ hash: string; length: number }> =>
    new Promise((resolve, reject) => {
      const hash = createHash('sha256');
      let length = 0;
      s.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        length += chunk.length;
      });
      s.once('end', () => resolve({ hash: hash.digest('hex'), length }));
      s.once('error', reject);
    });
  const sha = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex');

  // Backpressure: b does not read yet, so a's writes queue in libuv and write() says so.
  b.pause();
  let okWrites = 0;
  let full = false;
  const chunk = 1024 * 1024;
  for (let at = 0; at < size; at += chunk) {
    if (a.write(toB.subarray(at, at + chunk))) okWrites++;
    else full = true;
  }
  t.ok(full, `write() reported a full buffer (${okWrites} of 16 chunks under the high-water mark)`);
  t.ok(a.writableLength > 0, `${a.writableLength} bytes waiting for the peer`);
  const drained = once(a, 'drain');
  const atB = collect(b);
  const atA = collect(a);
  b.resume();
  await drained;
  t.pass("'drain' once the peer reads");

  // Half-close: a ends its side; b still writes its 16 MiB back, then ends.
  a.end();
  const fromA = await atB;
  t.same(fromA, { hash: sha(toB), length: size }, '16 MiB a -> b, intact, then end');
  t.equal(b.writable, true, 'b can still write after the peer shut down its side');
  b.end(toA);
  const fromB = await atA;
  t.same(fromB, { hash: sha(toA), length: size }, '16 MiB b -> a after the half-close, then end');
  await Promise.all([a.closed ? undefined : once(a, 'close'), b.closed ? undefined : once(b, 'close')]);
  t.equal(fdCount(), before, 'both fds closed with the sockets');

  // destroy() on one end: the other sees end of stream and closes.
  const pair2 = sb.socketPair();
  const c = socketFromFd(pair2.fds[0]);
  const d = socketFromFd(pair2.fds[1]);
  d.on('data', () => undefined);
  const dEnded = once(d, 'end');
  c.destroy();
  await dEnded;
  d.end();
  await Promise.all([c.closed ? undefined : once(c, 'close'), d.closed ? undefined : once(d, 'close')]);
  t.equal(fdCount(), before);
});

t.test('stream-fd: a bad fd is a system error; an AF_VSOCK fd is adopted (and net.Socket({ fd }) would refuse it)', async (t) => {
  const pair = sb.socketPair();
  fs.closeSync(pair.fds[0]);
  fs.closeSync(pair.fds[1]);
  t.throws(() => socketFromFd(pair.fds[0]), { code: 'EBADF', syscall: 'uv_pipe_open' });

  const l = sb.vsockListen(VMADDR_CID_ANY, 0xffffffff, 1);
  t.equal(l.err, 0);
  t.throws(() => new net.Socket({ fd: l.fd }), { code: 'ERR_INVALID_FD_TYPE' }, "why stream-fd exists: Node's own fd path refuses vsock");
  const s = socketFromFd(l.fd);
  s.destroy();
  await once(s, 'close');
  const again = sb.vsockListen(VMADDR_CID_ANY, l.port, 1);
  t.equal(again.err, 0, "destroying the socket closed the vsock fd (its port is free)");
  fs.closeSync(again.fd);
});

t.test('a connection without a peer identity is refused; the listener goes on', async (t) => {
  const rpc = new RpcServer({ dispatcher: new RpcDispatcher({ logger }), logger });
  const listener = new FdListener(rpc, logger, {}, vsockPeer); // AF_UNIX peers have no CID: refused
  const sockPath = path.join(dir, 'refuse.sock');
  listener.listenFd(sb.unixListen(sockPath, 4).fd, 1);
  t.teardown(() => listener.close());
  for (let i = 0; i < 2; i++) {
    const c = net.connect({ path: sockPath });
    c.on('data', () => undefined);
    c.on('error', () => undefined);
    await once(c, 'close');
    t.pass(`connection ${i + 1} closed unserved`);
  }
  t.equal(listener.connectionCount, 0);
  t.equal(rpc.connectionCount, 0);
});

t.test('VsockListener: listen on a real vsock port, close releases it', async (t) => {
  const before = fdCount();
  const dispatcher = new RpcDispatcher({ logger });
  const port = 20000 + Math.floor(Math.random() * 40000);
  const first = new VsockListener(dispatcher, logger);
  t.equal(await first.listen(port), port);
  t.equal(first.port, port);
  t.equal(first.cid, VMADDR_CID_ANY);
  t.equal(first.connectionCount, 0);

  const second = new VsockListener(dispatcher, logger);
  await t.rejects(second.listen(port), { code: 'EADDRINUSE', syscall: 'bind' }, 'the port is taken');
  await t.rejects(first.listen(port + 1), /already listening/);

  await first.close();
  t.equal(first.listening, false);
  t.equal(await second.listen(port), port, 'listening again on the same port after close()');
  await second.close();
  await second.close();

  const any = new VsockListener(dispatcher, logger);
  const anyPort = await any.listen(0);
  t.ok(anyPort > 1023 && anyPort < 0xffffffff, `port 0 picks a free port (${anyPort})`);
  any.stopAccepting();
  t.equal(fdCount(), before, 'every vsock fd closed');
});
