// The daemon's listeners, one per `listen:` entry, kept by a key so a reload (SIGHUP) can open the
// new ones and close the removed ones while every unchanged listener, and its connections, goes on.
import type { Logger } from 'pino';
import type { GatewayConfig, HybridVsockListen, Limits, TcpListen, VsockListen } from './config/load.js';
import type { RpcConnection } from './rpc/connection.js';
import type { RpcServer } from './rpc/server.js';
import { TcpListener } from './transport/tcp.js';
import { UnixListener } from './transport/unix.js';
import { VsockListener } from './transport/vsock.js';

export type Transport = 'tcp' | 'vsock' | 'hybrid_vsock';

export interface RunningListener {
  readonly key: string;
  readonly transport: Transport;
  /** What the "listening" log line and tests see: host/port, cid/port, or path/guest. */
  readonly where: Record<string, unknown>;
  connections(): IterableIterator<RpcConnection>;
  stopAccepting(): void;
  close(reason?: string): Promise<void>;
}

type Spec =
  | { transport: 'tcp'; key: string; spec: TcpListen }
  | { transport: 'vsock'; key: string; spec: VsockListen }
  | { transport: 'hybrid_vsock'; key: string; spec: HybridVsockListen };

/** Every listener the config asks for, keyed so that the same entry keeps its key across reloads. */
function specsOf(config: GatewayConfig): Spec[] {
  return [
    ...config.listen.tcp.map((spec) => ({ transport: 'tcp' as const, key: `tcp ${spec.host}:${spec.port}`, spec })),
    ...config.listen.vsock.map((spec) => ({ transport: 'vsock' as const, key: `vsock ${spec.cid ?? 'any'}:${spec.port}`, spec })),
    ...config.listen.hybridVsock.map((spec) => ({
      transport: 'hybrid_vsock' as const,
      key: `hybrid_vsock ${spec.path} ${spec.guest} ${spec.owner ?? ''}:${spec.group ?? ''} ${spec.mode.toString(8)}`,
      spec,
    })),
  ];
}

export class ListenerSet {
  private readonly running = new Map<string, RunningListener>();

  constructor(
    private readonly rpc: RpcServer,
    private readonly logger: Logger,
  ) {}

  all(): RunningListener[] {
    return [...this.running.values()];
  }

  /**
   * Opens what `config` lists and is not running, then closes what runs and is not listed. New
   * listeners open first, so a reload that cannot bind its new port keeps the old one: when any
   * opening fails, nothing is closed (except a hybrid socket path taken over by another entry,
   * which must close first). A listener that cannot be opened is reported and skipped; with
   * `strict` a TCP or vsock one is fatal (start-up), while a hybrid vsock socket, whose directory
   * belongs to a VMM, never keeps the other guests from being served.
   */
  async apply(config: GatewayConfig, strict: boolean): Promise<{ opened: string[]; closed: string[]; failed: string[] }> {
    const wanted = specsOf(config);
    const wantedKeys = new Set(wanted.map((s) => s.key));
    const wantedPaths = new Set(wanted.flatMap((s) => (s.transport === 'hybrid_vsock' ? [s.spec.path] : [])));
    const closed: string[] = [];
    const closeOne = async (key: string, listener: RunningListener) => {
      await listener.close('listener removed from the config');
      this.running.delete(key);
      closed.push(key);
      this.logger.info({ transport: listener.transport, ...listener.where }, 'listener closed');
    };
    for (const [key, listener] of [...this.running]) {
      if (!wantedKeys.has(key) && listener.transport === 'hybrid_vsock' && wantedPaths.has(String(listener.where.path))) await closeOne(key, listener);
    }
    const opened: string[] = [];
    const failed: string[] = [];
    for (const spec of wanted) {
      if (this.running.has(spec.key)) continue;
      try {
        const listener = await this.open(spec, config.limits);
        this.running.set(spec.key, listener);
        opened.push(spec.key);
        this.logger.info({ transport: listener.transport, ...listener.where }, 'listening');
      } catch (error) {
        if (strict && spec.transport !== 'hybrid_vsock') throw error;
        failed.push(spec.key);
        this.logger.error({ listener: spec.key, err: (error as Error).message }, 'listener cannot be opened');
      }
    }
    if (failed.length === 0) {
      for (const [key, listener] of [...this.running]) if (!wantedKeys.has(key)) await closeOne(key, listener);
    } else if ([...this.running.keys()].some((key) => !wantedKeys.has(key))) {
      this.logger.warn({ failed }, 'listeners removed from the config stay open until every new one could be opened');
    }
    return { opened, closed, failed };
  }

  stopAccepting(): void {
    for (const listener of this.running.values()) listener.stopAccepting();
  }

  async closeAll(reason: string): Promise<void> {
    await Promise.all([...this.running.values()].map((l) => l.close(reason)));
    this.running.clear();
  }

  private async open(spec: Spec, limits: Limits): Promise<RunningListener> {
    const connection = {
      maxRecordSize: limits.maxRecordBytes,
      maxCallsInFlight: limits.maxCallsInFlight,
      idleTimeoutMs: limits.idleTimeoutMs,
    };
    switch (spec.transport) {
      case 'tcp': {
        const listener = new TcpListener(this.rpc, this.logger, connection);
        await listener.listen(spec.spec.host, spec.spec.port);
        return wrap(spec, listener, { host: spec.spec.host, port: listener.port });
      }
      case 'vsock': {
        const listener = new VsockListener(this.rpc, this.logger, connection);
        const port = await listener.listen(spec.spec.port, spec.spec.cid);
        return wrap(spec, listener, { cid: spec.spec.cid ?? 'any', port });
      }
      case 'hybrid_vsock': {
        const { path: socketPath, guest, owner, group, mode } = spec.spec;
        const listener = new UnixListener(this.rpc, this.logger, {
          ...connection,
          guest,
          mode,
          ...(owner !== undefined ? { owner } : {}),
          ...(group !== undefined ? { group } : {}),
        });
        await listener.listen(socketPath);
        return wrap(spec, listener, { path: socketPath, guest });
      }
    }
  }
}

interface ListenerLike {
  connections(): IterableIterator<RpcConnection>;
  stopAccepting(): void;
  close(reason?: string): Promise<void>;
}

function wrap(spec: Spec, listener: ListenerLike, where: Record<string, unknown>): RunningListener {
  return {
    key: spec.key,
    transport: spec.transport,
    where,
    connections: () => listener.connections(),
    stopAccepting: () => listener.stopAccepting(),
    close: (reason) => listener.close(reason),
  };
}
