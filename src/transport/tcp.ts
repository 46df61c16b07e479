// TCP listener: for host-only links where the operator vouches for peer addresses (DESIGN.md).
// All TCP specifics live here; src/rpc sees a Duplex and a Peer.

import net from 'node:net';
import type { Logger } from 'pino';
import type { RpcConnection, RpcConnectionOptions } from '../rpc/connection.js';
import { RpcDispatcher } from '../rpc/dispatch.js';
import { RpcServer } from '../rpc/server.js';
import { SocketReads } from '../rpc/socket-reads.js';
import type { Peer } from '../rpc/types.js';

export interface TcpListenerOptions extends Omit<RpcConnectionOptions, 'localPort'> {
  /** TCP keepalive probe delay; 0 disables. Default 60 s (idle reaping covers the rest). */
  keepAliveMs?: number;
}

export class TcpListener {
  private readonly rpc: RpcServer;
  private readonly logger: Logger;
  private readonly keepAliveMs: number;
  private readonly connectionOptions: Omit<RpcConnectionOptions, 'localPort'>;
  private readonly netServer: net.Server;
  private readonly live = new Set<RpcConnection>();
  private boundPort = 0;
  private boundHost = '';

  /**
   * `target`: the dispatcher to serve, or an RpcServer shared with other listeners (so one
   * closeAll reaches every transport). `options` are this listener's connection limits.
   */
  constructor(target: RpcDispatcher | RpcServer, logger: Logger, options: TcpListenerOptions = {}) {
    this.logger = logger;
    this.rpc = target instanceof RpcDispatcher ? new RpcServer({ dispatcher: target, logger }) : target;
    const { keepAliveMs, ...connectionOptions } = options;
    this.keepAliveMs = keepAliveMs ?? 60_000;
    this.connectionOptions = connectionOptions;
    // allowHalfOpen: a peer that shuts down its sending side still gets the replies it asked for.
    this.netServer = net.createServer({ allowHalfOpen: true }, (socket) => this.onSocket(socket));
    this.netServer.on('error', (err) => this.logger.error({ err }, 'TCP listener error'));
  }

  /** Start listening; port 0 picks a free port. Resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.netServer.once('error', onError);
      this.netServer.listen({ host, port }, () => {
        this.netServer.off('error', onError);
        const address = this.netServer.address() as net.AddressInfo;
        this.boundPort = address.port;
        this.boundHost = address.address;
        this.takeOverAccept();
        this.logger.debug({ host: this.boundHost, port: this.boundPort }, 'listening for RPC on TCP');
        resolve(this.boundPort);
      });
    });
  }

  /** The bound port (0 before listen). */
  get port(): number {
    return this.boundPort;
  }

  /** The bound address (empty before listen). */
  get host(): string {
    return this.boundHost;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  /** The live connections accepted by this listener. */
  connections(): IterableIterator<RpcConnection> {
    return this.live.values();
  }

  /** Close every connection accepted by this listener. */
  closeAll(reason: string): void {
    for (const connection of [...this.live]) connection.close(reason);
  }

  /** Stop accepting; the port is released at once, live connections go on. */
  stopAccepting(): void {
    if (this.netServer.listening) this.netServer.close();
  }

  /**
   * Stop accepting and close this listener's connections (replies in progress are dropped; clients
   * retransmit elsewhere or after a restart). Resolves when all of them are closed.
   */
  close(reason = 'listener closed'): Promise<void> {
    return new Promise((resolve) => {
      const wasListening = this.netServer.listening;
      this.closeAll(reason);
      if (!wasListening) {
        resolve();
        return;
      }
      this.netServer.close(() => resolve());
    });
  }

  /**
   * Accepted sockets are made here rather than by net.Server, so that they read through SocketReads
   * (src/rpc/socket-reads.ts): Node takes `onread` only in the Socket constructor, and net.Server
   * makes its sockets without one. This replaces the onconnection hook net.Server puts on its
   * listening handle, which is Node's own, not public API: where it is missing (another Node),
   * net.Server goes on making the sockets and reads come as 'data' events, as before.
   */
  private takeOverAccept(): void {
    const handle = (this.netServer as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
    if (!handle || typeof handle.onconnection !== 'function') {
      this.logger.debug('TCP: no onconnection hook on the listening handle; sockets read through data events');
      return;
    }
    handle.onconnection = (status: number, clientHandle?: { close?: () => void }): void => {
      if (status !== 0 || !clientHandle) {
        this.logger.warn({ errno: status }, 'TCP accept failed');
        return;
      }
      const reads = new SocketReads();
      let socket: net.Socket;
      try {
        socket = new net.Socket({ handle: clientHandle, allowHalfOpen: true, readable: true, writable: true, onread: reads.onread } as net.SocketConstructorOpts);
      } catch (err) {
        clientHandle.close?.();
        this.logger.error({ err }, 'TCP: could not serve an accepted connection');
        return;
      }
      this.onSocket(socket, reads);
    };
  }

  private onSocket(socket: net.Socket, reads?: SocketReads): void {
    const address = socket.remoteAddress;
    const port = socket.remotePort;
    if (address === undefined || port === undefined) {
      // Already gone between accept and here.
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    if (this.keepAliveMs > 0) socket.setKeepAlive(true, this.keepAliveMs);
    const peer: Peer = { transport: 'tcp', address, port };
    const connection = this.rpc.accept(socket, peer, { ...this.connectionOptions, localPort: this.boundPort, ...(reads ? { reads } : {}) });
    if (connection.closed) return;
    this.live.add(connection);
    connection.once('close', () => this.live.delete(connection));
  }
}
