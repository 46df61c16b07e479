// Loads and validates the YAML config. Every problem is reported with the field it is about
// (`grants[1].access: must be one of rw, ro`), all of them at once, and nothing is half-applied.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { Ajv } from 'ajv';
import { parseDocument } from 'yaml';
import { configSchema } from './schema.js';
import type { Grant } from '../grants/types.js';
import { GrantError, GrantTable } from '../grants/table.js';
import { grantFromDocument, type GrantDocument } from '../grants/document.js';
import { describeAjvErrors } from './describe.js';
import { parseBackend, type BackendConfig } from '../backends/config.js';

export interface VsockListen {
  /** vsock port (RFC-free: the hypervisor's guest->host port) */
  port: number;
  /** local CID to bind (default VMADDR_CID_ANY) */
  cid?: number;
}

/** A per-VM UNIX socket (Firecracker / Cloud Hypervisor hybrid vsock): who connects is `guest`. */
export interface HybridVsockListen {
  path: string;
  guest: string;
  /** Socket file owner and group (names or ids; default: the daemon's) and mode (default 0600). */
  owner?: string | number;
  group?: string | number;
  mode: number;
}

export interface MetricsConfig {
  host: string;
  port: number;
}

export interface TcpListen {
  host: string;
  port: number;
}

export type { BackendConfig } from '../backends/config.js';

export interface Limits {
  idleTimeoutMs: number;
  /** On SIGTERM, how long connections may take to answer the calls they received. */
  drainTimeoutMs: number;
  maxRecordBytes: number;
  maxCallsInFlight: number;
}

export interface ControllerConfig {
  /** Tried in order, failing over to the next. */
  urls: string[];
  tokenFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface GatewayConfig {
  nodeId: string;
  stateDir: string;
  /** Where mounted backends are mounted (<runtimeDir>/backends/<id>). */
  runtimeDir: string;
  logLevel: string;
  listen: { tcp: TcpListen[]; vsock: VsockListen[]; hybridVsock: HybridVsockListen[] };
  metrics?: MetricsConfig;
  limits: Limits;
  backends: BackendConfig[];
  grants: Grant[];
  controller?: ControllerConfig;
}

/** systemd's RuntimeDirectory=manila-gateway: gone at reboot, as mounts are. */
export const DEFAULT_RUNTIME_DIR = '/run/manila-gateway';

export const DEFAULT_LIMITS: Limits = {
  idleTimeoutMs: 360_000,
  drainTimeoutMs: 10_000,
  maxRecordBytes: 1024 * 1024 + 64 * 1024,
  maxCallsInFlight: 64,
};

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly problems: string[],
    readonly source: string,
  ) {
    super(`${source}: invalid config:\n  ${problems.join('\n  ')}`);
  }
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(configSchema);

