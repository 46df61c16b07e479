// The gateway's Prometheus metrics: one prom-client Registry per gateway (never the global one, so
// two gateways in one process keep apart), Node's process metrics under the same prefix, and the
// gateway's own series. Every name starts with `manila_gateway_` (DESIGN.md).
//
// Label cardinality is bounded by construction:
// - program, procedure: names of registered RPC programs and their procedures (the dispatcher never
//   reports a number a peer chose); anything that does not look like such a name, and any pair past
//   MAX_CALL_LABELS, is 'unknown'.
// - outcome: the dispatcher's five outcomes. status: the nfsstat3 names of RFC 1813 (or 'unknown').
// - transport: tcp, vsock, hybrid_vsock. source: static, controller. state: the controller client's
//   four states. backend, type: the configured backends.
// - share: the shares this node serves, which the grants bound (an operator knows the count: one
//   series per share and procedure and status seen, three more per share for bytes). forgetShare()
//   drops a share's series when its last grant goes; the series of the shares that remain are
//   never touched, so their totals stay monotonic. A share that comes back starts from zero, which
//   Prometheus' rate() and increase() read as a counter reset.
//
// Gauges that mirror state (connections, grants, controller, backends) are read from callbacks at
// scrape time, so nothing has to be kept in step and nothing can drift.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastHistogram } from './histogram.js';
import type { Logger } from 'pino';
import type { CallInfo } from '../rpc/dispatch.js';
import type { Peer } from '../rpc/types.js';
import type { NfsShareProcedure, ShareOpObserver } from '../fs/service.js';
import { DROP_REASONS, type MessageBufferStats } from '../rpc/buffers.js';
import { Nfs3Status } from '../nfs3/types.js';
import { SOFTWARE_VERSION } from '../version.js';
import { BACKEND_STATES } from '../backends/manager.js';

export const METRIC_PREFIX = 'manila_gateway_';

/** A scrape-time source's series: each label set with its value. */
type LabelledValues<L extends string> = ReadonlyArray<readonly [Partial<Record<L, string>>, number]>;

/** Latency buckets in seconds: 20 µs (a cached GETATTR) to 5 s (a hung backend shows as +Inf). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** (program, procedure) label pairs kept before new ones are reported as 'unknown'. */
export const MAX_CALL_LABELS = 256;

export const TRANSPORTS = ['tcp', 'vsock', 'hybrid_vsock'] as const;
export type TransportLabel = (typeof TRANSPORTS)[number];

export const GRANT_SOURCES = ['static', 'controller'] as const;
export const CONTROLLER_STATES = ['connecting', 'connected', 'disconnected', 'stopped'] as const;

export interface ControllerSnapshot {
  /** The controller client's state: connecting, connected, disconnected or stopped. */
  readonly state: string;
  /** The last revision applied from the controller (absent before the first). */
  readonly appliedRevision?: number | bigint | undefined;
}

export interface BackendHealth {
  readonly id: string;
  readonly type: string;
  readonly up: boolean;
  /** One of BACKEND_STATES (src/backends/manager.ts). */
  readonly state?: string;
  /** Operations running on it (stuck ones included). */
  readonly inflight?: number;
}


/**
 * Where the state gauges come from, read on every scrape. Each is optional: a gauge without a
 * source is not exported (connections and grants are then exported as zeros). A callback that
 * throws leaves its gauge out of that scrape (logged at warn when a logger is given).
 */
export interface MetricsSources {
  /** Defaults to the package version. */
  version?: string;
  /** Live connections per transport: tcp, vsock, hybrid_vsock (Peer's 'hybrid' is accepted too). */
  connectionsByTransport?: () => Readonly<Record<string, number>>;
  /** Grants held per source: static, controller. */
  grantsBySource?: () => Readonly<Record<string, number>>;
  /** Grants the controller pushed that this node could not apply (state FAILED). */
  grantsFailed?: () => number;
  /** undefined when no controller is configured: no controller series are exported. */
  controller?: () => ControllerSnapshot | undefined;
  backends?: () => readonly BackendHealth[];
  /** The native worker pool: threads running now and the most it may run. */
  workerThreads?: () => { threads: number; maxThreads: number };
  /** The READDIRPLUS listing cache: replies served from it, listings filled, bytes held. */
  listingCache?: () => { hits: number; fills: number; bytes: number };
  /** glibc's heap at the last malloc_trim (undefined before the first). */
  mallocHeap?: () => { inUseBytes: number; freeBytes: number; mmappedBytes: number } | undefined;
  /** The pool of large message buffers (READ replies, WRITE records): counts per size class. */
  messageBuffers?: () => MessageBufferStats;
  logger?: Logger;
}

