import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { RpcDispatcher } from '../../src/rpc/dispatch.js';
import { RpcServer } from '../../src/rpc/server.js';
import type { RpcConnectionOptions } from '../../src/rpc/connection.js';
import { LARGE_BUFFER_SIZE, largeBuffers } from '../../src/rpc/buffers.js';
import { TcpListener } from '../../src/transport/tcp.js';
import type { ProcedureHandler, RpcProgram } from '../../src/rpc/types.js';
import { call, parseReply, record, u32 } from '../helpers/rpc-bytes.js';
import { RecordReader } from '../../src/rpc/record.js';

const PROG = 400200;

interface Harness {
  listener: TcpListener;
  rpc: RpcServer;
  port: number;
  logs: Record<string, unknown>[];
  stats: { running: number; maxRunning: number; started: number };
  release: () => void;
}

async function start(t: { teardown(fn: () => unknown): void }, options: Omit<RpcConnectionOptions, 'localPort'> = {}): Promise<Harness> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  const logger: Logger = pino({ level: 'warn' }, sink);
  const stats = { running: 0, maxRunning: 0, started: 0 };
  let gate: Promise<void> = Promise.resolve();
  let open: () => void = () => undefined;
  const closeGate = (): void => {
    gate = new Promise((r) => (open = r));
  };
  const handlers: Record<number, ProcedureHandler> = {
    0: () => undefined,
    // (delay ms, value) -> value, after the delay
    1: async (c, reply) => {
      const delay = c.args.uint32();
      const value = c.args.uint32();
      stats.started++;
      stats.running++;
      stats.maxRunning = Math.max(stats.maxRunning, stats.running);
      await sleep(delay);
      stats.running--;
      reply.uint32(value);
    },
    // waits on the gate
    2: async (c, reply) => {
      const value = c.args.uint32();
      stats.started++;
      stats.running++;
      stats.maxRunning = Math.max(stats.maxRunning, stats.running);
      await gate;
      stats.running--;
      reply.uint32(value);
    },
    // the sum of the argument bytes after a length word (a big call's payload, checked whole)
    4: (c, reply) => {
      const data = c.args.opaque(1 << 21);
      let sum = 0;
      for (let i = 0; i < data.length; i++) sum = (sum + data[i]! * ((i % 251) + 1)) >>> 0;
      reply.uint32(sum);
    },
    // a big reply of the asked size
    3: (c, reply) => {
      const size = c.args.uint32();
      stats.started++;
      const slot = reply.opaqueInPlace(size);
      slot.buffer.fill(1, slot.offset, slot.offset + size);
      slot.finish(size);
    },
  };
  const program: RpcProgram = {
    prog: PROG,
    lowVersion: 1,
    highVersion: 1,
    name: 'test',
    procedure: (_v, p) => handlers[p],
    procedureName: (_v, p) => `P${p}`,
  };
  const dispatcher = new RpcDispatcher({ logger });
  dispatcher.register(program);
  const rpc = new RpcServer({ dispatcher, logger, connection: options });
  const listener = new TcpListener(rpc, logger);
  const port = await listener.listen('127.0.0.1', 0);
  t.teardown(async () => {
    open();
    await listener.close('test over');
  });
  closeGate();
  return { listener, rpc, port, logs, stats, release: () => open() };
}