/** Validates a parsed document; `source` names it in messages. Throws ConfigError. */
export function parseConfig(raw: unknown, source: string, baseDir = process.cwd()): GatewayConfig {
  if (!validate(raw)) {
    const problems = describeAjvErrors(validate.errors);
    throw new ConfigError(problems, source);
  }
  const doc = raw as Record<string, any>;
  const problems: string[] = [];

  const backends: BackendConfig[] = [];
  const backendIds = new Set<string>();
  (doc.backends ?? []).forEach((backend: Record<string, any>, i: number) => {
    const at = `backends[${i}]`;
    if (backendIds.has(backend.id)) problems.push(`${at}.id: duplicate backend id ${backend.id}`);
    backendIds.add(backend.id);
    const parsed = parseBackend(backend, at, baseDir, problems);
    if (parsed) backends.push(parsed);
  });

  const grants: Grant[] = [];
  const grantIds = new Set<string>();
  (doc.grants ?? []).forEach((grant: Record<string, any>, i: number) => {
    const at = `grants[${i}]`;
    if (grantIds.has(grant.id)) problems.push(`${at}.id: duplicate grant id ${grant.id}`);
    grantIds.add(grant.id);
    if (!backendIds.has(grant.backend)) problems.push(`${at}.backend: no backend with id ${grant.backend}`);
    grants.push({ ...grantFromDocument(grant as GrantDocument, at, problems), source: 'static' });
  });
  // The grant table's own rules (one place per share, no nested shares, one grant per guest and
  // share), reported against the grant that breaks them.
  const table = new GrantTable();
  grants.forEach((grant, i) => {
    if (grantIds.size !== grants.length && table.get(grant.id)) return; // duplicate id: reported above
    try {
      table.upsert(grant);
    } catch (error) {
      if (!(error instanceof GrantError)) throw error;
      const field = { GRANT_DUPLICATE_ID: 'id', GRANT_SHARE_CONFLICT: 'path', GRANT_DUPLICATE_GUEST: 'guest', GRANT_SHARE_NESTED: 'path' }[error.code];
      problems.push(`grants[${i}].${field}: ${error.message}`);
    }
  });

  const tcp: TcpListen[] = (doc.listen.tcp ?? []).map((l: TcpListen, i: number) => {
    if (isIP(l.host) === 0 && l.host !== 'localhost') problems.push(`listen.tcp[${i}].host: ${l.host} is not an IP address`);
    return { host: l.host, port: l.port };
  });
  const vsock: VsockListen[] = (doc.listen.vsock ?? []).map((l: VsockListen) => (l.cid === undefined ? { port: l.port } : { port: l.port, cid: l.cid }));
  const hybridVsock: HybridVsockListen[] = (doc.listen.hybrid_vsock ?? []).map((l: Record<string, any>, i: number) => {
    const socketPath = path.resolve(baseDir, l.path);
    if (Buffer.byteLength(socketPath) > 107) problems.push(`listen.hybrid_vsock[${i}].path: ${socketPath} is longer than a UNIX socket path may be (107 bytes)`);
    const listen: HybridVsockListen = { path: socketPath, guest: l.guest, mode: l.mode !== undefined ? parseInt(l.mode, 8) : 0o600 };
    if (l.owner !== undefined) listen.owner = l.owner;
    if (l.group !== undefined) listen.group = l.group;
    return listen;
  });
  const socketPaths = new Set<string>();
  hybridVsock.forEach((l, i) => {
    if (socketPaths.has(l.path)) problems.push(`listen.hybrid_vsock[${i}].path: ${l.path} is given twice`);
    socketPaths.add(l.path);
  });
  if (tcp.length + vsock.length + hybridVsock.length === 0 && problems.length === 0) {
    problems.push('listen: needs at least one listener (listen.tcp, listen.vsock or listen.hybrid_vsock)');
  }
  const metrics = doc.metrics ? { host: doc.metrics.host ?? '127.0.0.1', port: doc.metrics.port } : undefined;
  if (metrics && isIP(metrics.host) === 0 && metrics.host !== 'localhost') problems.push(`metrics.host: ${metrics.host} is not an IP address`);

  const controller = doc.controller ? parseController(doc.controller, baseDir, problems) : undefined;

  if (problems.length > 0) throw new ConfigError(problems, source);
  const limits = doc.limits ?? {};
  return {
    nodeId: doc.node_id,
    stateDir: path.resolve(baseDir, doc.state_dir),
    runtimeDir: path.resolve(baseDir, doc.runtime_dir ?? DEFAULT_RUNTIME_DIR),
    logLevel: doc.log_level ?? 'info',
    listen: { tcp, vsock, hybridVsock },
    ...(metrics ? { metrics } : {}),
    limits: {
      idleTimeoutMs: limits.idle_timeout_s !== undefined ? limits.idle_timeout_s * 1000 : DEFAULT_LIMITS.idleTimeoutMs,
      maxRecordBytes: limits.max_record_bytes ?? DEFAULT_LIMITS.maxRecordBytes,
      maxCallsInFlight: limits.max_calls_in_flight ?? DEFAULT_LIMITS.maxCallsInFlight,
      drainTimeoutMs: limits.drain_timeout_s !== undefined ? limits.drain_timeout_s * 1000 : DEFAULT_LIMITS.drainTimeoutMs,
    },
    backends,
    grants,
    ...(controller ? { controller } : {}),
  };
}

/** `controller:`: where the controller is and how to prove who we are (DESIGN.md). */
function parseController(raw: Record<string, any>, baseDir: string, problems: string[]): ControllerConfig {
  if ((raw.url === undefined) === (raw.urls === undefined)) problems.push('controller: needs exactly one of url, urls');
  const urls: string[] = raw.urls ?? (raw.url !== undefined ? [raw.url] : []);
  const field = raw.urls ? (i: number) => `controller.urls[${i}]` : () => 'controller.url';
  urls.forEach((url, i) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      problems.push(`${field(i)}: ${url} is not a URL`);
      return;
    }
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') problems.push(`${field(i)}: must start with ws:// or wss://`);
  });
  const config: ControllerConfig = { urls };
  const files = [
    ['token_file', 'tokenFile'],
    ['ca_file', 'caFile'],
    ['cert_file', 'certFile'],
    ['key_file', 'keyFile'],
  ] as const;
  for (const [key, name] of files) {
    if (raw[key] === undefined) continue;
    const file = path.resolve(baseDir, raw[key]);
    config[name] = file;
    try {
      const content = readFileSync(file, 'utf8');
      if (key === 'token_file' && content.trim() === '') problems.push(`controller.token_file: ${file} is empty`);
    } catch (error) {
      problems.push(`controller.${key}: cannot read ${file} (${(error as NodeJS.ErrnoException).code})`);
    }
  }
  if ((raw.cert_file === undefined) !== (raw.key_file === undefined)) problems.push('controller: cert_file and key_file go together');
  const tlsOnly = ['ca_file', 'cert_file', 'key_file'].filter((key) => raw[key] !== undefined);
  if (tlsOnly.length > 0 && urls.some((url) => !url.startsWith('wss://'))) {
    problems.push(`controller.${tlsOnly[0]}: only applies to wss:// urls`);
  }
  return config;
}

/** Reads, parses and validates a config file. Throws ConfigError naming the file and each field. */
export function loadConfig(file: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`], file);
  }
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      document.errors.map((e) => `YAML ${e.code} at line ${e.linePos?.[0].line ?? '?'}: ${e.message.split('\n')[0]}`),
      file,
    );
  }
  return parseConfig(document.toJS(), file, path.dirname(path.resolve(file)));
}
