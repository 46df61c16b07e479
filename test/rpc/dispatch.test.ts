import t from 'tap';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { RpcDispatcher, type CallInfo } from '../../src/rpc/dispatch.js';
import {
  AcceptStat,
  AuthStat,
  type ConnectionInfo,
  type Peer,
  type ProcedureHandler,
  type RpcCall,
  type RpcProgram,
} from '../../src/rpc/types.js';
import { authSys, call, parseReply, u32, unmark } from '../helpers/rpc-bytes.js';

const peer: Peer = { transport: 'tcp', address: '127.0.0.1', port: 999 };
const connection: ConnectionInfo = { id: 1, peer, localPort: 2049, close: () => undefined };
const PROG = 400100;

/** Version 1..3 of a test program; procedures by number. */
function testProgram(handlers: Record<number, ProcedureHandler>): RpcProgram {
  return {
    prog: PROG,
    lowVersion: 1,
    highVersion: 3,
    name: 'test',
    procedure: (_vers, proc) => handlers[proc],
    procedureName: (_vers, proc) => (handlers[proc] ? `P${proc}` : undefined),
  };
}

let seenCall: RpcCall | undefined;
const handlers: Record<number, ProcedureHandler> = {
  // echo: reads one uint32, writes it back plus one
  1: (c, reply) => {
    seenCall = c;
    reply.uint32(c.args.uint32() + 1);
  },
  // reads past the end of the arguments
  2: (c) => {
    c.args.uint32();
    c.args.uint64();
  },
  // a bug
  3: () => {
    throw new TypeError('boom');
  },
  // async, writes a lot, then decides the caller is not allowed
  4: async (_c, reply) => {
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 1000; i++) reply.uint32(i);
    return { auth: AuthStat.AUTH_TOOWEAK };
  },
  // writes some results, then returns a failure: the results must not leak into the reply
  5: (_c, reply) => {
    reply.uint32(0xdead);
    return { accept: AcceptStat.GARBAGE_ARGS };
  },
  6: () => ({ accept: AcceptStat.PROC_UNAVAIL }),
  // big reply grown through ensure
  7: (_c, reply) => {
    const slot = reply.opaqueInPlace(100_000);
    slot.buffer.fill(0x5a, slot.offset, slot.offset + 99_999);
    slot.finish(99_999);
  },
  8: async () => {
    throw new Error('async boom');
  },
};

function setup(): { d: RpcDispatcher; calls: CallInfo[]; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  const calls: CallInfo[] = [];
  const d = new RpcDispatcher({ logger: pino({ level: 'error' }, sink), onCall: (i) => calls.push(i) });
  d.register(testProgram(handlers));
  return { d, calls, logs };
}

async function ask(d: RpcDispatcher, msg: Buffer) {
  const reply = await d.dispatch(msg, peer, connection);
  if (reply === null) throw new Error('no reply');
  return parseReply(unmark(reply));
}

t.test('SUCCESS: handler sees the call, writes results after the header', async (t) => {
  const { d, calls } = setup();
  const cred = authSys({ machine: 'm', uid: 5, gid: 6, gids: [7] });
  const r = await ask(d, call({ xid: 77, prog: PROG, vers: 2, proc: 1, cred, args: u32(41) }));
  t.match(r, { xid: 77, accepted: true, verfFlavor: 0, verfLength: 0, stat: AcceptStat.SUCCESS });
  if (r.accepted) t.same(r.body, u32(42));
  t.match(seenCall, { xid: 77, prog: PROG, vers: 2, proc: 1, authSys: { uid: 5, gid: 6, gids: [7] }, peer, connection });
  t.match(calls, [{ program: 'test', procedure: 'P1', outcome: 'ok' }]);
  t.type(calls[0]!.durationMs, 'number');
});

t.test('PROG_UNAVAIL', async (t) => {
  const { d, calls } = setup();
  const r = await ask(d, call({ xid: 1, prog: 400999, vers: 1, proc: 0 }));
  t.match(r, { xid: 1, accepted: true, stat: AcceptStat.PROG_UNAVAIL });
  if (r.accepted) t.equal(r.body.length, 0);
  t.match(calls, [{ program: 'unknown', procedure: 'unknown', outcome: 'unavailable' }], 'peer numbers never become labels');
});

t.test('PROG_MISMATCH with the supported range', async (t) => {
  const { d } = setup();
  for (const vers of [0, 4, 0xffffffff]) {
    const r = await ask(d, call({ xid: 2, prog: PROG, vers, proc: 1 }));
    t.match(r, { xid: 2, accepted: true, stat: AcceptStat.PROG_MISMATCH });
    if (r.accepted) t.same(r.body, u32(1, 3), `vers ${vers}`);
  }
});

t.test('PROC_UNAVAIL, from the program and from a handler', async (t) => {
  const { d, calls } = setup();
  t.match(await ask(d, call({ xid: 3, prog: PROG, vers: 1, proc: 99 })), { accepted: true, stat: AcceptStat.PROC_UNAVAIL });
  t.match(await ask(d, call({ xid: 3, prog: PROG, vers: 1, proc: 6 })), { accepted: true, stat: AcceptStat.PROC_UNAVAIL });
  t.match(calls, [{ outcome: 'unavailable' }, { procedure: 'P6', outcome: 'unavailable' }]);
});

