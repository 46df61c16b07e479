// A minimal, independent MOUNT v3 client for tests: the EXPORT procedure over TCP.
// libnfs's `nfs-ls -D` asks the portmapper on port 111 and cannot be pointed at another port, so tests
// that check the export list use this instead. Written from RFC 5531 / RFC 1813 with plain Buffers,
// on purpose without src/rpc, so that it checks the server rather than agreeing with it.
import net from 'node:net';

export interface ExportEntry {
  dir: string;
  groups: string[];
}

const MOUNT_PROG = 100005;
const MOUNT_V3 = 3;
const MOUNTPROC3_EXPORT = 5;

function authSys(uid: number, gid: number): Buffer {
  const name = Buffer.from('test');
  const body = Buffer.alloc(4 + 4 + 4 + 4 + 4 + 4); // stamp, name len, name (4), uid, gid, gids count
  let o = 0;
  body.writeUInt32BE(1, o); o += 4;
  body.writeUInt32BE(name.length, o); o += 4;
  name.copy(body, o); o += 4;
  body.writeUInt32BE(uid, o); o += 4;
  body.writeUInt32BE(gid, o); o += 4;
  body.writeUInt32BE(0, o);
  return body;
}

/** Asks MOUNT EXPORT at host:port (AUTH_SYS uid 0); resolves with the list, rejects on any RPC error. */
export function mountExports(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<ExportEntry[]> {
  const xid = (Math.random() * 0xffffffff) >>> 0;
  const cred = authSys(0, 0);
  const call = Buffer.alloc(40 + cred.length + 8);
  let o = 0;
  for (const v of [xid, 0 /* CALL */, 2 /* rpcvers */, MOUNT_PROG, MOUNT_V3, MOUNTPROC3_EXPORT, 1 /* AUTH_SYS */, cred.length]) {
    call.writeUInt32BE(v, o);
    o += 4;
  }
  cred.copy(call, o);
  o += cred.length;
  call.writeUInt32BE(0, o); // verf AUTH_NONE
  call.writeUInt32BE(0, o + 4);
  const msg = call.subarray(0, o + 8);
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | msg.length) >>> 0, 0);

  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    const frags: Buffer[] = [];
    const timer = setTimeout(() => fail(new Error(`MOUNT EXPORT: no reply within ${timeoutMs} ms`)), timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('MOUNT EXPORT: connection closed before a reply')));
    sock.on('connect', () => sock.write(Buffer.concat([mark, msg])));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4) {
        const h = buf.readUInt32BE(0);
        const len = h & 0x7fffffff;
        if (buf.length < 4 + len) return;
        frags.push(buf.subarray(4, 4 + len));
        buf = buf.subarray(4 + len);
        if (h & 0x80000000) {
          const rec = Buffer.concat(frags);
          frags.length = 0;
          if (rec.length >= 4 && rec.readUInt32BE(0) !== xid) continue; // not ours
          clearTimeout(timer);
          sock.removeAllListeners('close');
          sock.destroy();
          try {
            resolve(parseReply(rec));
          } catch (e) {
            reject(e as Error);
          }
          return;
        }
      }
    });
  });
}

function parseReply(b: Buffer): ExportEntry[] {
  let o = 0;
  const u32 = () => {
    if (o + 4 > b.length) throw new Error('MOUNT EXPORT: short reply');
    const v = b.readUInt32BE(o);
    o += 4;
    return v;
  };
  const opaque = () => {
    const n = u32();
    if (o + n > b.length) throw new Error('MOUNT EXPORT: short reply');
    const v = b.subarray(o, o + n);
    o += (n + 3) & ~3;
    return v;
  };
  u32(); // xid
  if (u32() !== 1) throw new Error('MOUNT EXPORT: not a REPLY');
  const replyStat = u32();
  if (replyStat !== 0) throw new Error(`MOUNT EXPORT: call rejected (reject_stat ${u32()})`);
  u32(); // verf flavor
  opaque(); // verf body
  const acceptStat = u32();
  if (acceptStat !== 0) throw new Error(`MOUNT EXPORT: accept_stat ${acceptStat}`);
  const list: ExportEntry[] = [];
  while (u32() === 1) {
    const dir = opaque().toString('utf8');
    const groups: string[] = [];
    while (u32() === 1) groups.push(opaque().toString('utf8'));
    list.push({ dir, groups });
  }
  return list;
}
