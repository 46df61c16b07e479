// The backend mount manager (DESIGN.md "the path of a request": the backend mount below the share
// layer). A backend is mounted when the first grant needs it, health-checked while it is mounted,
// torn down and mounted again when it fails or hangs, and unmounted a grace period after the last
// grant on it went away. Nothing here waits on a backend without a bound: mountinfo is read from
// /proc, probes and commands are timed, and at most one probe per backend is ever outstanding.
import { mkdir, open as openFile, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BackendConfig } from './config.js';
import { driverFor, type BackendDriver } from './drivers/index.js';
import { BackendGate } from './gate.js';
import { mountAt, type MountEntry } from './mountinfo.js';
import { runCommand } from './commands.js';

/**
 * idle: not mounted and not needed; mounting; ready: mounted and answering; unavailable: the mount
 * failed or went away (retried with backoff while a grant needs it); hung: the health probe did
 * not return within its bound.
 */
export const BACKEND_STATES = ['idle', 'mounting', 'ready', 'unavailable', 'hung'] as const;
export type BackendStateName = (typeof BACKEND_STATES)[number];

export interface BackendStatus {
  id: string;
  type: string;
  state: BackendStateName;
  /** Why it is not ready (the mount command's complaint, the probe's errno, ...). */
  reason: string;
  /** Nothing wrong with it: ready, or idle (not needed, so not mounted). */
  up: boolean;
  /** Operations running on it now (including those answered JUKEBOX and still stuck). */
  inflight: number;
  /** Grants on it. */
  refs: number;
}

export class BackendError extends Error {
  constructor(
    readonly code: 'UNKNOWN_BACKEND' | 'BACKEND_UNAVAILABLE' | 'BACKEND_HUNG',
    message: string,
  ) {
    super(message);
  }
}

/** The native layer's registry of GlusterFS aux-gfid mounts (gfid handles). */
export interface GfidRegistry {
  /** The mount id, or a negative errno. */
  registerGfidMount(rootFd: number): number;
  unregisterGfidMount(mountId: number): unknown;
}

export interface BackendManagerOptions {
  backends: readonly BackendConfig[];
  /** Mounts go to <runtimeDir>/backends/<id>. */
  runtimeDir: string;
  logger: Logger;
  gfid?: GfidRegistry;
  /** A backend is being torn down (remount, unmount): let go of its share roots and open objects. */
  onTearDown?: (backend: string) => void;
  /** A backend became ready: grants that failed on it can be tried again. */
  onReady?: (backend: string) => void;
  /** Told once per guest operation answered JUKEBOX (metrics). */
  onTimeout?: (backend: string) => void;
  /** Environment of the mount commands (tests put fakes first on PATH). */
  env?: NodeJS.ProcessEnv;
  /** Tests only: what mountinfo may show for a backend instead of its driver's fstypes. */
  fstypesOf?: (backend: BackendConfig) => readonly string[] | undefined;
  /** Where fusectl is mounted. */
  fusectlDir?: string;
}

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;

class Backend {
  state: BackendStateName;
  reason = '';
  refs = 0;
  /** Mounted by this daemon (or adopted): unmounted by it when unused. */
  mounted = false;
  mounting: Promise<void> | undefined;
  recovering: Promise<void> | undefined;
  unmounting: Promise<void> | undefined;
  /** Bumped whenever the mount is replaced or removed: a probe of an earlier mount reports nothing. */
  generation = 0;
  failures = 0;
  retryAt = 0;
  probeSince: number | undefined;
  hungSince: number | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  healthTimer: NodeJS.Timeout | undefined;
  gfidMountId: number | undefined;
  fuseMinor: number | undefined;
  readonly gate: BackendGate;

  constructor(
    readonly config: BackendConfig,
    readonly driver: BackendDriver,
    onTimeout: () => void,
  ) {
    // A directory needs no mount: it is as ready as its probe says.
    this.state = driver.fstypes.length === 0 ? 'ready' : 'idle';
    this.gate = new BackendGate({ limit: config.maxInflight, timeoutMs: config.opTimeoutMs, onRefused: onTimeout });
  }

  get id(): string {
    return this.config.id;
  }

  get root(): string {
    return this.driver.root;
  }
}

export class BackendManager {
  private readonly backends = new Map<string, Backend>();
  private stopped = false;

  constructor(private readonly options: BackendManagerOptions) {
    for (const config of options.backends) {
      const target = path.join(options.runtimeDir, 'backends', config.id);
      const backend = new Backend(config, driverFor(config, target), () => options.onTimeout?.(config.id));
      this.backends.set(config.id, backend);
    }
  }

