// The transport-independent half of a server: every transport (tcp, unix/hybrid vsock, vsock)
// hands its accepted Duplex and the peer identity it vouches for to accept(), and gets back the
// RpcConnection. One RpcServer is shared by all listeners so a shutdown can close everything.

import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { RpcConnection, type RpcConnectionOptions } from './connection.js';
import type { RpcDispatcher } from './dispatch.js';
import type { Peer } from './types.js';

export interface RpcServerOptions {
  dispatcher: RpcDispatcher;
  logger: Logger;
  /** Defaults for every connection (localPort is given per accept). */
  connection?: Omit<RpcConnectionOptions, 'localPort'>;
  /** Called for every accepted connection (metrics). Must not throw. */
  onAccept?: (peer: Peer) => void;
}

export class RpcServer {
  readonly dispatcher: RpcDispatcher;
  private readonly logger: Logger;
  private readonly connectionOptions: Omit<RpcConnectionOptions, 'localPort'>;
  private readonly live = new Set<RpcConnection>();
  private readonly onAccept: ((peer: Peer) => void) | undefined;

  constructor(options: RpcServerOptions) {
    this.dispatcher = options.dispatcher;
    this.logger = options.logger;
    this.connectionOptions = options.connection ?? {};
    this.onAccept = options.onAccept;
  }

  /**
   * Serve RPC on `socket`; the connection is tracked until it closes. `options` (a listener's
   * limits and its port) take precedence over the server's defaults.
   */
  accept(socket: Duplex, peer: Peer, options: RpcConnectionOptions = {}): RpcConnection {
    const merged: RpcConnectionOptions = { ...this.connectionOptions };
    for (const [key, value] of Object.entries(options) as [keyof RpcConnectionOptions, unknown][]) {
      if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
    }
    const connection = new RpcConnection(socket, peer, this.dispatcher, this.logger, merged);
    this.onAccept?.(peer);
    if (!connection.closed) {
      this.live.add(connection);
      connection.once('close', () => this.live.delete(connection));
    }
    return connection;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  connections(): IterableIterator<RpcConnection> {
    return this.live.values();
  }

  /** Close every live connection (shutdown, or a guest whose last grant went away). */
  closeAll(reason: string): void {
    for (const connection of [...this.live]) connection.close(reason);
  }
}