export interface GatewayMetrics {
  readonly registry: Registry;
  /** The text exposition content type (for the HTTP answer). */
  readonly contentType: string;
  /** For RpcDispatcherOptions.onCall. Never throws. */
  readonly onCall: (info: CallInfo) => void;
  /** For ShareFileServiceOptions.observer. Never throws. */
  readonly observer: ShareOpObserver;
  /** One connection accepted on `transport` (tcp, vsock, hybrid_vsock; Peer's 'hybrid' too). */
  connectionAccepted(transport: string): void;
  /** Drops every series labelled with `share` (call when its last grant is revoked). */
  forgetShare(share: string): void;
  /** A guest operation on `backend` was answered NFS3ERR_JUKEBOX (its gate's bound passed). */
  backendTimeout(backend: string): void;
  /** The text exposition of every metric. */
  metrics(): Promise<string>;
}

/** Live connections per transport label, from connections that carry their peer (RpcConnection). */
export function connectionsByTransport(connections: Iterable<{ readonly peer: Peer }>): Record<TransportLabel, number> {
  const counts: Record<TransportLabel, number> = { tcp: 0, vsock: 0, hybrid_vsock: 0 };
  for (const connection of connections) counts[transportLabel(connection.peer.transport) as TransportLabel]++;
  return counts;
}

/** A transport name as a label value: tcp, vsock, hybrid_vsock, or 'unknown'. */
export function transportLabel(transport: string): TransportLabel | 'unknown' {
  switch (transport) {
    case 'tcp':
    case 'vsock':
    case 'hybrid_vsock':
      return transport;
    case 'hybrid':
      return 'hybrid_vsock';
    default:
      return 'unknown';
  }
}

/** An nfsstat3 value as a label value: its RFC 1813 name, or 'unknown'. */
export function nfsStatusLabel(status: number): string {
  const name = (Nfs3Status as unknown as Record<number, string | undefined>)[status];
  return typeof name === 'string' ? name : 'unknown';
}

const PROGRAM_LABELS: Readonly<Record<string, string>> = {
  portmap2: 'portmap',
  mount3: 'mount',
  nfs3: 'nfs3',
};
const NAME = /^[a-z][a-z0-9_]{0,31}$/;
const OUTCOMES = new Set(['ok', 'garbage', 'error', 'denied', 'unavailable']);
const NFS_PROCEDURES: ReadonlySet<string> = new Set<NfsShareProcedure>([
  'getattr', 'setattr', 'lookup', 'access', 'readlink', 'read', 'write', 'create', 'mkdir', 'symlink', 'mknod',
  'remove', 'rmdir', 'rename', 'link', 'readdir', 'readdirplus', 'fsstat', 'fsinfo', 'pathconf', 'commit',
]);

function programLabel(name: string): string {
  const known = PROGRAM_LABELS[name];
  if (known !== undefined) return known;
  const lower = name.toLowerCase();
  return NAME.test(lower) ? lower : 'unknown';
}

function procedureLabel(name: string): string {
  const lower = name.toLowerCase();
  return NAME.test(lower) ? lower : 'unknown';
}

type ShareSeries = {
  ops: Map<string, { share: string; procedure: string; status: string }>;
  /** { share } for the byte counters: one object per share, so its pending sums are found by identity. */
  byShare: { share: string };
};

/**
 * Increments counted in plain numbers per label set and handed to prom-client when it is scraped
 * (the counter's collect()): prom-client's inc() builds a hash string of the label set on every
 * call, which showed in per-request profiles. Label sets are identity-stable cached objects.
 */
class PendingIncrements<L extends object> {
  private readonly pending = new Map<L, number>();
  add(labels: L, n = 1): void {
    this.pending.set(labels, (this.pending.get(labels) ?? 0) + n);
  }
  flushInto(counter: Counter<string>): void {
    for (const [labels, n] of this.pending) counter.inc(labels as Record<string, string>, n);
    this.pending.clear();
  }
  drop(labels: L): void {
    this.pending.delete(labels);
  }
}

