// Hand-built RPC bytes for tests: plain Buffer writes, independent of src/rpc's encoders.

export function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

/** XDR variable-length opaque: length, bytes, zero padding. */
export function opaque(bytes: Buffer | string): Buffer {
  const data = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  const pad = (4 - (data.length % 4)) % 4;
  return Buffer.concat([u32(data.length), data, Buffer.alloc(pad)]);
}

/** opaque_auth { flavor, body<400> }. */
export function auth(flavor: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u32(flavor), opaque(body)]);
}

export const AUTH_NONE = auth(0);

export function authSysBody(p: { stamp?: number; machine?: string; uid: number; gid: number; gids?: number[] }): Buffer {
  const gids = p.gids ?? [];
  return Buffer.concat([u32(p.stamp ?? 0), opaque(p.machine ?? ''), u32(p.uid, p.gid, gids.length), u32(...gids)]);
}

export function authSys(p: { stamp?: number; machine?: string; uid: number; gid: number; gids?: number[] }): Buffer {
  return auth(1, authSysBody(p));
}

/** rpc_msg CALL with the given cred/verf and argument bytes (no record mark). */
export function call(p: {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  rpcvers?: number;
  cred?: Buffer;
  verf?: Buffer;
  args?: Buffer;
}): Buffer {
  return Buffer.concat([
    u32(p.xid, 0, p.rpcvers ?? 2, p.prog, p.vers, p.proc),
    p.cred ?? AUTH_NONE,
    p.verf ?? AUTH_NONE,
    p.args ?? Buffer.alloc(0),
  ]);
}

/** Prefix one last-fragment record mark. */
export function record(body: Buffer): Buffer {
  return Buffer.concat([u32(0x80000000 + body.length), body]);
}

/** Split `body` into fragments of the given sizes (the rest in a last fragment). */
export function fragmented(body: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    parts.push(u32(size), body.subarray(at, at + size));
    at += size;
  }
  parts.push(u32(0x80000000 + (body.length - at)), body.subarray(at));
  return Buffer.concat(parts);
}

export type Reply =
  | { xid: number; accepted: true; verfFlavor: number; verfLength: number; stat: number; body: Buffer }
  | { xid: number; accepted: false; rejectStat: number; words: number[] };

/** Decode a reply record body (after the record mark) by hand. */
export function parseReply(body: Buffer): Reply {
  const w = (i: number): number => body.readUInt32BE(i * 4);
  const xid = w(0);
  if (w(1) !== 1) throw new Error(`msg_type ${w(1)} is not REPLY`);
  if (w(2) === 0) {
    const verfLength = w(4);
    const statAt = 5 + Math.ceil(verfLength / 4);
    return { xid, accepted: true, verfFlavor: w(3), verfLength, stat: w(statAt), body: body.subarray((statAt + 1) * 4) };
  }
  if (w(2) !== 1) throw new Error(`reply_stat ${w(2)}`);
  const words: number[] = [];
  for (let i = 4; i * 4 < body.length; i++) words.push(w(i));
  return { xid, accepted: false, rejectStat: w(3), words };
}

/** Check and strip the single last-fragment record mark of a reply. */
export function unmark(reply: Buffer): Buffer {
  const mark = reply.readUInt32BE(0);
  if (mark !== 0x80000000 + reply.length - 4) throw new Error(`bad record mark ${mark.toString(16)}`);
  return reply.subarray(4);
}
