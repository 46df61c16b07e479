// Assembles the daemon: config -> grant table, share filesystem layer, the three programs on one
// dispatcher, and the listeners. Everything a test or the CLI needs to start and stop a gateway.
import { pino, type Logger } from 'pino';
import type { GatewayConfig } from './config/load.js';
import { GrantTable } from './grants/table.js';
import { guestIdentity } from './grants/types.js';
import { fsBridge, type MallocTrim } from './native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from './fs/handle.js';
import { ShareFileService } from './fs/service.js';
import { RpcDispatcher } from './rpc/dispatch.js';
import { RpcServer } from './rpc/server.js';
import { largeBuffers } from './rpc/buffers.js';
import { createPortmapProgram } from './portmap/program.js';
import { createMountProgram } from './mount/program.js';
import { createNfsProgram } from './nfs3/program.js';
import { ListenerSet } from './listeners.js';
import { connectionsByTransport, createMetrics, type GatewayMetrics } from './metrics/registry.js';
import { readinessOf, startMetricsServer } from './metrics/http.js';
import type { RpcConnection } from './rpc/connection.js';
import { peerIdentity } from './rpc/types.js';
import { GrantStore } from './grants/store.js';
import { GrantApplier } from './control/applier.js';
import { ControllerClient } from './control/client.js';
import type { ShareStatus } from './control/protocol.js';
import { SOFTWARE_VERSION } from './version.js';
import { BackendManager, type BackendStatus } from './backends/manager.js';


