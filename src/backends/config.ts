// The `backends:` section of the config file: one parser per backend type, each naming the field
// it refuses. The strings here end up as arguments of mount commands (never through a shell), so
// they are held to the characters their kind of value can have. Secrets are given only by file.
import path from 'node:path';

export const BACKEND_TYPES = ['local', 'cephfs', 'glusterfs', 'gpfs', 'nfs'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** How a backend is used, whatever its type (DESIGN.md "Backend mounts"). */
export interface BackendCommon {
  id: string;
  /** Operations running at once on this backend (the rest wait, within opTimeoutMs). */
  maxInflight: number;
  /** A guest's operation not answered by then gets NFS3ERR_JUKEBOX (RFC 1813 section 2.6). */
  opTimeoutMs: number;
  /** Health probe (a statfs of the backend's root) every intervalMs, bounded by timeoutMs. */
  healthIntervalMs: number;
  healthTimeoutMs: number;
  /** A backend hung this long is torn down (FUSE connection aborted, forced unmount) and mounted again. */
  remountAfterMs: number;
  /** How long a backend no grant uses stays mounted. */
  unmountGraceMs: number;
  /** Bound on the mount command. */
  mountTimeoutMs: number;
  /**
   * READDIRPLUS answers from a listing of a directory read at most this long ago (0: never): the
   * bound on how stale its entries' attributes may be after a change made outside this gateway.
   * Changes made through the gateway are seen at once (native-bridges/src/listing_cache.h).
   */
  listingCacheMs: number;
}

export interface LocalBackend extends BackendCommon {
  type: 'local';
  /** Absolute directory holding the backend's shares. */
  path: string;
}

export interface CephfsBackend extends BackendCommon {
  type: 'cephfs';
  /** kernel: `mount -t ceph`; fuse: `ceph-fuse`. */
  client: 'kernel' | 'fuse';
  /** host or host:port; empty: from conf_file. */
  monitors: string[];
  fsName?: string;
  /** cephx id, without "client.". */
  user: string;
  /** The bare key (kernel secretfile=, ceph-fuse --keyfile). */
  secretFile?: string;
  /** A keyring (ceph-fuse only). */
  keyringFile?: string;
  confFile?: string;
  /** Directory of the file system mounted as the backend's root. */
  root: string;
  options: string[];
}

export interface GlusterfsBackend extends BackendCommon {
  type: 'glusterfs';
  /** Volfile servers, tried in order. */
  servers: string[];
  volume: string;
  options: string[];
}

export interface GpfsBackend extends BackendCommon {
  type: 'gpfs';
  /** The GPFS device (file system name), e.g. gpfs0. */
  device: string;
  /** Where GPFS mounts it on this node (the cluster's setting: mmlsfs DEVICE -T). */
  mountpoint: string;
  /** Run `mmmount DEVICE` when it is not mounted (else wait for GPFS to mount it). */
  mmmount: boolean;
  /** Where the mm* commands are. */
  binDir: string;
}

export interface NfsBackend extends BackendCommon {
  type: 'nfs';
  server: string;
  export: string;
  /** NFS version of the kernel client's mount (vers=). */
  version: string;
  options: string[];
}

export type BackendConfig = LocalBackend | CephfsBackend | GlusterfsBackend | GpfsBackend | NfsBackend;

export const BACKEND_DEFAULTS = {
  // 32: with 8, a READ-heavy guest (a reopen, pread and two fstats per call) queued behind the
  // slots and its p99 at queue depth 32 was 1.4-1.8x that with 32 (run.sh randread, A/B). A hung
  // backend can hold this many pool threads: the pool's bound (256) leaves room for seven.
  maxInflight: 32,
  opTimeoutMs: 10_000,
  healthIntervalMs: 10_000,
  healthTimeoutMs: 5_000,
  remountAfterMs: 60_000,
  unmountGraceMs: 300_000,
  mountTimeoutMs: 60_000,
  // 1 s, as GlusterFS's FUSE client keeps attributes by default (attribute-timeout=1); a Linux NFS
  // client keeps them 3-60 s itself. Without it a repeated listing of 10,000 entries costs 20,000
  // system calls: 0.22x NFS-Ganesha, which serves it from its own cache (BENCHMARKS.md).
  listingCacheMs: 1_000,
} as const;

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:]+)(:[0-9]{1,5})?$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A mount option: key or key=value, no comma (that would be two options), no space or control. */
const OPTION = /^[A-Za-z0-9_.-]+(=[^,\s\x00-\x1f]*)?$/;
const SECRET_WORDS = ['secret', 'key', 'password', 'token'];
/** Mount options that carry a secret inline (visible in /proc/PID/cmdline and in error messages). */
const SECRET_OPTIONS = /^(secret|password|pass|key|token|credentials_?key)=/i;
/** A GlusterFS volfile server: backup-volfile-servers joins them with ':', so no port, no IPv6. */
const GLUSTER_HOST = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

