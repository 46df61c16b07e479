// RPC messages (RFC 5531 section 9): decoding the call header with its credentials, and
// encoding the reply headers. Reply encoders write at the writer's current offset; the caller
// reserves the record mark in front (see record.ts).
//
//   struct rpc_msg { unsigned int xid; union switch (msg_type mtype) {
//       case CALL: call_body cbody; case REPLY: reply_body rbody; } body; };
//   struct call_body { unsigned int rpcvers; /* must be 2 */ unsigned int prog;
//       unsigned int vers; unsigned int proc; opaque_auth cred; opaque_auth verf; };
//   struct opaque_auth { auth_flavor flavor; opaque body<400>; };
//
// What a call header that does not parse gets (the RFC leaves most of this to the server; the
// choices follow Linux knfsd's svc_process and svcauth_{null,unix}_accept):
//   - shorter than xid + msg_type, or msg_type not CALL (a REPLY sent to a server, or garbage):
//     dropped, nothing is sent;
//   - rpcvers readable and not 2: MSG_DENIED RPC_MISMATCH low=2 high=2 (we cannot know the rest
//     of the layout, so nothing after rpcvers is read);
//   - prog, vers or proc cut short: dropped (too short to be a call; knfsd does the same);
//   - credential cut short, longer than 400 bytes, or its body malformed: AUTH_ERROR AUTH_BADCRED;
//   - verifier cut short, longer than 400 bytes, or not AUTH_NONE of length 0: AUTH_BADVERF;
//   - AUTH_SHORT: AUTH_REJECTEDCRED. We never hand out shorthand verifiers, so any shorthand is
//     one we do not hold; RFC 5531 appendix A has the client fall back to its AUTH_SYS credential;
//   - any other flavor (AUTH_DH, RPCSEC_GSS, AUTH_TLS, unassigned): AUTH_BADCRED, as knfsd answers
//     flavors it has no module for, and as RFC 9289 section 4.1 expects of a server that does
//     not recognise AUTH_TLS.
// Which flavors a program accepts beyond that (NFS refusing AUTH_NONE, say) is the program's
// call: its handler returns { auth: AuthStat.AUTH_TOOWEAK }.

import type { XdrWriter } from './xdr.js';
import { AcceptStat, AuthFlavor, AuthStat, RejectStat, type AuthSysParms } from './types.js';

/** RFC 5531 section 9: msg_type. */
export enum MsgType {
  CALL = 0,
  REPLY = 1,
}

/** RFC 5531 section 9: reply_stat. */
export enum ReplyStat {
  MSG_ACCEPTED = 0,
  MSG_DENIED = 1,
}

/** The only RPC protocol version (RFC 5531 section 9). */
export const RPC_VERSION = 2;

/** opaque_auth body<400> (RFC 5531 section 8.2). */
export const MAX_AUTH_BYTES = 400;

/** authsys_parms bounds (RFC 5531 appendix A). */
export const AUTH_SYS_MAX_MACHINE_NAME = 255;
export const AUTH_SYS_MAX_GIDS = 16;

/** xid, msg_type, rpcvers, prog, vers, proc: the fixed part in front of the credential. */
const FIXED_CALL_HEADER = 24;

/** A call header that parsed and authenticated; the arguments start at argsOffset. */
export interface CallHeader {
  readonly kind: 'call';
  readonly xid: number;
  readonly prog: number;
  readonly vers: number;
  readonly proc: number;
  readonly flavor: AuthFlavor;
  readonly authSys: AuthSysParms | null;
  readonly argsOffset: number;
}

export type DropReason = 'short' | 'reply' | 'bad-msg-type';

export type DecodedCall =
  | CallHeader
  /** Nothing can or should be answered. */
  | { readonly kind: 'drop'; readonly reason: DropReason }
  /** rpcvers is not 2: answer MSG_DENIED RPC_MISMATCH. */
  | { readonly kind: 'rpc-mismatch'; readonly xid: number }
  /** Answer MSG_DENIED AUTH_ERROR with `stat`. */
  | {
      readonly kind: 'auth-error';
      readonly xid: number;
      readonly prog: number;
      readonly vers: number;
      readonly proc: number;
      readonly stat: AuthStat;
    };