/** How often free malloc memory is handed back to the kernel (malloc_trim). */
const TRIM_INTERVAL_MS = 10_000;
export interface Gateway {
  readonly logger: Logger;
  readonly grants: GrantTable;
  readonly files: ShareFileService;
  /** Applies the controller's grants (and serves the stored ones at start). */
  readonly applier: GrantApplier;
  /** The controller channel, when the config names a controller. */
  readonly controller: ControllerClient | undefined;
  /** Backend mounts, health and admission gates. */
  readonly backends: BackendManager;
  /** The bound TCP ports, in config order. */
  ports(): number[];
  /** The metrics endpoint's port, when `metrics:` is configured. */
  metricsPort(): number | undefined;
  readonly metrics: GatewayMetrics;
  /** Every listener: transport and where (host/port, cid/port, path/guest). */
  listeners(): Array<{ transport: string } & Record<string, unknown>>;
  connections(): RpcConnection[];
  /**
   * Applies a new config (SIGHUP): log level, listeners (new opened, removed closed, unchanged
   * kept with their connections) and static grants. node_id, state_dir, backends and controller
   * change only on restart (reported in `restartOnly`).
   */
  reload(config: GatewayConfig): Promise<{ opened: string[]; closed: string[]; failed: string[]; restartOnly: string[] }>;
  /** Stops accepting, lets connections answer what they received for up to `drainMs`, then closes all. */
  shutdown(drainMs: number): Promise<void>;
  /** shutdown(0). */
  stop(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** First controller reconnect delay (tests shorten it); the cap is 8x. */
  controllerBackoffMs?: number;
  /** Tests only: environment of the mount commands, and the fstypes a fake mount shows. */
  backendEnv?: NodeJS.ProcessEnv;
  backendFstypes?: ConstructorParameters<typeof BackendManager>[0]['fstypesOf'];
}

export async function startGateway(config: GatewayConfig, options: StartOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId } });
  const native = fsBridge();
  const fileLimit = native.raiseFileLimit();
  const codec = new HandleCodec(loadHandleSecret(config.stateDir));

  const grants = new GrantTable();
  // What exists only further down (listeners, controller, share layer, applier), for callbacks.
  const late: { rpc?: RpcServer; controller?: ControllerClient | undefined; files?: ShareFileService; applier?: GrantApplier } = {};
  // Mounted when the first grant needs them; every share operation passes its backend's gate.
  const backendManager = new BackendManager({
    backends: config.backends,
    runtimeDir: config.runtimeDir,
    logger,
    gfid: native,
    onTearDown: (backend) => late.files?.retireBackend(backend),
    onReady: (backend) => void late.applier?.retryUnavailable(backend),
    onTimeout: (backend) => metrics.backendTimeout(backend),
    ...(options.backendEnv ? { env: options.backendEnv } : {}),
    ...(options.backendFstypes ? { fstypesOf: options.backendFstypes } : {}),
  });
  // A backend's reference count is the number of grants on it.
  grants.onChange(({ removed, added }) => {
    for (const grant of removed) backendManager.use(grant.backend, -1);
    for (const grant of added) backendManager.use(grant.backend, +1);
  });
  let lastTrim: MallocTrim | undefined; // set by the trim timer below
  const metrics = createMetrics({
    version: SOFTWARE_VERSION,
    connectionsByTransport: () => connectionsByTransport(late.rpc?.connections() ?? []),
    grantsBySource: () => {
      const counts = { static: 0, controller: 0 };
      for (const grant of grants.all()) counts[grant.source]++;
      return counts;
    },
    grantsFailed: () => applier.results().filter((r) => r.state === 'FAILED').length,
    ...(config.controller ? { controller: () => (late.controller ? { state: late.controller.state, appliedRevision: applier.revision } : undefined) } : {}),
    backends: () => backendManager.statuses(),
    workerThreads: () => native.poolStats(),
    listingCache: () => native.listingCacheStats(),
    mallocHeap: () => lastTrim,
    messageBuffers: () => largeBuffers.stats(),
    logger,
  });
  // A share with no grant is reported as "unknown": old handles of revoked shares must not bring
  // their series back (the share label stays bounded by the current grants).
  const shareLabel = (share: string): string => (grants.location(share) ? share : 'unknown');
  const files = new ShareFileService({
    native,
    grants,
    backends: {
      rootOf: (id) => backendManager.rootOf(id),
      gateOf: (id) => backendManager.gateOf(id),
      rootShareAllowed: (id) => backendManager.rootShareAllowed(id),
      listingCacheMsOf: (id) => backendManager.listingCacheMsOf(id),
    },
    codec,
    logger,
    observer: {
      onOp: (share, procedure, status) => metrics.observer.onOp(shareLabel(share), procedure, status),
      onRead: (share, bytes) => metrics.observer.onRead(shareLabel(share), bytes),
      onWrite: (share, bytes) => metrics.observer.onWrite(shareLabel(share), bytes),
    },
    // leave room for connections and the daemon's own files
    cacheLimit: Math.max(256, Math.min(65536, Math.floor(fileLimit / 2))),
  });

  // Fail static: the stored grants of the controller are served before it is even reached; a
  // grant whose share cannot be opened is reported and the others are served.
  const applier = new GrantApplier({
    grants,
    staticGrants: config.grants,
    store: new GrantStore(config.stateDir),
    hasBackend: (id) => backendManager.has(id),
    openShare: (share) => files.openShare(share),
    logger,
  });
  late.files = files;
  late.applier = applier;
  backendManager.start();
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

  const dispatcher = new RpcDispatcher({ logger, onCall: metrics.onCall });
  dispatcher.register(createPortmapProgram());
  dispatcher.register(createMountProgram(files));
  dispatcher.register(createNfsProgram(files));

  let current = config;
  let shuttingDown = false;
  // Reloads, listener retries and the shutdown run one at a time.
  let queue: Promise<unknown> = Promise.resolve();
  const serialize = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work);
    queue = next.catch(() => undefined);
    return next;
  };

  // One server for every listener: it knows every connection, whatever transport it came on.
  const rpc = new RpcServer({
    dispatcher,
    logger,
    onAccept: (peer) => metrics.connectionAccepted(peer.transport),
    // Large READs go out of a pipe spliced into the socket (no copy of the data through user space).
    connection: { splicer: { send: (...args) => native.sendSpliced(...args), cancel: (id) => native.cancelSpliced(id) } },
  });
  late.rpc = rpc;
  const listeners = new ListenerSet(rpc, logger);
  const first = await listeners.apply(config, true);
  // A hybrid socket that could not be bound (its VMM's directory not there yet, or something else
  // at the path) is tried again every 10 s until it binds; the other guests are served meanwhile.
  let retryTimer: NodeJS.Timeout | undefined;
  const retryFailed = (failed: string[]) => {
    clearInterval(retryTimer);
    if (failed.length === 0) return;
    retryTimer = setInterval(() => {
      if (shuttingDown) return;
      void serialize(async () => {
        const again = await listeners.apply(current, false);
        if (again.failed.length === 0) clearInterval(retryTimer);
      });
    }, 10_000);
    retryTimer.unref();
  };
  // A share with no grant left takes its series with it: the share label stays bounded by the grants.
  grants.onChange(({ removed }) => {
    for (const grant of removed) if (!grants.location(grant.share)) metrics.forgetShare(grant.share);
  });

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
        ...config.controller, // urls and the credential files, under the client's names
        applier,
        softwareVersion: SOFTWARE_VERSION,
        capabilities: [...new Set(['tcp', 'vsock', 'hybrid_vsock', 'metrics', ...config.backends.map((b) => `backend:${b.type}`)])],
        status: () => statusOf(grants, rpc, files, backendManager.statuses()),
        logger,
        ...(options.controllerBackoffMs ? { backoffInitialMs: options.controllerBackoffMs, backoffMaxMs: options.controllerBackoffMs * 8 } : {}),
      })
    : undefined;
  late.controller = controller;
  controller?.start();

  const metricsServer = config.metrics
    ? await startMetricsServer({
        host: config.metrics.host,
        port: config.metrics.port,
        metrics,
        ready: () =>
          readinessOf({ listenersBound: listeners.all().length > 0 && !shuttingDown, grantsLoaded: true, backends: backendManager.statuses() }),
        logger,
      })
    : undefined;

  logger.info(
    { grants: grants.size, tcp: tcpPorts(listeners), controller: config.controller?.urls, version: SOFTWARE_VERSION },
    'ready',
  );

  // Grants refused because their backend could not be mounted are tried again; the manager's
  // backoff (1 s doubling to 60 s) decides when a mount is really attempted.
  const unavailableTimer = setInterval(() => void applier.retryUnavailable(), 5_000);
  unavailableTimer.unref();

  // Free memory glibc keeps in its arenas goes back to the kernel every few seconds (trimMemory
  // in native-bridges/src/handles.cc says why): RSS follows what is in use, not its history.
  const trimTimer = setInterval(() => {
    native.trimMemory().then(
      (trim) => {
        lastTrim = trim;
        logger.debug({ released: trim.released, ms: Math.round(trim.seconds * 1000) }, 'malloc_trim');
      },
      () => undefined,
    );
  }, TRIM_INTERVAL_MS);
  trimTimer.unref();

  let stopping: Promise<void> | undefined;
  retryFailed(first.failed);
  const gateway: Gateway = {
    logger,
    grants,
    files,
    applier,
    controller,
    backends: backendManager,
    ports: () => tcpPorts(listeners),
    metricsPort: () => metricsServer?.port,
    metrics,
    listeners: () => listeners.all().map((l) => ({ transport: l.transport, ...l.where })),
    connections: () => [...rpc.connections()],
    reload(next) {
      return serialize(() => reload(next));
    },
    shutdown(drainMs) {
      shuttingDown = true; // a reload still queued sees it and does nothing
      stopping ??= serialize(() => shutdown(drainMs));
      return stopping;
    },
    stop() {
      return gateway.shutdown(0);
    },
  };

  async function reload(next: GatewayConfig) {
    if (shuttingDown) return { opened: [], closed: [], failed: [], restartOnly: [] };
    const restartOnly = RESTART_ONLY.filter(([, changed]) => changed(current, next)).map(([field]) => field);
    if (restartOnly.length > 0) logger.warn({ fields: restartOnly }, 'reload: these settings change only on restart');
    logger.level = next.logLevel;
    const result = await listeners.apply(next, false);
    await applier.replaceStatic(next.grants);
    // What a reload cannot change stays as it runs, so the next reload warns about it again.
    const { metrics: _ignored, controller: _ignoredToo, ...reloadable } = next;
    current = {
      ...reloadable,
      nodeId: current.nodeId,
      stateDir: current.stateDir,
      runtimeDir: current.runtimeDir,
      backends: current.backends,
      ...(current.controller ? { controller: current.controller } : {}),
      ...(current.metrics ? { metrics: current.metrics } : {}),
    };
    retryFailed(result.failed);
    logger.info({ ...result, grants: grants.size, logLevel: next.logLevel }, 'reloaded');
    return { ...result, restartOnly };
  }

  async function shutdown(drainMs: number): Promise<void> {
    clearInterval(retryTimer);
    listeners.stopAccepting();
    await controller?.stop();
    // Calls already received are answered, up to drainMs; what is still running then is cut.
    const open = [...rpc.connections()];
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.all(open.map((c) => c.drain())).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), drainMs))),
    ]);
    clearTimeout(timer);
    const cut = [...rpc.connections()].length;
    await listeners.closeAll(drained ? 'stopped' : 'drain timed out');
    clearInterval(unavailableTimer);
    clearInterval(trimTimer);
    files.close();
    await backendManager.stop();
    await metricsServer?.close();
    logger.info({ connections: open.length, cut }, drained ? 'drained' : 'drain timed out; remaining connections closed');
  }
  return gateway;
}

