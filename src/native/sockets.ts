// Typed access to the sockets part of the native addon (native-bridges/src/sockets.cc): what Node
// cannot open itself. AF_VSOCK listening sockets with the peer CID of every accepted connection
// (the guest's identity, assigned by the hypervisor: DESIGN.md "Identity and grants"), AF_UNIX
// helpers that let tests drive the same accept path, and sd_notify's datagram.
//
// Conventions (as in fsbridge.ts): OS errors come back as a positive errno in `err` (or as the
// return value), never as exceptions; only misuse (wrong argument types) throws. File descriptors
// returned here belong to the caller: hand them to an Acceptor (listening sockets) or to
// socketFromFd (src/transport/stream-fd.ts), or close them with fs.closeSync.
import { loadAddon } from './addon.js';
import { getSystemErrorName } from 'node:util';

/** VMADDR_CID_ANY / VMADDR_PORT_ANY (linux/vm_sockets.h). */
export const VMADDR_CID_ANY = 0xffffffff;
export const VMADDR_PORT_ANY = 0xffffffff;
/** The host's own CID, as guests address it. */
export const VMADDR_CID_HOST = 2;

export interface ListenResult {
  /** The listening socket (non-blocking, CLOEXEC), or -1 on failure. */
  fd: number;
  err: number;
  /** On failure: which call failed (socket, bind, listen, getsockname). */
  syscall?: string;
}

export interface VsockListenResult extends ListenResult {
  /** The bound port (from getsockname: a real port when VMADDR_PORT_ANY was asked); 0 on failure. */
  port: number;
  /** The bound CID as getsockname reports it (VMADDR_CID_ANY when bound to any). */
  cid: number;
}

/**
 * Accepts connections on a listening stream socket from the event loop (a uv_poll_t on the fd):
 * accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until EAGAIN whenever it is readable.
 * - onConnection(fd, peerCid, peerPort): the accepted socket, now owned by the callback; the peer's
 *   CID and port for AF_VSOCK, -1 and -1 for any other family. Runs as an event-loop callback
 *   (nextTick and microtasks run after it); a throw becomes an uncaught exception, so catch.
 * - onError(errno): accept4 failed in a way that would repeat at once (EMFILE, ENFILE, ENOBUFS,
 *   ENOMEM, ...); accepting pauses for 100 ms and resumes by itself. Per-connection failures
 *   (ECONNABORTED and the network errors accept(2) passes on) are skipped silently.
 * The Acceptor owns listeningFd from construction on: close() stops watching and closes it
 * (idempotent; the address is free when it returns). A started Acceptor is kept alive (and keeps
 * the event loop alive) until close().
 */
export interface Acceptor {
  /** Starts watching: 0, or an errno (EBADF after close, EALREADY if started, or uv_poll's). */
  start(): number;
  close(): void;
  /** True once close() ran (the listening fd is closed). */
  readonly closed: boolean;
}

export interface AcceptorConstructor {
  new (
    listeningFd: number,
    onConnection: (fd: number, peerCid: number, peerPort: number) => void,
    onError: (errno: number) => void,
  ): Acceptor;
}

export interface SocketsBridge {
  /**
   * socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC), bind to (cid, port), listen.
   * cid VMADDR_CID_ANY for every local CID; port VMADDR_PORT_ANY for any free port.
   */
  vsockListen(cid: number, port: number, backlog: number): VsockListenResult;
  /** A non-blocking AF_UNIX stream listener on `path` ("@name": abstract namespace). */
  unixListen(path: string, backlog: number): ListenResult;
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected (blocking) sockets. */
  socketPair(): { fds: [number, number]; err: number };
  /** getpeername of an AF_VSOCK socket (EAFNOSUPPORT for another family). */
  peerCid(fd: number): { cid: number; port: number; err: number };
  /**
   * One datagram (sd_notify(3)'s) to an AF_UNIX SOCK_DGRAM socket: an absolute path, or "@name" in
   * the abstract namespace. 0 or errno (EAFNOSUPPORT for other address forms, e.g. "vsock:...").
   */
  sdNotify(socketPath: string, message: string): number;
  Acceptor: AcceptorConstructor;
}

let loaded: SocketsBridge | undefined;

/** The sockets half of the native addon (the same module as fsBridge()). */
export function socketsBridge(): SocketsBridge {
  loaded ??= loadAddon(['vsockListen', 'unixListen', 'socketPair', 'peerCid', 'sdNotify', 'Acceptor']) as unknown as SocketsBridge;
  return loaded;
}

/** An Error for an errno from this bridge, shaped like Node's system errors (code, errno, syscall). */
export function errnoError(err: number, syscall: string, what: string): NodeJS.ErrnoException {
  const code = errnoName(err);
  const error: NodeJS.ErrnoException = new Error(`${what}: ${syscall} ${code}`);
  error.code = code;
  error.errno = -err;
  error.syscall = syscall;
  return error;
}

/** "EADDRINUSE" for 98 (libuv's names, as Node's own errors carry). */
export function errnoName(err: number): string {
  return err > 0 ? getSystemErrorName(-err) : `E${err}`;
}