export function createMetrics(sources: MetricsSources = {}): GatewayMetrics {
  const registry = new Registry();
  const registers = [registry];
  const logger = sources.logger;
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });

  /** Reads a source; a throw leaves the gauge out of this scrape. */
  const read = <T>(what: string, source: () => T): { ok: true; value: T } | { ok: false } => {
    try {
      return { ok: true, value: source() };
    } catch (err) {
      logger?.warn({ err, metric: what }, 'metrics source failed');
      return { ok: false };
    }
  };

  /** Empties a gauge before a scrape refills it (prom-client's reset() leaves 0 in a label-less one). */
  const clear = (gauge: Gauge<string>): void => {
    gauge.reset();
    gauge.remove({}); // the label-less series, if any (a no-op for labelled gauges)
  };

  // ---- RPC calls (the dispatcher's onCall) -----------------------------------------------------
  const pendingCalls = new PendingIncrements<{ program: string; procedure: string; outcome: string }>();
  new Counter({
    name: `${METRIC_PREFIX}rpc_requests_total`,
    help: 'RPC calls answered, by program, procedure and outcome (ok, garbage, error, denied, unavailable)',
    labelNames: ['program', 'procedure', 'outcome'] as const,
    registers,
    collect() {
      pendingCalls.flushInto(this);
    },
  });
  // Observed on every call: prom-client's Histogram made garbage per observation (histogram.ts).
  const rpcDuration = new FastHistogram<{ program: string; procedure: string }>({
    name: `${METRIC_PREFIX}rpc_request_duration_seconds`,
    help: 'Time from receiving an RPC call to its reply being ready, by program and procedure',
    labelNames: ['program', 'procedure'],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  // (program, procedure) as reported -> label values; bounded by MAX_CALL_LABELS
  /** One (program, procedure): its histogram labels, and its counter labels per outcome (cached objects). */
  type CallLabels = {
    histogram: { program: string; procedure: string };
    withOutcome: Map<string, { program: string; procedure: string; outcome: string }>;
  };
  // program -> procedure -> labels: two lookups, no key string built per call
  const callLabels = new Map<string, Map<string, CallLabels>>();
  let callLabelCount = 0;
  const unknownCall: CallLabels = { histogram: { program: 'unknown', procedure: 'unknown' }, withOutcome: new Map() };
  const labelsOfCall = (program: string, procedure: string): CallLabels => {
    let ofProgram = callLabels.get(program);
    let labels = ofProgram?.get(procedure);
    if (labels === undefined) {
      if (callLabelCount >= MAX_CALL_LABELS) return unknownCall;
      const p = programLabel(program);
      labels = { histogram: { program: p, procedure: p === 'unknown' ? 'unknown' : procedureLabel(procedure) }, withOutcome: new Map() };
      if (ofProgram === undefined) {
        ofProgram = new Map();
        callLabels.set(program, ofProgram);
      }
      ofProgram.set(procedure, labels);
      callLabelCount++;
    }
    return labels;
  };
  const onCall = (info: CallInfo): void => {
    try {
      const labels = labelsOfCall(info.program, info.procedure);
      let counted = labels.withOutcome.get(info.outcome);
      if (counted === undefined) {
        const outcome = OUTCOMES.has(info.outcome) ? info.outcome : 'unknown';
        counted = { program: labels.histogram.program, procedure: labels.histogram.procedure, outcome };
        if (labels.withOutcome.size < 16) labels.withOutcome.set(info.outcome, counted);
      }
      pendingCalls.add(counted);
      rpcDuration.observe(labels.histogram, Math.max(0, info.durationMs) / 1000);
    } catch (err) {
      logger?.error({ err }, 'metrics: onCall failed');
    }
  };

  // ---- NFS requests per share (the share layer's observer) -----------------------------------
  const pendingOps = new PendingIncrements<{ share: string; procedure: string; status: string }>();
  const pendingRead = new PendingIncrements<{ share: string }>();
  const pendingWritten = new PendingIncrements<{ share: string }>();
  const nfsOps = new Counter({
    name: `${METRIC_PREFIX}nfs_ops_total`,
    help: 'NFSv3 requests whose file handle resolved to a share, by share, procedure and NFS status',
    labelNames: ['share', 'procedure', 'status'] as const,
    registers,
    collect() {
      pendingOps.flushInto(this);
    },
  });
  const readBytes = new Counter({
    name: `${METRIC_PREFIX}read_bytes_total`,
    help: 'Bytes returned to guests by successful NFS READs, by share',
    labelNames: ['share'] as const,
    registers,
    collect() {
      pendingRead.flushInto(this);
    },
  });
  const writtenBytes = new Counter({
    name: `${METRIC_PREFIX}written_bytes_total`,
    help: 'Bytes successful NFS WRITEs reported written, by share',
    labelNames: ['share'] as const,
    registers,
    collect() {
      pendingWritten.flushInto(this);
    },
  });
  const shares = new Map<string, ShareSeries>();
  const seriesOf = (share: string): ShareSeries => {
    let series = shares.get(share);
    if (!series) {
      series = { ops: new Map(), byShare: { share } };
      shares.set(share, series);
    }
    return series;
  };
  const observer: ShareOpObserver = {
    onOp(share, procedure, status) {
      try {
        const series = seriesOf(share);
        const key = `${procedure}\0${status}`;
        let labels = series.ops.get(key);
        if (labels === undefined) {
          labels = { share, procedure: NFS_PROCEDURES.has(procedure) ? procedure : 'unknown', status: nfsStatusLabel(status) };
          series.ops.set(key, labels);
        }
        pendingOps.add(labels);
      } catch (err) {
        logger?.error({ err }, 'metrics: onOp failed');
      }
    },
    onRead(share, bytes) {
      try {
        pendingRead.add(seriesOf(share).byShare, bytes);
      } catch (err) {
        logger?.error({ err }, 'metrics: onRead failed');
      }
    },
    onWrite(share, bytes) {
      try {
        pendingWritten.add(seriesOf(share).byShare, bytes);
      } catch (err) {
        logger?.error({ err }, 'metrics: onWrite failed');
      }
    },
  };
  const forgetShare = (share: string): void => {
    const series = shares.get(share);
    if (!series) return;
    for (const labels of series.ops.values()) {
      pendingOps.drop(labels);
      nfsOps.remove(labels);
    }
    pendingRead.drop(series.byShare);
    pendingWritten.drop(series.byShare);
    readBytes.remove({ share });
    writtenBytes.remove({ share });
    shares.delete(share);
  };

  // ---- connections ----------------------------------------------------------------------------
  const accepted = new Counter({
    name: `${METRIC_PREFIX}connections_accepted_total`,
    help: 'RPC connections accepted, by transport (tcp, vsock, hybrid_vsock)',
    labelNames: ['transport'] as const,
    registers,
  });
  for (const transport of TRANSPORTS) accepted.inc({ transport }, 0);
  new Gauge({
    name: `${METRIC_PREFIX}connections`,
    help: 'RPC connections open now, by transport (tcp, vsock, hybrid_vsock)',
    labelNames: ['transport'] as const,
    registers,
    collect() {
      clear(this);
      const counts: Record<string, number> = { tcp: 0, vsock: 0, hybrid_vsock: 0 };
      const source = sources.connectionsByTransport;
      if (source) {
        const got = read('connections', source);
        if (!got.ok) return;
        for (const [transport, n] of Object.entries(got.value)) {
          const label = transportLabel(transport);
          counts[label] = (counts[label] ?? 0) + n;
        }
      }
      for (const [transport, n] of Object.entries(counts)) this.set({ transport }, n);
    },
  });

  // ---- grants ---------------------------------------------------------------------------------
  new Gauge({
    name: `${METRIC_PREFIX}grants`,
    help: 'Grants held, by source (static: the config file; controller: pushed)',
    labelNames: ['source'] as const,
    registers,
    collect() {
      clear(this);
      const counts: Record<string, number> = { static: 0, controller: 0 };
      const source = sources.grantsBySource;
      if (source) {
        const got = read('grants', source);
        if (!got.ok) return;
        for (const [name, n] of Object.entries(got.value)) {
          const label = (GRANT_SOURCES as readonly string[]).includes(name) ? name : 'unknown';
          counts[label] = (counts[label] ?? 0) + n;
        }
      }
      for (const [name, n] of Object.entries(counts)) this.set({ source: name }, n);
    },
  });
  /** An unlabelled gauge read from `value` at scrape time (absent while the read fails). */
  const scrapeGauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers,
      collect() {
        clear(this);
        const got = read(name, value);
        if (got.ok) this.set(got.value);
      },
    });
  };
  /**
   * A labelled gauge refilled at scrape time with the label sets `value` gives (the label sets are
   * fixed by the caller, so they stay bounded); absent while the read fails.
   */
  const scrapeGaugeSets = <L extends string>(name: string, help: string, labelNames: readonly L[], value: () => LabelledValues<L>): void => {
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      registers,
      collect() {
        clear(this);
        const got = read(name, value);
        if (!got.ok) return;
        for (const [labels, n] of got.value) this.set(labels, n);
      },
    });
  };
  // A source that counts up; the counter takes the difference since the last scrape. `value` gives
  // each label set's count (the label sets are fixed by the caller, so they stay bounded).
  const scrapeCounter = <L extends string>(name: string, help: string, labelNames: readonly L[], value: () => LabelledValues<L>): void => {
    const seen = new Map<string, number>();
    new Counter({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      registers,
      collect() {
        const got = read(name, value);
        if (!got.ok) return;
        for (const [labels, count] of got.value) {
          const key = JSON.stringify(labels);
          const before = seen.get(key);
          // The first scrape exports every label set, zeros included (rate() needs the start).
          if (before === undefined || count > before) {
            this.inc(labels, Math.max(0, count - (before ?? 0)));
            seen.set(key, Math.max(count, before ?? 0));
          }
        }
      },
    });
  };
  if (sources.workerThreads) {
    const source = sources.workerThreads;
    scrapeGauge('worker_threads', 'Threads the native worker pool runs now (guests\' filesystem operations run on them)', () => source().threads);
    scrapeGauge('worker_threads_max', 'The most threads the native worker pool may start (MANILA_POOL_THREADS)', () => source().maxThreads);
  }
  if (sources.listingCache) {
    const source = sources.listingCache;
    scrapeCounter('listing_cache_hits_total', 'READDIRPLUS replies served from the listing cache', [], () => [[{}, source().hits]]);
    scrapeCounter('listing_cache_fills_total', 'Directories read whole into the listing cache', [], () => [[{}, source().fills]]);
    scrapeGauge('listing_cache_bytes', 'Memory the READDIRPLUS listing cache holds', () => source().bytes);
  }
  if (sources.mallocHeap) {
    const source = sources.mallocHeap;
    // The RSS alone cannot tell a leak from fragmentation: in_use grows with the first, free with
    // the second (the soak bench records both).
    scrapeGaugeSets('malloc_heap_bytes', 'glibc malloc at the last trim (every 10 s), over all arenas: in_use (allocated), free (kept by glibc, not all of it resident), mmapped (large blocks mapped on their own)', ['state'], () => {
      const heap = source();
      return heap ? [[{ state: 'in_use' }, heap.inUseBytes], [{ state: 'free' }, heap.freeBytes], [{ state: 'mmapped' }, heap.mmappedBytes]] : [];
    });
  }
  if (sources.messageBuffers) {
    const source = sources.messageBuffers;
    const classes = ['medium', 'large'] as const;
    // live against free tells garbage waiting for the collector (or a pool holding too much) from
    // growth elsewhere in the external memory (the soak bench records both).
    scrapeGaugeSets('message_buffers', 'Pooled message buffers (medium: 68 KiB, large: 1.06 MiB) by state: free (in the pool), live (made and not yet freed by the garbage collector: in use, free, or garbage)', ['size_class', 'state'], () => {
      const stats = source();
      return classes.flatMap((c) => [[{ size_class: c, state: 'free' }, stats[c].free], [{ size_class: c, state: 'live' }, stats[c].live]] as const);
    });
    scrapeCounter('message_buffers_made_total', 'Pooled message buffers allocated (the steady state makes none)', ['size_class'],
      () => {
        const stats = source();
        return classes.map((c) => [{ size_class: c }, stats[c].made] as const);
      });
    scrapeCounter('message_buffers_dropped_total', 'Message buffers let go to the garbage collector: given back to a full pool, given back while a native call still used them, or idle in the pool', ['size_class', 'reason'],
      () => {
        const stats = source();
        return classes.flatMap((c) => DROP_REASONS.map((r) => [{ size_class: c, reason: r }, stats[c].dropped[r]] as const));
      });
  }
  if (sources.grantsFailed) scrapeGauge('grants_failed', 'Grants pushed by the controller that this node could not apply', sources.grantsFailed);

  // ---- controller -----------------------------------------------------------------------------
  if (sources.controller) {
    const source = sources.controller;
    const current = (): ControllerSnapshot | undefined => {
      const got = read('controller', source);
      return got.ok ? got.value : undefined;
    };
    new Gauge({
      name: `${METRIC_PREFIX}controller_connected`,
      help: '1 while the websocket session to the controller is up, else 0',
      registers,
      collect() {
        clear(this);
        const now = current();
        if (now) this.set(now.state === 'connected' ? 1 : 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}controller_applied_revision`,
      help: 'The last controller revision this node applied',
      registers,
      collect() {
        clear(this);
        const now = current();
        if (now && now.appliedRevision !== undefined) this.set(Number(now.appliedRevision));
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}controller_state`,
      help: 'The controller client state: 1 for the current one (connecting, connected, disconnected, stopped)',
      labelNames: ['state'] as const,
      registers,
      collect() {
        clear(this);
        const now = current();
        if (!now) return;
        const state = (CONTROLLER_STATES as readonly string[]).includes(now.state) ? now.state : 'unknown';
        for (const s of CONTROLLER_STATES) this.set({ state: s }, s === state ? 1 : 0);
        if (state === 'unknown') this.set({ state }, 1);
      },
    });
  }

  // ---- backends -------------------------------------------------------------------------------
  const backendTimeouts = new Counter({
    name: `${METRIC_PREFIX}backend_timeouts_total`,
    help: 'Guest operations answered NFS3ERR_JUKEBOX because their backend did not answer within op_timeout_ms (or hangs), by backend id',
    labelNames: ['backend'] as const,
    registers,
  });
  const backendIds = new Set<string>();
  if (sources.backends) {
    const source = sources.backends;
    // Known backends start at zero, so rate() sees the first timeout.
    const initial = read('backend_timeouts_total', source);
    if (initial.ok) for (const backend of initial.value) {
      backendIds.add(backend.id);
      backendTimeouts.inc({ backend: backend.id }, 0);
    }
    scrapeGaugeSets('backend_state', '1 for the state a backend is in (idle, mounting, ready, unavailable, hung), else 0, by backend id', ['backend', 'state'],
      () => source().flatMap((backend) => BACKEND_STATES.map((state) => [{ backend: backend.id, state }, backend.state === state ? 1 : 0] as const)));
    scrapeGaugeSets('backend_ops_in_flight', 'Operations running on a backend now, including those already answered JUKEBOX and still stuck in it, by backend id', ['backend'],
      () => source().map((backend) => [{ backend: backend.id }, backend.inflight ?? 0] as const));
    scrapeGaugeSets('backend_up', '1 when a backend is healthy (mounted and answering, or idle: not needed and not mounted), else 0, by backend id and type', ['backend', 'type'],
      () => source().map((backend) => [{ backend: backend.id, type: backend.type }, backend.up ? 1 : 0] as const));
  }

  // ---- build ----------------------------------------------------------------------------------
  const build = new Gauge({
    name: `${METRIC_PREFIX}build_info`,
    help: 'Always 1; the version label is the running manila-gateway version',
    labelNames: ['version'] as const,
    registers,
  });
  build.set({ version: sources.version ?? SOFTWARE_VERSION }, 1);

  return {
    registry,
    contentType: registry.contentType,
    onCall,
    observer,
    connectionAccepted(transport: string): void {
      accepted.inc({ transport: transportLabel(transport) });
    },
    forgetShare,
    backendTimeout(backend: string): void {
      // only configured backends: the label set stays bounded
      if (backendIds.size === 0 || backendIds.has(backend)) backendTimeouts.inc({ backend });
    },
    metrics: () => registry.metrics(),
  };
}