  has(id: string): boolean {
    return this.backends.has(id);
  }

  /** The admission gate of a backend (bounded concurrency, JUKEBOX after its bound). */
  gateOf(id: string): BackendGate | undefined {
    return this.backends.get(id)?.gate;
  }

  /** The backend's listing_cache_ms (0 for an unknown backend). */
  listingCacheMsOf(id: string): number {
    return this.backends.get(id)?.config.listingCacheMs ?? 0;
  }

  /**
   * Whether a share may be the backend's root directory. Not on GlusterFS: its root holds the
   * aux-gfid door (.gfid/<uuid>) to every object of the volume.
   */
  rootShareAllowed(id: string): boolean {
    return !this.backends.get(id)?.driver.gfidHandles;
  }

  /** Starts the health checks. */
  start(): void {
    for (const backend of this.backends.values()) {
      backend.healthTimer = setInterval(() => void this.check(backend), backend.config.healthIntervalMs);
      backend.healthTimer.unref();
    }
  }

  statuses(): BackendStatus[] {
    return [...this.backends.values()].map((b) => ({
      id: b.id,
      type: b.config.type,
      state: b.state,
      reason: b.reason,
      up: b.state === 'ready' || b.state === 'idle',
      inflight: b.gate.inflight,
      refs: b.refs,
    }));
  }

  /**
   * The directory a backend's shares are under, mounting it first when needed. Throws a
   * BackendError (with the reason) when it cannot be mounted or hangs.
   */
  async rootOf(id: string): Promise<string> {
    const backend = this.backends.get(id);
    if (!backend) throw new BackendError('UNKNOWN_BACKEND', `this node has no backend ${id}`);
    if (backend.state === 'hung') throw new BackendError('BACKEND_HUNG', `backend ${id} is not answering: ${backend.reason}`);
    // a remount or an unmount under way: what it leaves behind is what counts
    while (backend.recovering || backend.unmounting) await (backend.recovering ?? backend.unmounting);
    if (backend.state === 'ready' && (backend.mounted || backend.driver.fstypes.length === 0)) return backend.root;
    await this.mount(backend);
    return backend.root;
  }

  /** Grants on a backend: +1 per grant added, -1 per grant removed. Unused backends are unmounted after their grace. */
  use(id: string, delta: number): void {
    const backend = this.backends.get(id);
    if (!backend) return;
    backend.refs += delta;
    if (backend.refs > 0) {
      clearTimeout(backend.graceTimer);
      backend.graceTimer = undefined;
      return;
    }
    if (backend.graceTimer || !backend.driver.unmounts || this.stopped) return;
    backend.graceTimer = setTimeout(() => {
      backend.graceTimer = undefined;
      this.unmountUnused(backend).catch((error: Error) => this.options.logger.error({ backend: backend.id, err: error.message }, 'backend unmount failed'));
    }, backend.config.unmountGraceMs);
    backend.graceTimer.unref();
  }