/** What the node tells the controller about itself. */
function statusOf(grants: GrantTable, rpc: RpcServer, files: ShareFileService, backendStatuses: BackendStatus[]) {
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
  const backends = backendStatuses.map((b) => ({
    id: b.id,
    type: b.type,
    state: b.state === 'hung' ? ('HUNG' as const) : b.up ? ('READY' as const) : ('UNAVAILABLE' as const),
    reason: b.reason,
  }));
  return { connections, backends, shares: [...shares.values()] };
}

function tcpPorts(listeners: ListenerSet): number[] {
  return listeners.all().filter((l) => l.transport === 'tcp').map((l) => l.where.port as number);
}

/** Settings a reload cannot change in a running daemon, and how to tell they changed. */
const RESTART_ONLY: Array<[string, (a: GatewayConfig, b: GatewayConfig) => boolean]> = [
  ['node_id', (a, b) => a.nodeId !== b.nodeId],
  ['state_dir', (a, b) => a.stateDir !== b.stateDir],
  ['runtime_dir', (a, b) => a.runtimeDir !== b.runtimeDir],
  ['backends', (a, b) => JSON.stringify(a.backends) !== JSON.stringify(b.backends)],
  ['controller', (a, b) => JSON.stringify(a.controller) !== JSON.stringify(b.controller)],
  ['metrics', (a, b) => JSON.stringify(a.metrics) !== JSON.stringify(b.metrics)],
];
