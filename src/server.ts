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
import { GrantStore } from './grants/store.js';
import { GrantApplier } from './control/applier.js';
import { ControllerClient } from './control/client.js';
import type { ShareStatus } from './control/protocol.js';
import { SOFTWARE_VERSION } from './version.js';

export interface Gateway {
  readonly logger: Logger;
  readonly grants: GrantTable;
  readonly files: ShareFileService;
  /** Applies the controller's grants (and serves the stored ones at start). */
  readonly applier: GrantApplier;
  /** The controller channel, when the config names a controller. */
  readonly controller: ControllerClient | undefined;
  /** The bound TCP ports, in config order. */
  ports(): number[];
  stop(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** First controller reconnect delay (tests shorten it); the cap is 8x. */
  controllerBackoffMs?: number;
}

export async function startGateway(config: GatewayConfig, options: StartOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId } });
  const native = fsBridge();
  const fileLimit = native.raiseFileLimit();
  const codec = new HandleCodec(loadHandleSecret(config.stateDir));

  const grants = new GrantTable();
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

  // Fail static: the stored grants of the controller are served before it is even reached; a
  // grant whose share cannot be opened is reported and the others are served.
  const applier = new GrantApplier({
    grants,
    staticGrants: config.grants,
    store: new GrantStore(config.stateDir),
    hasBackend: (id) => backendRoots.has(id),
    openShare: (share) => files.openShare(share),
    logger,
  });
  const started = await applier.start({ loadStore: config.controller !== undefined });
  if (started.stored > 0) logger.info({ grants: started.stored, failed: started.failed, revision: applier.revision }, 'stored controller grants served');
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

  // A guest left without any grant has no business keeping a connection open. One pass over the
  // connections per change, however many grants a snapshot removed.
  grants.onChange(({ removed }) => {
    const orphaned = new Set<string>();
    for (const grant of removed) {
      const identity = guestIdentity(grant.guest);
      if (!grants.hasAny(identity)) orphaned.add(identity);
    }
    if (orphaned.size === 0) return;
    for (const connection of [...rpc.connections()]) {
      if (orphaned.has(peerIdentity(connection.peer))) connection.close('no grants left');
    }
  });

  const controller = config.controller
    ? new ControllerClient({
        nodeId: config.nodeId,
        urls: config.controller.urls,
        ...(config.controller.tokenFile ? { tokenFile: config.controller.tokenFile } : {}),
        ...(config.controller.caFile ? { caFile: config.controller.caFile } : {}),
        ...(config.controller.certFile ? { certFile: config.controller.certFile } : {}),
        ...(config.controller.keyFile ? { keyFile: config.controller.keyFile } : {}),
        applier,
        softwareVersion: SOFTWARE_VERSION,
        capabilities: ['tcp', ...config.backends.map((b) => `backend:${b.type}`)].filter((v, i, all) => all.indexOf(v) === i),
        status: () => statusOf(grants, rpc, files, config),
        logger,
        ...(options.controllerBackoffMs ? { backoffInitialMs: options.controllerBackoffMs, backoffMaxMs: options.controllerBackoffMs * 8 } : {}),
      })
    : undefined;
  controller?.start();

  logger.info(
    { grants: grants.size, tcp: listeners.map((l) => l.port), controller: config.controller?.urls, version: SOFTWARE_VERSION },
    'ready',
  );

  return {
    logger,
    grants,
    files,
    applier,
    controller,
    ports: () => listeners.map((l) => l.port),
    async stop() {
      await controller?.stop();
      await Promise.all(listeners.map((l) => l.close()));
      files.close();
    },
  };
}

/** What the node tells the controller about itself. */
function statusOf(grants: GrantTable, rpc: RpcServer, files: ShareFileService, config: GatewayConfig) {
  const connectionsBy = new Map<string, number>();
  let connections = 0;
  for (const connection of rpc.connections()) {
    connections++;
    const identity = peerIdentity(connection.peer);
    connectionsBy.set(identity, (connectionsBy.get(identity) ?? 0) + 1);
  }
  const ops = files.shareOps();
  const shares = new Map<string, ShareStatus>();
  for (const grant of grants.all()) {
    const entry = shares.get(grant.share) ?? { share: grant.share, connections: 0, ops: ops.get(grant.share) ?? 0 };
    entry.connections += connectionsBy.get(guestIdentity(grant.guest)) ?? 0;
    shares.set(grant.share, entry);
  }
  // Local backends are directories: ready. Mounted backends report their health (issue 5).
  const backends = config.backends.map((b) => ({ id: b.id, type: b.type, state: 'READY' as const, reason: '' }));
  return { connections, backends, shares: [...shares.values()] };
}
