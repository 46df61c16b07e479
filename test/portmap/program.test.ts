import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { pino } from 'pino';
import { RpcDispatcher } from '../../src/rpc/dispatch.js';
import { RpcServer } from '../../src/rpc/server.js';
import { TcpListener } from '../../src/transport/tcp.js';
import { PortmapProgram, createPortmapProgram } from '../../src/portmap/program.js';
import { AcceptStat, type ConnectionInfo, type Peer } from '../../src/rpc/types.js';
import { call, parseReply, record, u32, unmark } from '../helpers/rpc-bytes.js';

const logger = pino({ level: 'silent' });
const peer: Peer = { transport: 'vsock', cid: 3, port: 1023 };
const connection: ConnectionInfo = { id: 1, peer, localPort: 2049, close: () => undefined };

function dispatcher(program = createPortmapProgram()): RpcDispatcher {
  const d = new RpcDispatcher({ logger });
  d.register(program);
  return d;
}

async function ask(d: RpcDispatcher, proc: number, args: Buffer = Buffer.alloc(0), vers = 2, conn: ConnectionInfo = connection) {
  const reply = await d.dispatch(call({ xid: 100 + proc, prog: 100000, vers, proc, args }), peer, conn);
  return parseReply(unmark(reply!));
}

function body(r: ReturnType<typeof parseReply>): Buffer {
  if (!r.accepted) throw new Error('denied');
  return r.body;
}

t.test('NULL', async (t) => {
  const r = await ask(dispatcher(), 0);
  t.match(r, { xid: 100, accepted: true, stat: AcceptStat.SUCCESS });
  t.equal(body(r).length, 0);
});

t.test('GETPORT answers the serving port for what we serve over TCP, 0 otherwise', async (t) => {
  const d = dispatcher();
  const getport = async (prog: number, vers: number, prot: number) => body(await ask(d, 3, u32(prog, vers, prot, 0))).readUInt32BE(0);
  t.equal(await getport(100003, 3, 6), 2049, 'NFS v3 tcp');
  t.equal(await getport(100005, 3, 6), 2049, 'MOUNT v3 tcp');
  t.equal(await getport(100000, 2, 6), 2049, 'PORTMAP v2 tcp');
  t.equal(await getport(100003, 3, 17), 0, 'NFS v3 udp');
  t.equal(await getport(100003, 2, 6), 0, 'NFS v2');
  t.equal(await getport(100005, 1, 6), 0, 'MOUNT v1');
  t.equal(await getport(100021, 4, 6), 0, 'NLM');
  t.match(await ask(d, 3, u32(100003, 3, 6)), { stat: AcceptStat.GARBAGE_ARGS }, 'short mapping');
});

t.test('SET and UNSET are refused', async (t) => {
  const d = dispatcher();
  t.same(body(await ask(d, 1, u32(200000, 1, 6, 1234))), u32(0));
  t.same(body(await ask(d, 2, u32(100003, 3, 6, 2049))), u32(0));
  t.match(await ask(d, 1, u32(1)), { stat: AcceptStat.GARBAGE_ARGS });
});

t.test('DUMP lists every mapping with the serving port', async (t) => {
  const r = await ask(dispatcher(), 4);
  t.same(
    body(r),
    Buffer.concat([u32(1, 100003, 3, 6, 2049), u32(1, 100005, 3, 6, 2049), u32(1, 100000, 2, 6, 2049), u32(0)]),
  );
});

t.test('CALLIT is PROC_UNAVAIL; other versions PROG_MISMATCH 2..2', async (t) => {
  const d = dispatcher();
  t.match(await ask(d, 5, u32(100003, 3, 0, 0)), { stat: AcceptStat.PROC_UNAVAIL });
  t.match(await ask(d, 6), { stat: AcceptStat.PROC_UNAVAIL });
  const r = await ask(d, 3, u32(100003, 3, 6, 0), 4);
  t.match(r, { stat: AcceptStat.PROG_MISMATCH });
  t.same(body(r), u32(2, 2));
});

t.test('procedure names', async (t) => {
  const p = new PortmapProgram();
  t.same([0, 1, 2, 3, 4, 5].map((n) => p.procedureName(2, n)), ['NULL', 'SET', 'UNSET', 'GETPORT', 'DUMP', 'CALLIT']);
  t.equal(p.procedureName(2, 6), undefined);
  t.equal(p.name, 'portmap2');
});

t.test('without a known local port, and with portOf', async (t) => {
  const bare: ConnectionInfo = { id: 2, peer, close: () => undefined };
  t.same(body(await ask(dispatcher(), 3, u32(100003, 3, 6, 0), 2, bare)), u32(0));
  const d = dispatcher(new PortmapProgram({ portOf: () => 7777 }));
  t.same(body(await ask(d, 3, u32(100005, 3, 6, 0))), u32(7777));
});

t.test('over TCP, GETPORT answers the port of the listener the call came in on', async (t) => {
  const d = dispatcher();
  const rpc = new RpcServer({ dispatcher: d, logger });
  const listeners = [new TcpListener(rpc, logger), new TcpListener(rpc, logger)];
  const ports = await Promise.all(listeners.map((l) => l.listen('127.0.0.1', 0)));
  t.not(ports[0], ports[1]);
  t.teardown(async () => {
    rpc.closeAll('done');
    await Promise.all(listeners.map((l) => l.close()));
  });
  for (const port of ports) {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.write(record(call({ xid: 9, prog: 100000, vers: 2, proc: 3, args: u32(100003, 3, 6, 0) })));
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    const r = parseReply(unmark(chunk));
    t.same(body(r), u32(port), `listener on ${port}`);
  }
});
