// Assembles the daemon: config -> grant table, share filesystem layer, the three programs on one
// dispatcher, and the listeners. Everything a test or the CLI needs to start and stop a gateway.
import { pino, type Logger } from 'pino';
import type { GatewayConfig } from './config/load.js';
import { GrantTable } from './grants/table.js';
import { guestIdentity } from './grants/types.js';
import { fsBridge } from './native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from './fs/handle.js';
import { ShareFileService } from './fs/service.js';
import { RpcDispatcher } from './rpc/dispatch.js';
import { RpcServer } from './rpc/server.js';
import { createPortmapProgram } from './portmap/program.js';
import { createMountProgram } from './mount/program.js';
import { createNfsProgram } from './nfs3/program.js';
import { TcpListener } from './transport/tcp.js';
import { peerIdentity } from './rpc/types.js';

export interface Gateway {
  readonly logger: Logger;
  readonly grants: GrantTable;
  readonly files: ShareFileService;
  /** The bound TCP ports, in config order. */
  ports(): number[];
  stop(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
}

export async function startGateway(config: GatewayConfig, options: StartOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId } });
  const native = fsBridge();
  const fileLimit = native.raiseFileLimit();
  const codec = new HandleCodec(loadHandleSecret(config.stateDir));

  const grants = new GrantTable();
  grants.replaceAll(config.grants);
  const backendRoots = new Map(config.backends.map((b) => [b.id, b.path]));
  const files = new ShareFileService({
    native,
    grants,
    backends: { rootOf: (id) => backendRoots.get(id) },
    codec,
    logger,
    // leave room for connections and the daemon's own files
    cacheLimit: Math.max(256, Math.min(65536, Math.floor(fileLimit / 2))),
  });

  // Fail static: a grant whose share cannot be opened is reported and the others are served.
  for (const share of new Set(config.grants.map((g) => g.share))) {
    try {
      const root = await files.openShare(share);
      logger.info({ share, path: root.hostPath }, 'share ready');
    } catch (error) {
      logger.error({ share, err: (error as Error).message }, 'share cannot be served');
    }
  }

  const dispatcher = new RpcDispatcher({ logger });
  dispatcher.register(createPortmapProgram());
  dispatcher.register(createMountProgram(files));
  dispatcher.register(createNfsProgram(files));

  // One server for every listener: it knows every connection, whatever transport it came on.
  const rpc = new RpcServer({ dispatcher, logger });
  const listeners: TcpListener[] = [];
  for (const spec of config.listen.tcp) {
    const listener = new TcpListener(rpc, logger, {
      maxRecordSize: config.limits.maxRecordBytes,
      maxCallsInFlight: config.limits.maxCallsInFlight,
      idleTimeoutMs: config.limits.idleTimeoutMs,
    });
    await listener.listen(spec.host, spec.port);
    listeners.push(listener);
    logger.info({ transport: 'tcp', host: spec.host, port: listener.port }, 'listening');
  }

  // A guest left without any grant has no business keeping a connection open.
  grants.onChange(({ removed }) => {
    for (const grant of removed) {
      const identity = guestIdentity(grant.guest);
      if (grants.hasAny(identity)) continue;
      for (const connection of [...rpc.connections()]) {
        if (peerIdentity(connection.peer) === identity) connection.close('no grants left');
      }
    }
  });

  logger.info(
    { shares: grants.all().length, tcp: listeners.map((l) => l.port), version: process.env.npm_package_version },
    'ready',
  );

  return {
    logger,
    grants,
    files,
    ports: () => listeners.map((l) => l.port),
    async stop() {
      await Promise.all(listeners.map((l) => l.close()));
      files.close();
    },
  };
}