  /** Stops the checks and unmounts what this daemon mounted (after the share layer closed its roots). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const backend of this.backends.values()) {
      clearInterval(backend.healthTimer);
      clearTimeout(backend.graceTimer);
    }
    await Promise.all(
      [...this.backends.values()].map(async (backend) => {
        await backend.mounting?.catch(() => undefined);
        await backend.recovering;
        await backend.unmounting;
        if (backend.mounted && backend.driver.unmounts) await this.unmount(backend, false);
      }),
    );
  }

  // ---- mounting ---------------------------------------------------------------------------

  private mount(backend: Backend): Promise<void> {
    if (backend.mounting) return backend.mounting;
    if (this.stopped) return Promise.reject(new BackendError('BACKEND_UNAVAILABLE', `backend ${backend.id}: the daemon is stopping`));
    if (Date.now() < backend.retryAt) {
      return Promise.reject(new BackendError('BACKEND_UNAVAILABLE', `backend ${backend.id} is unavailable (next mount attempt in ${Math.ceil((backend.retryAt - Date.now()) / 1000)} s): ${backend.reason}`));
    }
    const attempt = this.doMount(backend).then(
      () => {
        backend.failures = 0;
        backend.retryAt = 0;
        this.setState(backend, 'ready', '');
        this.options.onReady?.(backend.id);
      },
      (error: Error) => {
        backend.failures++;
        backend.retryAt = Date.now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (backend.failures - 1));
        this.setState(backend, 'unavailable', error.message);
        throw new BackendError('BACKEND_UNAVAILABLE', `backend ${backend.id} cannot be mounted: ${error.message}`);
      },
    );
    backend.mounting = attempt.finally(() => {
      backend.mounting = undefined;
    });
    return backend.mounting;
  }

  private async doMount(backend: Backend): Promise<void> {
    const { driver, config } = backend;
    this.setState(backend, 'mounting', '');
    if (driver.fstypes.length === 0) {
      await this.probe(backend);
      return;
    }
    let entry = await mountAt(backend.root);
    if (entry && this.fstypeMatches(backend, entry)) {
      // Left by an earlier run of the daemon (or mounted by the operator): kept if it answers.
      try {
        await this.probe(backend);
        this.options.logger.info({ backend: backend.id, path: backend.root, fstype: entry.fstype }, 'backend already mounted; using it');
        await this.adopt(backend, entry);
        return;
      } catch (error) {
        if (!driver.unmounts) throw error;
        this.options.logger.warn({ backend: backend.id, err: (error as Error).message }, 'backend mount found dead; mounting it again');
        await this.detach(backend, entry, true);
        entry = await mountAt(backend.root);
      }
    }
    if (entry && driver.unmounts && entry.mountPoint === backend.root && !this.fstypeMatches(backend, entry)) {
      throw new Error(`${backend.root} has a ${entry.fstype} file system mounted on it, not ${this.fstypesOf(backend).join(' or ')}`);
    }
    if (!driver.mountCommand) {
      throw new Error(`${backend.root} is not mounted (${this.fstypesOf(backend).join(' or ')} expected)`);
    }
    if (driver.unmounts) await mkdir(backend.root, { recursive: true, mode: 0o700 });
    const started = Date.now();
    await runCommand(driver.mountCommand.file, driver.mountCommand.args, {
      timeoutMs: config.mountTimeoutMs,
      ...(this.options.env ? { env: this.options.env } : {}),
    });
    const mounted = await mountAt(backend.root);
    if (!mounted || !this.fstypeMatches(backend, mounted)) {
      throw new Error(`the mount command succeeded but ${backend.root} shows ${mounted ? `a ${mounted.fstype} mount` : 'no mount'}`);
    }
    await this.adopt(backend, mounted);
    try {
      await this.probe(backend);
    } catch (error) {
      await this.unmount(backend, true);
      throw error;
    }
    this.options.logger.info({ backend: backend.id, type: config.type, path: backend.root, ms: Date.now() - started }, 'backend mounted');
  }

  /** The mount is ours from now on: remember what tearing it down needs. */
  private async adopt(backend: Backend, entry: MountEntry): Promise<void> {
    backend.mounted = true;
    backend.generation++;
    backend.fuseMinor = backend.driver.fuse ? entry.minor : undefined;
    if (backend.driver.gfidHandles) {
      if (!this.options.gfid) throw new Error('this build has no gfid handle support (GlusterFS)');
      this.forgetGfid(backend);
      let handle: FileHandle | undefined;
      try {
        handle = await openFile(backend.root, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
        const mountId = this.options.gfid.registerGfidMount(handle.fd);
        if (mountId < 0) throw new Error(`${backend.root} cannot serve gfid handles (errno ${-mountId}: not a GlusterFS mount with aux-gfid-mount?)`);
        backend.gfidMountId = mountId;
      } finally {
        await handle?.close();
      }
    }
  }

  /** Mount ids are reused by the kernel: a registration must never outlive its mount. */
  private forgetGfid(backend: Backend): void {
    if (backend.gfidMountId === undefined) return;
    this.options.gfid?.unregisterGfidMount(backend.gfidMountId);
    backend.gfidMountId = undefined;
  }

  private fstypesOf(backend: Backend): readonly string[] {
    return this.options.fstypesOf?.(backend.config) ?? backend.driver.fstypes;
  }

  private fstypeMatches(backend: Backend, entry: MountEntry): boolean {
    return this.fstypesOf(backend).includes(entry.fstype);
  }

  // ---- health -----------------------------------------------------------------------------

  /** A statfs of the backend's root, bounded: it reaches the server (FUSE daemon, MDS, filer) every time. */
  private probe(backend: Backend): Promise<void> {
    const timeoutMs = backend.config.healthTimeoutMs;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`statfs of ${backend.root} did not return in ${timeoutMs} ms`)), timeoutMs);
      statfs(backend.root).then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (error: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          reject(new Error(`statfs of ${backend.root}: ${error.code ?? error.message}`));
        },
      );
    });
  }

  /** One health check: mountinfo, then a probe unless one is still out. */
  private async check(backend: Backend): Promise<void> {
    if (this.stopped || backend.mounting || backend.recovering || backend.unmounting) return;
    const now = Date.now();
    if (backend.state === 'idle') return;
    if (backend.state === 'unavailable') {
      if (backend.driver.fstypes.length === 0) this.startProbe(backend);
      else if (backend.refs > 0 && now >= backend.retryAt) this.recover(backend, 'retry');
      // nothing needs it any more: not a problem to report
      else if (backend.refs <= 0 && !backend.mounted) this.setState(backend, 'idle', '');
      return;
    }
    // Hung: the probe has not returned, or guests' operations are stuck with none returning (a
    // Ceph MDS that stopped answering leaves statfs, which the monitors answer, working).
    const probeStuck = backend.probeSince !== undefined && now - backend.probeSince >= backend.config.healthTimeoutMs;
    const opsStuck = this.opsStuckFor(backend, now);
    if (probeStuck || opsStuck !== undefined) {
      if (backend.state !== 'hung') {
        backend.hungSince = now;
        this.setState(
          backend,
          'hung',
          probeStuck
            ? `statfs of ${backend.root} has not returned for ${((now - backend.probeSince!) / 1000).toFixed(1)} s`
            : `guest operations have not returned for ${(opsStuck! / 1000).toFixed(1)} s`,
        );
      } else if (probeStuck && backend.mounted && backend.driver.unmounts && now - (backend.hungSince ?? now) >= backend.config.remountAfterMs) {
        // only when the probe is stuck too: stuck guest calls alone may be one slow COMMIT
        this.recover(backend, 'hung');
      }
      if (backend.probeSince === undefined) this.startProbe(backend);
      return;
    }
    if (backend.probeSince !== undefined) return;
    if (backend.driver.fstypes.length > 0 && backend.mounted) {
      const entry = await mountAt(backend.root).catch(() => undefined);
      if (!entry || !this.fstypeMatches(backend, entry)) {
        this.setState(backend, 'unavailable', `${backend.root} is no longer mounted`);
        if (backend.refs > 0) this.recover(backend, 'gone');
        return;
      }
    }
    this.startProbe(backend);
  }

  private startProbe(backend: Backend): void {
    if (backend.probeSince !== undefined) return;
    const since = Date.now();
    const generation = backend.generation;
    backend.probeSince = since;
    statfs(backend.root).then(
      () => {
        if (generation !== backend.generation) return; // a probe of a mount that is gone
        backend.probeSince = undefined;
        if (backend.recovering || backend.mounting) return;
        if ((backend.state === 'hung' || backend.state === 'unavailable') && this.opsStuckFor(backend, Date.now()) === undefined) {
          this.options.logger.warn({ backend: backend.id, after_ms: Date.now() - since }, 'backend answers again');
          this.setState(backend, 'ready', '');
          this.options.onReady?.(backend.id);
        }
      },
      (error: NodeJS.ErrnoException) => {
        if (generation !== backend.generation) return;
        backend.probeSince = undefined;
        if (backend.recovering || backend.mounting) return;
        this.setState(backend, 'unavailable', `statfs of ${backend.root}: ${error.code ?? error.message}`);
        // ENOTCONN: the FUSE daemon is gone; anything else on a mount of ours: mount it again.
        if (backend.mounted && backend.driver.unmounts && backend.refs > 0) this.recover(backend, 'failed');
      },
    );
  }

  /** How long guest operations have been stuck (the oldest running past the health bound, none returned since it started). */
  private opsStuckFor(backend: Backend, now: number): number | undefined {
    // Every slot taken and none given back: one slow call (a COMMIT of gigabytes) is not a hang.
    if (backend.gate.inflight < backend.config.maxInflight) return undefined;
    const oldest = backend.gate.oldestRunningSince();
    if (oldest === undefined || now - oldest < backend.config.healthTimeoutMs || backend.gate.lastReturnAt >= oldest) return undefined;
    return now - oldest;
  }

  private setState(backend: Backend, state: BackendStateName, reason: string): void {
    if (backend.state === state && backend.reason === reason) return;
    const was = backend.state;
    backend.state = state;
    backend.reason = reason;
    if (state !== 'hung') backend.hungSince = undefined;
    // A hung backend takes no new work: new operations are answered JUKEBOX at once.
    backend.gate.suspended = state === 'hung';
    const level = state === 'hung' || state === 'unavailable' ? 'warn' : 'info';
    if (was !== state) this.options.logger[level]({ backend: backend.id, state, was, reason: reason || undefined }, 'backend state');
  }

  // ---- tearing down -----------------------------------------------------------------------

  /** Lets go of a failed or hung mount and mounts it again (while a grant needs it). */
  private recover(backend: Backend, why: 'hung' | 'gone' | 'failed' | 'retry'): void {
    if (backend.recovering || this.stopped) return;
    backend.recovering = (async () => {
      if (why !== 'retry') this.options.logger.warn({ backend: backend.id, why, reason: backend.reason }, 'backend: mounting it again');
      this.options.onTearDown?.(backend.id);
      // GPFS (and any mount the daemon does not own) is never unmounted: probed and mounted again only
      if (backend.mounted && backend.driver.unmounts) await this.unmount(backend, why === 'hung' || why === 'failed' || why === 'gone');
      backend.mounted = false;
      backend.generation++;
      this.forgetGfid(backend);
      backend.probeSince = undefined;
      if (backend.refs > 0 && !this.stopped) {
        backend.retryAt = 0;
        await this.mount(backend).catch(() => undefined); // recorded in state and reason
      } else {
        this.setState(backend, 'idle', '');
      }
    })()
      .catch((error: Error) => this.options.logger.error({ backend: backend.id, err: error.message }, 'backend recovery failed'))
      .finally(() => {
        backend.recovering = undefined;
      });
  }

  private async unmountUnused(backend: Backend): Promise<void> {
    await backend.mounting?.catch(() => undefined);
    await backend.recovering;
    if (backend.refs > 0 || this.stopped || backend.unmounting) return;
    if (!backend.mounted) {
      if (backend.state === 'unavailable') this.setState(backend, 'idle', '');
      return;
    }
    // rootOf waits for this: nothing opens a share on a mount that is going away
    backend.unmounting = (async () => {
      this.options.onTearDown?.(backend.id);
      await this.unmount(backend, false);
      this.setState(backend, 'idle', '');
      this.options.logger.info({ backend: backend.id, path: backend.root }, 'backend unmounted (no grant uses it)');
    })().finally(() => {
      backend.unmounting = undefined;
    });
    await backend.unmounting;
  }

  private async unmount(backend: Backend, force: boolean): Promise<void> {
    this.forgetGfid(backend);
    backend.generation++;
    const entry = await mountAt(backend.root).catch(() => undefined);
    if (entry) await this.detach(backend, entry, force);
    backend.mounted = false;
    backend.fuseMinor = undefined;
  }

  /**
   * Takes a mount off its mount point. A hung FUSE mount is aborted first (fusectl), which fails
   * every call stuck in it with ENOTCONN and frees their threads; a hung kernel mount is forced
   * (umount -f aborts its outstanding RPCs). Busy mounts are detached lazily: the share layer's
   * last descriptors close as their requests finish.
   */
  private async detach(backend: Backend, entry: MountEntry, force: boolean): Promise<void> {
    this.forgetGfid(backend);
    const command = { timeoutMs: 15_000, ...(this.options.env ? { env: this.options.env } : {}) };
    if (force && entry.fstype.startsWith('fuse') && entry.major === 0) await this.abortFuse(backend, entry.minor);
    else if (force) await runCommand('umount', ['-f', '-c', backend.root], command).catch(() => undefined);
    try {
      // -c: no canonicalization (it would stat through a hung mount)
      await runCommand('umount', ['-c', backend.root], command);
    } catch (error) {
      this.options.logger.debug({ backend: backend.id, err: (error as Error).message }, 'umount failed; detaching lazily');
      await runCommand('umount', ['-l', '-c', backend.root], command).catch((lazyError: Error) => {
        this.options.logger.error({ backend: backend.id, err: lazyError.message }, 'backend cannot be unmounted');
      });
    }
  }

  private async abortFuse(backend: Backend, minor: number): Promise<void> {
    const dir = this.options.fusectlDir ?? '/sys/fs/fuse/connections';
    const abort = path.join(dir, String(minor), 'abort');
    try {
      await writeFile(abort, '1');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && dir === '/sys/fs/fuse/connections') {
        // fusectl not mounted (systemd mounts it; a bare host may not)
        await runCommand('mount', ['-t', 'fusectl', 'fusectl', dir], { timeoutMs: 5_000 }).catch(() => undefined);
        await writeFile(abort, '1').catch(() => undefined);
      }
    }
    this.options.logger.warn({ backend: backend.id, connection: minor }, 'FUSE connection aborted');
  }
}
