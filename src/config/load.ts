// Loads and validates the YAML config. Every problem is reported with the field it is about
// (`grants[1].access: must be one of rw, ro`), all of them at once, and nothing is half-applied.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { configSchema } from './schema.js';
import { DEFAULT_ANON_ID, type Grant, type GuestSelector } from '../grants/types.js';
import { GrantError, GrantTable, normalizeSharePath } from '../grants/table.js';

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

export interface GatewayConfig {
  nodeId: string;
  stateDir: string;
  logLevel: string;
  listen: { tcp: TcpListen[] };
  limits: Limits;
  backends: BackendConfig[];
  grants: Grant[];
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

/** `/grants/0/access` -> `grants[0].access` */
function fieldName(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  let name = '';
  for (const part of parts) name += /^\d+$/.test(part) ? `[${part}]` : name ? `.${part}` : part;
  return name || '(top level)';
}

function describe(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return `${fieldName(error.instancePath, String(params.missingProperty))}: is required`;
    case 'additionalProperty':
    case 'additionalProperties':
      return `${fieldName(error.instancePath, String(params.additionalProperty))}: is not a known field`;
    case 'enum':
      return `${fieldName(error.instancePath)}: must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return `${fieldName(error.instancePath)}: must be letters, digits, '.', '_' or '-' (at most 128, not starting with a symbol)`;
    case 'minProperties':
    case 'maxProperties':
      return `${fieldName(error.instancePath)}: must have exactly one of tcp, cid, vm`;
    default:
      return `${fieldName(error.instancePath)}: ${error.message ?? 'is invalid'}`;
  }
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(configSchema);

/** Features whose config shape is accepted but which this build does not run yet. */
const NOT_YET = [
  ['listen.vsock', 'vsock listeners are not available in this build yet'],
  ['listen.hybrid_vsock', 'hybrid vsock listeners are not available in this build yet'],
  ['metrics', 'the metrics endpoint is not available in this build yet'],
  ['controller', 'the controller channel is not available in this build yet'],
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
    const problems = [...new Set((validate.errors ?? []).map(describe))];
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
    const pathProblem = checkSharePath(grant.path);
    if (pathProblem) problems.push(`${at}.path: ${pathProblem}`);
    const guest = grant.guest as GuestSelector;
    if ('tcp' in guest && isIP(guest.tcp) === 0) problems.push(`${at}.guest.tcp: ${guest.tcp} is not an IP address`);
    grants.push({
      id: grant.id,
      share: grant.share,
      backend: grant.backend,
      path: normalizeSharePath(grant.path),
      guest,
      access: grant.access ?? 'rw',
      squash: grant.squash ?? 'root',
      anonUid: grant.anon_uid ?? DEFAULT_ANON_ID,
      anonGid: grant.anon_gid ?? DEFAULT_ANON_ID,
      source: 'static',
    });
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
  };
}

/** A share's path inside its backend: relative, no `..`, no empty or `.` components. */
export function checkSharePath(sharePath: string): string | undefined {
  if (sharePath.includes('\0')) return 'must not contain a NUL byte';
  const parts = sharePath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return "must not contain '..'";
  return undefined;
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