const DROP_SHORT: DecodedCall = { kind: 'drop', reason: 'short' };
const DROP_REPLY: DecodedCall = { kind: 'drop', reason: 'reply' };
const DROP_BAD_MSG_TYPE: DecodedCall = { kind: 'drop', reason: 'bad-msg-type' };

/** MSG_DENIED AUTH_ERROR for this call: a function, where a closure made per call was garbage. */
function denied(xid: number, prog: number, vers: number, proc: number, stat: AuthStat): DecodedCall {
  return { kind: 'auth-error', xid, prog, vers, proc, stat };
}

/**
 * The last few AUTH_SYS credentials one connection sent, decoded. A client sends the same
 * credential call after call (or a few, one per user of the guest sharing the connection), and
 * decoding it anew each time (a view, the machine name, the gids, the object) was garbage on every
 * request. Reused only for a body equal byte for byte, so the answer is the one decodeAuthSys
 * would give; one set per connection, so nothing crosses between peers.
 */
export class RecentCredentials {
  static readonly KEPT = 4;
  /** Most recently decoded first: copies of the bodies, and what they decode to. */
  private readonly bodies: Buffer[] = [];
  private readonly decoded: AuthSysParms[] = [];

  /** The decoded body at record[at, at + length), kept from an earlier call when the bytes are the same. */
  decode(record: Buffer, at: number, length: number): AuthSysParms | null {
    const bodies = this.bodies;
    for (let i = 0; i < bodies.length; i++) {
      const body = bodies[i]!;
      if (body.length === length && body.compare(record, at, at + length) === 0) return this.decoded[i]!;
    }
    const parms = decodeAuthSys(record.subarray(at, at + length));
    if (parms !== null) {
      // Frozen: one object now serves many calls, and none may change what the next one sees.
      Object.freeze(parms.gids);
      Object.freeze(parms);
      if (bodies.length === RecentCredentials.KEPT) {
        bodies.pop();
        this.decoded.pop();
      }
      // A copy: the record's buffer is reused for later reads.
      bodies.unshift(Buffer.from(record.subarray(at, at + length)));
      this.decoded.unshift(parms);
    }
    return parms;
  }
}

/**
 * Decode an RPC call header from one record. Never throws on any input. `credentials`, the
 * connection's, saves decoding an AUTH_SYS credential it sent recently.
 */
export function decodeCall(record: Buffer, credentials?: RecentCredentials): DecodedCall {
  const end = record.length;
  if (end < 8) return DROP_SHORT;
  const xid = record.readUInt32BE(0);
  const mtype = record.readUInt32BE(4);
  if (mtype !== MsgType.CALL) return mtype === MsgType.REPLY ? DROP_REPLY : DROP_BAD_MSG_TYPE;
  if (end < 12) return DROP_SHORT;
  if (record.readUInt32BE(8) !== RPC_VERSION) return { kind: 'rpc-mismatch', xid };
  if (end < FIXED_CALL_HEADER) return DROP_SHORT;
  const prog = record.readUInt32BE(12);
  const vers = record.readUInt32BE(16);
  const proc = record.readUInt32BE(20);

  // cred: flavor, length, body (padded).
  let at = FIXED_CALL_HEADER;
  if (end - at < 8) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
  const flavor = record.readUInt32BE(at);
  const credLength = record.readUInt32BE(at + 4);
  at += 8;
  if (credLength > MAX_AUTH_BYTES) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
  const credPadded = (credLength + 3) & ~3;
  if (end - at < credPadded) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
  const credAt = at;
  at += credPadded;

  let authSys: AuthSysParms | null = null;
  switch (flavor) {
    case AuthFlavor.AUTH_NONE:
      if (credLength !== 0) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
      break;
    case AuthFlavor.AUTH_SYS:
      authSys = credentials ? credentials.decode(record, credAt, credLength) : decodeAuthSys(record.subarray(credAt, credAt + credLength));
      if (authSys === null) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
      break;
    case AuthFlavor.AUTH_SHORT:
      return denied(xid, prog, vers, proc, AuthStat.AUTH_REJECTEDCRED);
    default:
      return denied(xid, prog, vers, proc, AuthStat.AUTH_BADCRED);
  }

  // verf: AUTH_NONE with an empty body for both flavors we accept (RFC 5531 section 10 and appendix A).
  if (end - at < 8) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADVERF);
  const verfFlavor = record.readUInt32BE(at);
  const verfLength = record.readUInt32BE(at + 4);
  at += 8;
  if (verfFlavor !== AuthFlavor.AUTH_NONE || verfLength !== 0) return denied(xid, prog, vers, proc, AuthStat.AUTH_BADVERF);

  return { kind: 'call', xid, prog, vers, proc, flavor, authSys, argsOffset: at };
}