/** A test client: sends bytes, splits replies by hand (single-fragment records, as we send). */
class Client {
  readonly socket: net.Socket;
  readonly replies: Buffer[] = [];
  closed = false;
  private pending = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  constructor(port: number, opts: { allowHalfOpen?: boolean } = {}) {
    this.socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? false });
    this.socket.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 4) {
        const len = this.pending.readUInt32BE(0) & 0x7fffffff;
        if (this.pending.length < 4 + len) break;
        this.replies.push(this.pending.subarray(4, 4 + len));
        this.pending = this.pending.subarray(4 + len);
      }
      this.wake();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async ready(): Promise<void> {
    if (!this.socket.connecting) return;
    await once(this.socket, 'connect');
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async waitFor(count: number, timeoutMs = 5000): Promise<Buffer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count) {
      if (this.closed) throw new Error(`closed after ${this.replies.length} replies`);
      if (Date.now() > deadline) throw new Error(`timeout after ${this.replies.length} replies`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.replies;
  }

  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await sleep(10);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function slowCall(xid: number, delay: number, value: number): Buffer {
  return record(call({ xid, prog: PROG, vers: 1, proc: 1, args: u32(delay, value) }));
}

function replyValue(body: Buffer): { xid: number; value: number } {
  const r = parseReply(body);
  if (!r.accepted || r.stat !== 0) throw new Error(`unexpected reply ${JSON.stringify(r)}`);
  return { xid: r.xid, value: r.body.readUInt32BE(0) };
}

t.test('replies come back out of order: the fast call does not wait for the slow one', async (t) => {
  const h = await start(t);
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  c.send(Buffer.concat([slowCall(1, 300, 111), slowCall(2, 0, 222)]));
  const replies = await c.waitFor(2);
  t.same(replies.map(replyValue), [
    { xid: 2, value: 222 },
    { xid: 1, value: 111 },
  ]);
});

t.test('many calls in flight, every one answered once with its own result', async (t) => {
  const h = await start(t);
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  const n = 300;
  const calls: Buffer[] = [];
  for (let i = 0; i < n; i++) calls.push(slowCall(1000 + i, (i * 7) % 30, i * 3));
  // Send in odd-sized chunks so records straddle TCP writes.
  const all = Buffer.concat(calls);
  for (let at = 0; at < all.length; at += 1001) c.send(all.subarray(at, at + 1001));
  const replies = (await c.waitFor(n)).map(replyValue);
  t.equal(replies.length, n);
  const byXid = new Map(replies.map((r) => [r.xid, r.value]));
  t.equal(byXid.size, n, 'no duplicates');
  for (let i = 0; i < n; i++) if (byXid.get(1000 + i) !== i * 3) t.fail(`xid ${1000 + i}`);
  t.ok(h.stats.maxRunning > 1, `ran concurrently (max ${h.stats.maxRunning})`);
  t.ok(h.stats.maxRunning <= 64, 'within the default cap of 64');
});

t.test('the cap on calls in flight pauses reading until calls finish', async (t) => {
  const h = await start(t, { maxCallsInFlight: 4 });
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  const calls: Buffer[] = [];
  for (let i = 0; i < 40; i++) calls.push(record(call({ xid: i, prog: PROG, vers: 1, proc: 2, args: u32(i) })));
  c.send(Buffer.concat(calls));
  await sleep(200);
  t.equal(h.stats.running, 4, 'four calls running');
  t.equal(h.stats.started, 4, 'the rest wait');
  h.release();
  const replies = (await c.waitFor(40)).map(replyValue);
  t.same(
    replies.map((r) => r.xid).sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i),
  );
  t.equal(h.stats.maxRunning, 4);
});

t.test('a peer that does not read its replies stops being read (write backpressure)', async (t) => {
  const h = await start(t, { maxCallsInFlight: 8 });
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  await c.ready();
  c.socket.pause();
  const n = 200;
  const size = 256 * 1024; // 50 MiB of replies in all
  const calls: Buffer[] = [];
  for (let i = 0; i < n; i++) calls.push(record(call({ xid: i, prog: PROG, vers: 1, proc: 3, args: u32(size) })));
  c.send(Buffer.concat(calls));
  await sleep(500);
  const startedWhilePaused = h.stats.started;
  t.ok(startedWhilePaused < n, `only ${startedWhilePaused} of ${n} calls dispatched while the peer does not read`);
  c.socket.resume();
  const replies = await c.waitFor(n, 20_000);
  t.equal(replies.length, n);
  t.equal(replies[n - 1]!.length, 24 + 4 + size);
});