t.test('GARBAGE_ARGS when a handler reads past the end', async (t) => {
  const { d, calls, logs } = setup();
  const r = await ask(d, call({ xid: 4, prog: PROG, vers: 1, proc: 2, args: u32(1) }));
  t.match(r, { xid: 4, accepted: true, stat: AcceptStat.GARBAGE_ARGS });
  if (r.accepted) t.equal(r.body.length, 0);
  t.match(calls, [{ outcome: 'garbage' }]);
  t.equal(logs.length, 0, 'bad arguments are not logged at error');
});

t.test('GARBAGE_ARGS returned after writing results: the results are dropped', async (t) => {
  const { d } = setup();
  const r = await ask(d, call({ xid: 5, prog: PROG, vers: 1, proc: 5 }));
  t.match(r, { xid: 5, accepted: true, stat: AcceptStat.GARBAGE_ARGS });
  if (r.accepted) t.equal(r.body.length, 0);
});

t.test('SYSTEM_ERR from a throwing handler, logged once with program and procedure', async (t) => {
  const { d, calls, logs } = setup();
  t.match(await ask(d, call({ xid: 6, prog: PROG, vers: 1, proc: 3 })), { xid: 6, accepted: true, stat: AcceptStat.SYSTEM_ERR });
  t.match(await ask(d, call({ xid: 7, prog: PROG, vers: 1, proc: 8 })), { xid: 7, accepted: true, stat: AcceptStat.SYSTEM_ERR });
  t.equal(logs.length, 2);
  t.match(logs[0], { level: 50, program: 'test', procedure: 'P3', xid: 6, err: { message: 'boom' } });
  t.match(logs[1], { level: 50, procedure: 'P8', err: { message: 'async boom' } });
  t.match(calls, [{ outcome: 'error' }, { outcome: 'error' }]);
});

t.test('auth failure from a handler rewrites the reply as MSG_DENIED', async (t) => {
  const { d, calls } = setup();
  const r = await ask(d, call({ xid: 8, prog: PROG, vers: 1, proc: 4 }));
  t.same(r, { xid: 8, accepted: false, rejectStat: 1, words: [AuthStat.AUTH_TOOWEAK] });
  t.match(calls, [{ outcome: 'denied' }]);
});

t.test('auth failure from the header: bad credential', async (t) => {
  const { d, calls } = setup();
  const cred = u32(1, 12, 0, 0, 0); // AUTH_SYS body too short
  const r = await ask(d, call({ xid: 9, prog: PROG, vers: 1, proc: 1, cred }));
  t.same(r, { xid: 9, accepted: false, rejectStat: 1, words: [AuthStat.AUTH_BADCRED] });
  t.match(calls, [{ program: 'test', procedure: 'P1', outcome: 'denied' }]);
  t.same(
    await ask(d, call({ xid: 10, prog: PROG, vers: 1, proc: 1, cred: u32(6, 0) })),
    { xid: 10, accepted: false, rejectStat: 1, words: [AuthStat.AUTH_BADCRED] },
    'RPCSEC_GSS',
  );
});

t.test('RPC_MISMATCH', async (t) => {
  const { d } = setup();
  t.same(await ask(d, call({ xid: 11, prog: PROG, vers: 1, proc: 1, rpcvers: 3 })), {
    xid: 11,
    accepted: false,
    rejectStat: 0,
    words: [2, 2],
  });
});

t.test('big replies grow the writer; the record mark covers them', async (t) => {
  const { d } = setup();
  const reply = await d.dispatch(call({ xid: 12, prog: PROG, vers: 1, proc: 7 }), peer, connection);
  t.ok(reply);
  const r = parseReply(unmark(reply!));
  t.match(r, { accepted: true, stat: 0 });
  if (r.accepted) {
    t.equal(r.body.readUInt32BE(0), 99_999);
    t.equal(r.body.length, 4 + 100_000);
    t.equal(r.body[4 + 99_998], 0x5a);
    t.equal(r.body[4 + 99_999], 0, 'padding');
  }
});

t.test('records that are not calls get no answer', async (t) => {
  const { d, calls } = setup();
  t.equal(await d.dispatch(u32(1, 1, 0, 0, 0, 0), peer, connection), null, 'a REPLY');
  t.equal(await d.dispatch(u32(1, 0), peer, connection), null, 'too short');
  t.equal(await d.dispatch(Buffer.alloc(0), peer, connection), null, 'empty');
  t.equal(calls.length, 0);
});

t.test('register refuses duplicates', async (t) => {
  const { d } = setup();
  t.throws(() => d.register(testProgram({})));
  t.ok(d.program(PROG));
});

t.test('a throwing observer does not break dispatch', async (t) => {
  const d = new RpcDispatcher({
    logger: pino({ level: 'silent' }),
    onCall: () => {
      throw new Error('metrics bug');
    },
  });
  d.register(testProgram(handlers));
  t.match(await ask(d, call({ xid: 13, prog: PROG, vers: 1, proc: 1, args: u32(1) })), { stat: 0 });
});
