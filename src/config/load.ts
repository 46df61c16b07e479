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

export interface TcpListen {
  host: string;
  port: number;
}

export interface BackendConfig {
  id: string;
  type: 'local';
  /** Absolute directory holding the backend's shares. */
  path: string;
}

export interface Limits {
  idleTimeoutMs: number;
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
  logLevel: string;
  listen: { tcp: TcpListen[] };
  limits: Limits;
  backends: BackendConfig[];
  grants: Grant[];
  controller?: ControllerConfig;
}

export const DEFAULT_LIMITS: Limits = {
  idleTimeoutMs: 360_000,
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

/** Features whose config shape is accepted but which this build does not run yet. */
const NOT_YET = [
  ['listen.vsock', 'vsock listeners are not available in this build yet'],
  ['listen.hybrid_vsock', 'hybrid vsock listeners are not available in this build yet'],
  ['metrics', 'the metrics endpoint is not available in this build yet'],
] as const;

function lookupPath(root: unknown, dotted: string): unknown {
  let value: unknown = root;
  for (const key of dotted.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Validates a parsed document; `source` names it in messages. Throws ConfigError. */
export function parseConfig(raw: unknown, source: string, baseDir = process.cwd()): GatewayConfig {
  if (!validate(raw)) {
    const problems = describeAjvErrors(validate.errors);
    throw new ConfigError(problems, source);
  }
  const doc = raw as Record<string, any>;
  const problems: string[] = [];
  for (const [field, why] of NOT_YET) {
    if (lookupPath(doc, field) !== undefined) problems.push(`${field}: ${why}`);
  }

  const backends: BackendConfig[] = [];
  const backendIds = new Set<string>();
  (doc.backends ?? []).forEach((backend: Record<string, any>, i: number) => {
    const at = `backends[${i}]`;
    if (backendIds.has(backend.id)) problems.push(`${at}.id: duplicate backend id ${backend.id}`);
    backendIds.add(backend.id);
    if (backend.type !== 'local') {
      problems.push(`${at}.type: backend type ${backend.type} is not available in this build yet (only local)`);
      return;
    }
    for (const key of Object.keys(backend)) {
      if (!['id', 'type', 'path'].includes(key)) problems.push(`${at}.${key}: is not a known field for a local backend`);
    }
    if (typeof backend.path !== 'string') {
      problems.push(`${at}.path: is required for a local backend`);
      return;
    }
    backends.push({ id: backend.id, type: 'local', path: path.resolve(baseDir, backend.path) });
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
  if (tcp.length === 0 && problems.length === 0) problems.push('listen: needs at least one listener (listen.tcp)');

  const controller = doc.controller ? parseController(doc.controller, baseDir, problems) : undefined;

  if (problems.length > 0) throw new ConfigError(problems, source);
  const limits = doc.limits ?? {};
  return {
    nodeId: doc.node_id,
    stateDir: path.resolve(baseDir, doc.state_dir),
    logLevel: doc.log_level ?? 'info',
    listen: { tcp },
    limits: {
      idleTimeoutMs: limits.idle_timeout_s !== undefined ? limits.idle_timeout_s * 1000 : DEFAULT_LIMITS.idleTimeoutMs,
      maxRecordBytes: limits.max_record_bytes ?? DEFAULT_LIMITS.maxRecordBytes,
      maxCallsInFlight: limits.max_calls_in_flight ?? DEFAULT_LIMITS.maxCallsInFlight,
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