t.test('large replies go back to the buffer pool once the socket has taken them', async (t) => {
  const h = await start(t);
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  await c.ready();
  // earlier tests filled the free lists: empty both classes
  while (largeBuffers.freeCount > 0) {
    largeBuffers.take(LARGE_BUFFER_SIZE);
    largeBuffers.take(1);
  }
  const before = largeBuffers.freeCount;
  const size = 512 * 1024;
  const calls: Buffer[] = [];
  for (let i = 0; i < 4; i++) calls.push(record(call({ xid: i, prog: PROG, vers: 1, proc: 3, args: u32(size) })));
  c.send(Buffer.concat(calls));
  const replies = await c.waitFor(4, 20_000);
  t.ok(replies.every((r) => r.length === 24 + 4 + size && r[r.length - 1] === 1), 'whole replies, bytes intact');
  await sleep(50);
  t.ok(largeBuffers.freeCount > before, `free buffers ${before} -> ${largeBuffers.freeCount}`);
});

t.test('a peer that does not read stalls the calls once 8 MiB of replies wait; a lower bound stalls sooner', async (t) => {
  const started: number[] = [];
  for (const maxQueuedReplyBytes of [undefined, 1024 * 1024]) {
    const h = await start(t, maxQueuedReplyBytes === undefined ? {} : { maxQueuedReplyBytes });
    const c = new Client(h.port);
    t.teardown(() => c.destroy());
    await c.ready();
    c.socket.pause();
    const n = 400;
    const size = 256 * 1024; // 100 MiB of replies in all
    const calls: Buffer[] = [];
    for (let i = 0; i < n; i++) calls.push(record(call({ xid: i, prog: PROG, vers: 1, proc: 3, args: u32(size) })));
    c.send(Buffer.concat(calls));
    await sleep(500);
    started.push(h.stats.started);
    c.destroy();
  }
  // What is started while the peer does not read: the socket buffers (a few MiB on loopback) plus the bound.
  t.ok(started[0]! < 400 && started[0]! * 256 * 1024 < 64 * 1024 * 1024, `default bound: ${started[0]} calls started`);
  t.ok(started[1]! < started[0]!, `1 MiB bound: ${started[1]} calls started`);
});

t.test('an oversized record closes only that connection', async (t) => {
  const h = await start(t, { maxRecordSize: 4096 });
  const good = new Client(h.port);
  const bad = new Client(h.port);
  t.teardown(() => {
    good.destroy();
    bad.destroy();
  });
  good.send(slowCall(1, 0, 1));
  await good.waitFor(1);
  t.equal(h.listener.connectionCount, 2);
  bad.send(u32(0x80000000 + 4097)); // the header alone is enough
  t.ok(await bad.waitClosed(), 'offender closed');
  t.match(h.logs, [{ level: 40, code: 'RPC_RECORD_TOO_LARGE' }], 'logged at warn with the code');
  good.send(slowCall(2, 0, 2));
  const replies = await good.waitFor(2);
  t.same(replyValue(replies[1]!), { xid: 2, value: 2 }, 'the other connection is still served');
  t.equal(h.listener.connectionCount, 1);
  t.equal(h.rpc.connectionCount, 1);
});

t.test('idle connections are reaped; busy ones are not', async (t) => {
  const h = await start(t, { idleTimeoutMs: 150 });
  const idle = new Client(h.port);
  const busy = new Client(h.port);
  t.teardown(() => {
    idle.destroy();
    busy.destroy();
  });
  idle.send(slowCall(1, 0, 1));
  await idle.waitFor(1);
  busy.send(slowCall(2, 600, 2)); // in flight far longer than the idle timeout
  t.ok(await idle.waitClosed(1000), 'idle connection closed');
  const replies = await busy.waitFor(1);
  t.same(replyValue(replies[0]!), { xid: 2, value: 2 }, 'busy connection answered');
  t.ok(await busy.waitClosed(1000), 'and reaped once idle');
  t.equal(h.listener.connectionCount, 0);
});