const COMMON_FIELDS: Record<string, [keyof BackendCommon, number, number, number]> = {
  // config field: [property, scale to ms (or 1), minimum, maximum]
  max_inflight: ['maxInflight', 1, 1, 1024],
  op_timeout_ms: ['opTimeoutMs', 1, 50, 600_000],
  health_interval_s: ['healthIntervalMs', 1000, 0.05, 3600],
  health_timeout_s: ['healthTimeoutMs', 1000, 0.05, 600],
  remount_after_s: ['remountAfterMs', 1000, 0.1, 86_400],
  unmount_grace_s: ['unmountGraceMs', 1000, 0, 86_400],
  mount_timeout_s: ['mountTimeoutMs', 1000, 1, 3600],
  listing_cache_ms: ['listingCacheMs', 1, 0, 60_000],
};

const TYPE_FIELDS: Record<BackendType, string[]> = {
  local: ['path'],
  cephfs: ['client', 'monitors', 'fs_name', 'user', 'secret_file', 'keyring_file', 'conf_file', 'root', 'options'],
  glusterfs: ['servers', 'volume', 'options'],
  gpfs: ['device', 'mountpoint', 'mmmount', 'bin_dir'],
  nfs: ['server', 'export', 'version', 'options'],
};

/** Parses one `backends[i]` entry (already checked to have a string id and a known type). */
export function parseBackend(raw: Record<string, unknown>, at: string, baseDir: string, problems: string[]): BackendConfig | undefined {
  const type = raw.type as BackendType;
  const before = problems.length;
  for (const key of Object.keys(raw)) {
    if (key === 'id' || key === 'type' || key in COMMON_FIELDS || TYPE_FIELDS[type].includes(key)) continue;
    if (SECRET_WORDS.some((word) => key.includes(word))) {
      problems.push(`${at}.${key}: secrets are given only by file (secret_file, keyring_file), never in the config`);
    } else {
      problems.push(`${at}.${key}: is not a known field for a ${type} backend`);
    }
  }
  const common = { id: raw.id as string } as BackendCommon;
  for (const [field, [property, scale, min, max]] of Object.entries(COMMON_FIELDS)) {
    const value = raw[field];
    const fallback = BACKEND_DEFAULTS[property as keyof typeof BACKEND_DEFAULTS];
    if (value === undefined) {
      (common as unknown as Record<string, number>)[property] = fallback;
    } else if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (scale === 1 && !Number.isInteger(value))) {
      problems.push(`${at}.${field}: must be a ${scale === 1 ? 'whole number' : 'number'} from ${min} to ${max}`);
    } else {
      (common as unknown as Record<string, number>)[property] = Math.round(value * scale);
    }
  }
  if (common.healthTimeoutMs !== undefined && common.healthIntervalMs !== undefined && common.healthTimeoutMs > common.healthIntervalMs * 10) {
    problems.push(`${at}.health_timeout_s: is more than ten health intervals`);
  }

  const field = new Fields(raw, at, problems);
  let backend: BackendConfig | undefined;
  switch (type) {
    case 'local':
      backend = { ...common, type, path: path.resolve(baseDir, field.required('path', 'string') ?? '.') };
      break;
    case 'cephfs': {
      const client = field.optional('client', 'string') ?? 'kernel';
      if (client !== 'kernel' && client !== 'fuse') problems.push(`${at}.client: must be kernel or fuse`);
      const monitors = field.list('monitors', HOST, 'host or host:port') ?? [];
      const user = field.required('user', 'string');
      if (user !== undefined && !NAME.test(user)) problems.push(`${at}.user: must be a cephx id (letters, digits, . _ -), without "client."`);
      const fsName = field.optional('fs_name', 'string');
      if (fsName !== undefined && !NAME.test(fsName)) problems.push(`${at}.fs_name: must be letters, digits, . _ -`);
      const secretFile = field.file('secret_file', baseDir);
      const keyringFile = field.file('keyring_file', baseDir);
      const confFile = field.file('conf_file', baseDir);
      if (client === 'kernel' && keyringFile !== undefined) problems.push(`${at}.keyring_file: the kernel client takes secret_file (the bare key)`);
      if (client === 'kernel' && secretFile === undefined) problems.push(`${at}.secret_file: is required for the kernel client`);
      if (client === 'fuse' && secretFile === undefined && keyringFile === undefined) problems.push(`${at}: needs secret_file or keyring_file`);
      if (client === 'kernel' && monitors.length === 0) problems.push(`${at}.monitors: the kernel client needs them`);
      else if (monitors.length === 0 && confFile === undefined) problems.push(`${at}.monitors: is required unless conf_file names them`);
      backend = {
        ...common,
        type,
        client: client as 'kernel' | 'fuse',
        monitors,
        user: user ?? '',
        root: field.absolute('root') ?? '/',
        options: field.list('options', OPTION, 'mount option (key or key=value, no comma)') ?? [],
        ...(fsName !== undefined ? { fsName } : {}),
        ...(secretFile !== undefined ? { secretFile } : {}),
        ...(keyringFile !== undefined ? { keyringFile } : {}),
        ...(confFile !== undefined ? { confFile } : {}),
      };
      break;
    }
    case 'glusterfs': {
      const servers = field.list('servers', GLUSTER_HOST, 'host name or IPv4 address, without a port') ?? [];
      if (raw.servers === undefined || (Array.isArray(raw.servers) && raw.servers.length === 0)) problems.push(`${at}.servers: is required (at least one volfile server)`);
      const volume = field.required('volume', 'string');
      if (volume !== undefined && !NAME.test(volume)) problems.push(`${at}.volume: must be a volume name (letters, digits, . _ -)`);
      backend = { ...common, type, servers, volume: volume ?? '', options: field.list('options', OPTION, 'mount option (key or key=value, no comma)') ?? [] };
      break;
    }
    case 'gpfs': {
      const device = field.required('device', 'string');
      if (device !== undefined && !NAME.test(device)) problems.push(`${at}.device: must be a GPFS device name (letters, digits, . _ -)`);
      backend = {
        ...common,
        type,
        device: device ?? '',
        mountpoint: field.absolute('mountpoint', true) ?? '/',
        mmmount: field.optional('mmmount', 'boolean') ?? false,
        binDir: field.absolute('bin_dir') ?? '/usr/lpp/mmfs/bin',
      };
      break;
    }
    case 'nfs': {
      const server = field.required('server', 'string');
      if (server !== undefined && !HOST.test(server)) problems.push(`${at}.server: must be a host name or address`);
      const version = String(field.optional('version', 'any') ?? '3');
      if (!['3', '4', '4.0', '4.1', '4.2'].includes(version)) problems.push(`${at}.version: must be 3, 4, 4.0, 4.1 or 4.2`);
      const options = field.list('options', OPTION, 'mount option (key or key=value, no comma)') ?? [];
      for (const option of options) {
        if (/^(vers|nfsvers)=/.test(option)) problems.push(`${at}.options: give the version in ${at}.version, not ${option}`);
      }
      backend = { ...common, type, server: server ?? '', export: field.absolute('export', true) ?? '/', version, options };
      break;
    }
  }
  return problems.length === before ? backend : undefined;
}

