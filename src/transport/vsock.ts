// vsock listener: guests reach the gateway over AF_VSOCK, and the peer CID of each accepted
// connection, assigned by the hypervisor, is the guest's identity (DESIGN.md "Identity and grants").
// Node has no AF_VSOCK: the native addon listens and accepts (src/native/sockets.ts), and each
// accepted fd becomes a net.Socket (src/transport/stream-fd.ts), served by the same RPC connection
// code as TCP. All vsock specifics live here; src/rpc sees a Duplex and a Peer.

import { closeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { RpcConnection, RpcConnectionOptions } from '../rpc/connection.js';
import { RpcDispatcher } from '../rpc/dispatch.js';
import { RpcServer } from '../rpc/server.js';
import type { Peer } from '../rpc/types.js';
import { errnoError, socketsBridge, VMADDR_CID_ANY, VMADDR_PORT_ANY, type Acceptor } from '../native/sockets.js';
import { socketFromFd } from './stream-fd.js';
import { SocketReads } from '../rpc/socket-reads.js';

export type VsockListenerOptions = Omit<RpcConnectionOptions, 'localPort'>;

/**
 * Who an accepted connection is, from what accept4 reported (peerCid/peerPort are -1 for a
 * non-vsock socket); null refuses the connection (it is closed unserved).
 */
export type PeerOf = (peerCid: number, peerPort: number) => Peer | null;

/** The vsock rule: the peer CID, and nothing else, names the guest. */
export const vsockPeer: PeerOf = (peerCid, peerPort) =>
  peerCid >= 0 ? { transport: 'vsock', cid: peerCid, port: peerPort } : null;

/** listen(2) backlog, Node's default for net.Server. */
const BACKLOG = 511;
/** Repeated accept failures (EMFILE while the fd table is full) are logged at most this often. */
const ERROR_LOG_INTERVAL_MS = 1000;

/**
 * Serves RPC on the connections of a listening stream socket given as an fd, identifying each
 * peer with `peerOf`. VsockListener is this plus the vsock socket; tests drive the very same code
 * over an AF_UNIX listener (sockets.unixListen) with a PeerOf naming a fixed CID.
 */
export class FdListener {
  protected readonly rpc: RpcServer;
  protected readonly logger: Logger;
  private readonly connectionOptions: VsockListenerOptions;
  private readonly peerOf: PeerOf;
  private readonly transportName: string;
  /** Each live connection and its socket (close() waits for the sockets, so the fds are released). */
  private readonly live = new Map<RpcConnection, Socket>();
  private acceptor: Acceptor | null = null;
  private boundPort = 0;
  private lastErrorLog = -Infinity;
  private suppressedErrors = 0;

  /**
   * `target`: the dispatcher to serve, or an RpcServer shared with other listeners (so one
   * closeAll reaches every transport). `options` are this listener's connection limits.
   */
  constructor(
    target: RpcDispatcher | RpcServer,
    logger: Logger,
    options: VsockListenerOptions = {},
    peerOf: PeerOf = vsockPeer,
    transportName = 'vsock',
  ) {
    this.logger = logger;
    this.rpc = target instanceof RpcDispatcher ? new RpcServer({ dispatcher: target, logger }) : target;
    this.connectionOptions = options;
    this.peerOf = peerOf;
    this.transportName = transportName;
  }

  /**
   * Accept on `listeningFd` (a listening stream socket, which this listener now owns and closes);
   * `localPort` is the port connections report (ConnectionInfo.localPort, PORTMAP GETPORT).
   * Throws (after closing the fd) if the event loop cannot watch it.
   */
  listenFd(listeningFd: number, localPort: number): void {
    const sockets = socketsBridge();
    if (this.acceptor !== null) {
      closeSync(listeningFd);
      throw new Error(`${this.transportName} listener: already listening on port ${this.boundPort}`);
    }
    const acceptor = new sockets.Acceptor(
      listeningFd,
      (fd, peerCid, peerPort) => this.onConnection(fd, peerCid, peerPort),
      (errno) => this.onAcceptError(errno),
    );
    const err = acceptor.start();
    if (err !== 0) {
      acceptor.close();
      throw errnoError(err, 'uv_poll_start', `${this.transportName} listener on port ${localPort}`);
    }
    this.acceptor = acceptor;
    this.boundPort = localPort;
  }

  /** The bound port (0 before listen). */
  get port(): number {
    return this.boundPort;
  }

  /** True while accepting. */
  get listening(): boolean {
    return this.acceptor !== null;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  /** The live connections accepted by this listener. */
  connections(): IterableIterator<RpcConnection> {
    return this.live.keys();
  }

  /** Close every connection accepted by this listener. */
  closeAll(reason: string): void {
    for (const connection of [...this.live.keys()]) connection.close(reason);
  }

  /** Stop accepting; the port is released at once, live connections go on. */
  stopAccepting(): void {
    this.acceptor?.close();
    this.acceptor = null;
  }

  /**
   * Stop accepting and close this listener's connections (replies in progress are dropped; clients
   * retransmit elsewhere or after a restart). Resolves when all of their sockets are closed.
   */
  async close(reason = 'listener closed'): Promise<void> {
    const sockets = [...this.live.values()];
    this.closeAll(reason);
    this.stopAccepting();
    await Promise.all(sockets.map((socket) => (socket.closed ? undefined : new Promise((r) => socket.once('close', r)))));
  }

  private onConnection(fd: number, peerCid: number, peerPort: number): void {
    // Runs from the native acceptor: nothing may throw out of here (it would be uncaught).
    let socket: Socket | undefined;
    try {
      const peer = this.peerOf(peerCid, peerPort);
      if (peer === null) {
        closeSync(fd);
        this.logger.warn({ peerCid, peerPort }, `${this.transportName}: connection without a peer identity refused`);
        return;
      }
      const reads = new SocketReads();
      socket = socketFromFd(fd, reads);
      const connection = this.rpc.accept(socket, peer, { ...this.connectionOptions, localPort: this.boundPort, reads });
      if (connection.closed) return;
      this.live.set(connection, socket);
      connection.once('close', () => this.live.delete(connection));
    } catch (err) {
      socket?.destroy();
      this.logger.error({ err }, `${this.transportName}: could not serve an accepted connection`);
    }
  }

  private onAcceptError(errno: number): void {
    const now = performance.now();
    if (now - this.lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.suppressedErrors++;
      return;
    }
    const err = errnoError(errno, 'accept4', `${this.transportName} listener on port ${this.boundPort}`);
    this.logger.error({ err, suppressed: this.suppressedErrors }, `${this.transportName}: accept failed; retrying in 100 ms`);
    this.lastErrorLog = now;
    this.suppressedErrors = 0;
  }
}

/** Accepts guests on an AF_VSOCK port; each connection's peer is { transport: 'vsock', cid, port }. */
export class VsockListener extends FdListener {
  private boundCid = VMADDR_CID_ANY;

  constructor(target: RpcDispatcher | RpcServer, logger: Logger, options: VsockListenerOptions = {}) {
    super(target, logger, options, vsockPeer, 'vsock');
  }

  /**
   * Start listening on `port` (0 or VMADDR_PORT_ANY picks a free port) of `cid` (default every local
   * CID; a host listens for its guests on VMADDR_CID_ANY or VMADDR_CID_HOST). Resolves with the
   * bound port; rejects with a system error (code EADDRINUSE, EACCES for ports below 1024 without
   * CAP_NET_BIND_SERVICE, EAFNOSUPPORT without the vsock modules, ...).
   */
  listen(port: number, cid: number = VMADDR_CID_ANY): Promise<number> {
    try {
      const wanted = port === 0 ? VMADDR_PORT_ANY : port;
      const result = socketsBridge().vsockListen(cid, wanted, BACKLOG);
      if (result.err !== 0) {
        throw errnoError(result.err, result.syscall ?? 'listen', `vsock listen on port ${port}`);
      }
      this.listenFd(result.fd, result.port);
      this.boundCid = result.cid;
      this.logger.debug({ cid: this.boundCid, port: result.port }, 'listening for RPC on vsock');
      return Promise.resolve(result.port);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The bound CID (VMADDR_CID_ANY unless listen() named one). */
  get cid(): number {
    return this.boundCid;
  }
}