t.test('garbage never crashes the server', async (t) => {
  const h = await start(t, { maxRecordSize: 64 * 1024 });
  let seed = 99;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  for (let round = 0; round < 20; round++) {
    const c = new Client(h.port);
    const junk = Buffer.alloc(2000 + (rand() % 5000));
    for (let i = 0; i < junk.length; i++) junk[i] = rand() & 0xff;
    if (round % 2 === 0) {
      // Well-framed records with garbage inside, and mutated real calls.
      const good = call({ xid: round, prog: PROG, vers: 1, proc: 1, args: u32(0, 1) });
      for (let i = 0; i < 3; i++) good[rand() % good.length] = rand() & 0xff;
      c.send(Buffer.concat([record(junk.subarray(0, rand() % 200)), record(good), record(junk)]));
    } else {
      c.send(junk);
    }
    await sleep(20);
    c.destroy();
  }
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  c.send(slowCall(5, 0, 5));
  t.same(replyValue((await c.waitFor(1))[0]!), { xid: 5, value: 5 }, 'still serving');
});

t.test('a peer that half-closes still gets its replies', async (t) => {
  const h = await start(t);
  const c = new Client(h.port, { allowHalfOpen: true });
  t.teardown(() => c.destroy());
  c.send(Buffer.concat([slowCall(1, 100, 1), slowCall(2, 50, 2)]));
  c.socket.end();
  const replies = await c.waitFor(2);
  t.same(replies.map(replyValue).map((r) => r.xid).sort(), [1, 2]);
  t.ok(await c.waitClosed(1000), 'server closed its side afterwards');
});

t.test('close(reason) from the server side and the close event', async (t) => {
  const h = await start(t);
  const c = new Client(h.port);
  t.teardown(() => c.destroy());
  c.send(slowCall(1, 0, 1));
  await c.waitFor(1);
  const [conn] = [...h.rpc.connections()];
  t.ok(conn);
  t.equal(conn!.peer.transport, 'tcp');
  t.equal(conn!.localPort, h.port);
  const reasons: string[] = [];
  conn!.on('close', (r) => reasons.push(r));
  conn!.close('revoked');
  conn!.close('again');
  t.same(reasons, ['revoked'], 'close is emitted once');
  t.equal(conn!.closeReason, 'revoked');
  t.ok(await c.waitClosed(1000));
  t.equal(h.rpc.connectionCount, 0);
});

t.test('a listener built on a dispatcher: its own limits, connections(), close() ends everything', async (t) => {
  const logger = pino({ level: 'silent' });
  const dispatcher = new RpcDispatcher({ logger });
  const listener = new TcpListener(dispatcher, logger, { maxRecordSize: 100 });
  const port = await listener.listen('127.0.0.1', 0);
  t.equal(listener.port, port);
  t.equal(listener.host, '127.0.0.1');
  const a = new Client(port);
  const b = new Client(port);
  t.teardown(() => {
    a.destroy();
    b.destroy();
  });
  await Promise.all([a.ready(), b.ready()]);
  a.send(record(call({ xid: 1, prog: PROG, vers: 1, proc: 0 })));
  const [reply] = await a.waitFor(1);
  t.match(parseReply(reply!), { xid: 1, accepted: true, stat: 1 }, 'PROG_UNAVAIL: nothing registered');
  b.send(u32(0x80000000 + 101));
  t.ok(await b.waitClosed(), 'the listener limit applies');
  t.same([...listener.connections()].map((c) => c.peer.transport), ['tcp']);
  await listener.close('shutdown');
  t.ok(await a.waitClosed(), 'close() closes live connections');
  t.equal(listener.connectionCount, 0);
  await t.rejects(
    new Promise((resolve, reject) => net.connect({ port, host: '127.0.0.1' }).on('connect', resolve).on('error', reject)),
    { code: 'ECONNREFUSED' },
    'no longer accepting',
  );
  await listener.close(); // idempotent
});