/**
 * Decode an AUTH_SYS credential body (RFC 5531 appendix A):
 *   struct authsys_parms { unsigned int stamp; string machinename<255>;
 *       unsigned int uid; unsigned int gid; unsigned int gids<16>; };
 * Returns null when the body is malformed: short, over a bound, or with bytes left over.
 */
export function decodeAuthSys(body: Buffer): AuthSysParms | null {
  const end = body.length;
  // stamp + machinename length + uid + gid + gids length, with an empty name and no gids.
  if (end < 20) return null;
  const stamp = body.readUInt32BE(0);
  const nameLength = body.readUInt32BE(4);
  if (nameLength > AUTH_SYS_MAX_MACHINE_NAME) return null;
  const nameAt = 8;
  let at = nameAt + ((nameLength + 3) & ~3);
  if (end - at < 12) return null;
  const uid = body.readUInt32BE(at);
  const gid = body.readUInt32BE(at + 4);
  const gidCount = body.readUInt32BE(at + 8);
  at += 12;
  if (gidCount > AUTH_SYS_MAX_GIDS) return null;
  if (end - at !== gidCount * 4) return null;
  const gids = new Array<number>(gidCount);
  for (let i = 0; i < gidCount; i++) gids[i] = body.readUInt32BE(at + i * 4);
  return { stamp, machineName: body.toString('latin1', nameAt, nameAt + nameLength), uid, gid, gids };
}

/** xid, REPLY, reply_stat. */
function writeReplyStart(w: XdrWriter, xid: number, stat: ReplyStat): void {
  w.uint32(xid).uint32(MsgType.REPLY).uint32(stat);
}

/**
 * MSG_ACCEPTED with an AUTH_NONE verifier and `stat`. Returns the offset of accept_stat, so the
 * dispatcher can rewind there and write a different one after a handler fails.
 */
export function encodeAcceptedReply(w: XdrWriter, xid: number, stat: AcceptStat): number {
  writeReplyStart(w, xid, ReplyStat.MSG_ACCEPTED);
  w.uint32(AuthFlavor.AUTH_NONE).uint32(0);
  const statAt = w.offset;
  w.uint32(stat);
  return statAt;
}

/** MSG_ACCEPTED PROG_MISMATCH with the range of versions supported. */
export function encodeProgMismatch(w: XdrWriter, xid: number, low: number, high: number): void {
  encodeAcceptedReply(w, xid, AcceptStat.PROG_MISMATCH);
  w.uint32(low).uint32(high);
}

/** MSG_DENIED RPC_MISMATCH: we speak RPC version 2 only. */
export function encodeRpcMismatch(w: XdrWriter, xid: number): void {
  writeReplyStart(w, xid, ReplyStat.MSG_DENIED);
  w.uint32(RejectStat.RPC_MISMATCH).uint32(RPC_VERSION).uint32(RPC_VERSION);
}

/** MSG_DENIED AUTH_ERROR with `stat`. */
export function encodeAuthError(w: XdrWriter, xid: number, stat: AuthStat): void {
  writeReplyStart(w, xid, ReplyStat.MSG_DENIED);
  w.uint32(RejectStat.AUTH_ERROR).uint32(stat);
}