/** Typed reads of one backend's fields, each problem named by its field. */
class Fields {
  constructor(
    private readonly raw: Record<string, unknown>,
    private readonly at: string,
    private readonly problems: string[],
  ) {}

  optional(key: string, kind: 'string'): string | undefined;
  optional(key: string, kind: 'boolean'): boolean | undefined;
  optional(key: string, kind: 'any'): unknown;
  optional(key: string, kind: 'string' | 'boolean' | 'any'): unknown {
    const value = this.raw[key];
    if (value === undefined || kind === 'any') return value;
    if (typeof value !== kind || (kind === 'string' && (value as string).length === 0)) {
      this.problems.push(`${this.at}.${key}: must be a ${kind === 'string' ? 'non-empty string' : 'boolean'}`);
      return undefined;
    }
    return value;
  }

  required(key: string, kind: 'string'): string | undefined {
    if (this.raw[key] === undefined) {
      this.problems.push(`${this.at}.${key}: is required for a ${String(this.raw.type)} backend`);
      return undefined;
    }
    return this.optional(key, kind);
  }

  /** A path inside the backend's own namespace: absolute, normalized, no "..". */
  absolute(key: string, required = false): string | undefined {
    const value = required ? this.required(key, 'string') : this.optional(key, 'string');
    if (value === undefined) return undefined;
    if (!value.startsWith('/') || value.split('/').includes('..') || /[\x00-\x1f,]/.test(value)) {
      this.problems.push(`${this.at}.${key}: must be an absolute path without "..", commas or control characters`);
      return undefined;
    }
    return path.posix.normalize(value);
  }

  /** A file on this host (relative to the config file's directory). */
  file(key: string, baseDir: string): string | undefined {
    const value = this.optional(key, 'string');
    if (value === undefined) return undefined;
    if (/[\x00-\x1f,]/.test(value)) {
      this.problems.push(`${this.at}.${key}: must not hold commas or control characters`);
      return undefined;
    }
    return path.resolve(baseDir, value);
  }

  list(key: string, pattern: RegExp, what: string): string[] | undefined {
    const value = this.raw[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      this.problems.push(`${this.at}.${key}: must be a list`);
      return undefined;
    }
    const out: string[] = [];
    value.forEach((item, i) => {
      if (typeof item !== 'string' || !pattern.test(item)) this.problems.push(`${this.at}.${key}[${i}]: must be a ${what}`);
      else if (key === 'options' && SECRET_OPTIONS.test(item)) this.problems.push(`${this.at}.${key}[${i}]: secrets are given only by file (secret_file, keyring_file), never as a mount option`);
      else out.push(item);
    });
    return out;
  }
}