t.test('listen() rejects when the port is taken', async (t) => {
  const logger = pino({ level: 'silent' });
  const first = new TcpListener(new RpcDispatcher({ logger }), logger);
  const port = await first.listen('127.0.0.1', 0);
  t.teardown(() => first.close());
  const second = new TcpListener(new RpcDispatcher({ logger }), logger);
  await t.rejects(second.listen('127.0.0.1', port), { code: 'EADDRINUSE' });
});

t.test('drain: calls already received are answered, no new ones are read, then the connection closes', async (t) => {
  const h = await start(t);
  const c = new Client(h.port);
  t.teardown(() => c.socket.destroy());
  await c.ready();
  c.send(record(call({ xid: 1, prog: PROG, vers: 1, proc: 2, args: u32(11) })));
  c.send(record(call({ xid: 2, prog: PROG, vers: 1, proc: 2, args: u32(22) })));
  while (h.stats.running < 2) await sleep(5);
  const [connection] = [...h.rpc.connections()];
  const drained = connection!.drain();
  await sleep(50);
  c.send(record(call({ xid: 3, prog: PROG, vers: 1, proc: 1, args: u32(0, 33) })));
  await sleep(100);
  t.equal(h.stats.started, 2, 'a call sent after the drain began is not started');
  t.equal(connection!.closed, false, 'still open while calls run');
  h.release();
  await drained;
  const replies = await c.waitFor(2).catch(() => c.replies);
  t.same(replies.map((r) => parseReply(r).xid).sort(), [1, 2], 'both calls in flight were answered');
  t.equal(connection!.closeReason, 'drained');
});

t.test('large calls are read straight into their records, small ones around them intact (TCP reads through onread)', async (t) => {
  const h = await start(t, { maxRecordSize: 2 << 20 });
  const weigh = (data: Buffer): number => {
    let sum = 0;
    for (let i = 0; i < data.length; i++) sum = (sum + data[i]! * ((i % 251) + 1)) >>> 0;
    return sum;
  };
  const direct = { calls: 0, bytes: 0 };
  const original = RecordReader.prototype.filledDirect;
  RecordReader.prototype.filledDirect = function (this: RecordReader, bytes: number) {
    direct.calls++;
    direct.bytes += bytes;
    return original.call(this, bytes);
  };
  t.teardown(() => void (RecordReader.prototype.filledDirect = original));
  const client = new Client(h.port);
  await client.ready();
  const expected: number[] = [];
  const payloads = [1 << 20, 300_000, 70_000, 5, 1 << 20].map((size, i) => {
    const data = Buffer.alloc(size);
    for (let j = 0; j < size; j++) data[j] = (j * 31 + i) & 0xff;
    return data;
  });
  for (const [i, data] of payloads.entries()) {
    expected.push(weigh(data));
    const pad = (4 - (data.length % 4)) % 4;
    // a small call between the big ones, in the same write
    client.send(Buffer.concat([
      record(call({ xid: 100 + i, prog: PROG, vers: 1, proc: 4, args: Buffer.concat([u32(data.length), data, Buffer.alloc(pad)]) })),
      slowCall(200 + i, 0, i),
    ]));
  }
  const replies = await client.waitFor(payloads.length * 2, 20_000);
  const byXid = new Map(replies.map((r) => { const v = replyValue(r); return [v.xid, v.value]; }));
  for (const [i] of payloads.entries()) {
    t.equal(byXid.get(100 + i), expected[i], `big call ${i}: its payload arrived whole`);
    t.equal(byXid.get(200 + i), i, `small call ${i} after it`);
  }
  t.ok(direct.calls > 0 && direct.bytes > 1 << 20, `read straight into records: ${direct.bytes} bytes in ${direct.calls} reads`);
  client.destroy();
});
