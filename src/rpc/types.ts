// The contract between the RPC layer (src/rpc, src/transport) and the programs (portmap, mount, nfs3).
import type { XdrReader, XdrWriter } from './xdr.js';
import type { RecentCredentials } from './message.js';

/** Who is at the other end, as the channel says: never what the peer claims (DESIGN.md). */
export type Peer =
  | { readonly transport: 'tcp'; readonly address: string; readonly port: number }
  | { readonly transport: 'vsock'; readonly cid: number; readonly port: number }
  | { readonly transport: 'hybrid'; readonly vm: string };

/** Each connection's peer names itself once: the string is wanted for every call (callerOf). */
const identities = new WeakMap<Peer, string>();

/** A stable string naming the peer's identity for grant lookups: `tcp:ADDR`, `cid:N`, `vm:NAME`. */
export function peerIdentity(peer: Peer): string {
  let identity = identities.get(peer);
  if (identity === undefined) {
    identity = identityOf(peer);
    identities.set(peer, identity);
  }
  return identity;
}

function identityOf(peer: Peer): string {
  switch (peer.transport) {
    case 'tcp':
      return `tcp:${normalizeAddress(peer.address)}`;
    case 'vsock':
      return `cid:${peer.cid}`;
    case 'hybrid':
      return `vm:${peer.vm}`;
  }
}

/** IPv4-mapped IPv6 (::ffff:127.0.0.1) names the same host as its IPv4 address. */
export function normalizeAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

/** RFC 5531 section 8.2: auth_flavor. */
export enum AuthFlavor {
  AUTH_NONE = 0,
  AUTH_SYS = 1,
  AUTH_SHORT = 2,
  AUTH_DH = 3,
  RPCSEC_GSS = 6,
}

/** RFC 5531 appendix A: authsys_parms (machinename and gids bounded: 255 bytes, 16 gids). */
export interface AuthSysParms {
  readonly stamp: number;
  readonly machineName: string;
  readonly uid: number;
  readonly gid: number;
  readonly gids: readonly number[];
}

/** RFC 5531 section 9: accept_stat. */
export enum AcceptStat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}

/** RFC 5531 section 9: reject_stat. */
export enum RejectStat {
  RPC_MISMATCH = 0,
  AUTH_ERROR = 1,
}

/** RFC 5531 section 9: auth_stat. */
export enum AuthStat {
  AUTH_OK = 0,
  AUTH_BADCRED = 1,
  AUTH_REJECTEDCRED = 2,
  AUTH_BADVERF = 3,
  AUTH_REJECTEDVERF = 4,
  AUTH_TOOWEAK = 5,
  AUTH_INVALIDRESP = 6,
  AUTH_FAILED = 7,
}

/** One decoded call, handed to a procedure handler. */
export interface RpcCall {
  readonly xid: number;
  readonly prog: number;
  readonly vers: number;
  readonly proc: number;
  readonly flavor: AuthFlavor;
  /** Present when flavor is AUTH_SYS. */
  readonly authSys: AuthSysParms | null;
  /** Positioned at the first byte of the procedure's arguments. */
  readonly args: XdrReader;
  readonly peer: Peer;
  /** Per-connection state a program may keep (e.g. nothing yet); opaque to the RPC layer. */
  readonly connection: ConnectionInfo;
}

export interface ConnectionInfo {
  readonly id: number;
  readonly peer: Peer;
  /**
   * The port of the listener this connection arrived on (TCP port, vsock port, or the port a
   * hybrid vsock socket stands for); undefined when the transport has none. PORTMAP's GETPORT
   * answers it, since one port serves every program.
   */
  readonly localPort?: number;
  /** Closes this connection (e.g. a guest left without grants). */
  close(reason: string): void;
  /**
   * The socket's descriptor when a reply may end in bytes spliced from a pipe (ReplyTail); absent
   * when the transport cannot take them (then READ copies its data into the reply as usual).
   */
  readonly spliceFd?: number;
  /** The connection's recent AUTH_SYS credentials, decoded (message.ts); absent: every call decodes its own. */
  readonly credentials?: RecentCredentials;
}

/**
 * The end of a reply that is not in its buffer: `count` bytes waiting in a pipe (a zero-copy
 * READ's data), then `pad` zero bytes (XDR padding). The record mark counts them.
 */
export interface ReplyTail {
  pipeFd: number;
  count: number;
  pad: number;
}

/** The tails of replies RpcDispatcher.dispatch returned, by reply buffer (set only for such replies). */
export const replyTails = new WeakMap<Buffer, ReplyTail>();

/**
 * What a handler may answer instead of results. Returning nothing (undefined) means SUCCESS with
 * the results the handler wrote to `reply`. Throwing XdrError means GARBAGE_ARGS; any other throw
 * is a bug or an I/O failure and becomes SYSTEM_ERR (logged once, at the dispatch boundary).
 */
export type RpcFailure =
  | { readonly accept: AcceptStat.GARBAGE_ARGS | AcceptStat.SYSTEM_ERR | AcceptStat.PROC_UNAVAIL }
  | { readonly auth: AuthStat };

/** Writes the procedure's results into `reply`, which is positioned after the accepted-reply header. */
export type ProcedureHandler = (call: RpcCall, reply: XdrWriter) => void | RpcFailure | Promise<void | RpcFailure>;

export interface RpcProgram {
  readonly prog: number;
  /** Supported versions, lowest and highest (PROG_MISMATCH reports this range: RFC 5531 section 9). */
  readonly lowVersion: number;
  readonly highVersion: number;
  /** Short name for logs and metrics (`nfs3`, `mount3`, `portmap2`). */
  readonly name: string;
  /** The handler, or undefined for PROC_UNAVAIL. `vers` is within [lowVersion, highVersion]. */
  procedure(vers: number, proc: number): ProcedureHandler | undefined;
  /** Name of a procedure for metrics, e.g. `READ`; undefined when unknown. */
  procedureName(vers: number, proc: number): string | undefined;
}

/** Well-known program numbers (RFC 1833, RFC 1813). */
export const PROGRAM = {
  PORTMAP: 100000,
  NFS: 100003,
  MOUNT: 100005,
} as const;
