// Share roots and the open-object cache.
//
// A share root is opened once per location and kept while the share is granted: it is the mount fd
// for open_by_handle_at and the top of the share, where `..` stays put. When the share loses its
// last grant (or moves) the root is retired: out of the registry at once, its descriptor closed when
// the last request that resolved through it finishes. Objects the guests name by handle are opened
// on demand (open_by_handle_at, O_PATH) and cached by handle with a reference count, so a descriptor
// is never closed while an operation is using it.
import { open as openCallback, constants as fsConstants } from 'node:fs';
import { promisify } from 'node:util';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { FsBridge, KernelHandle, NativeStat } from '../native/fsbridge.js';
import { HandleCodec } from './handle.js';
import { isDirectory } from './attributes.js';

const O_PATH = 0o10000000;
/** fs.open gives the bare descriptor (fs/promises would wrap it in a FileHandle that closes it on GC). */
const openDescriptor = promisify(openCallback);

export interface ShareRoot {
  readonly id: string;
  readonly backend: string;
  readonly sharePath: string;
  /** Where it is on this host. */
  readonly hostPath: string;
  readonly key: Buffer;
  readonly keyHex: string;
  /** fsid reported to guests: each share is its own filesystem to them. */
  readonly fsid: bigint;
  /** -1 once closed: a late use fails with EBADF instead of reaching whatever reused the number. */
  fd: number;
  readonly dev: number;
  readonly ino: number;
  readonly mountId: number;
  readonly kernel: KernelHandle;
  /** The root's NFS handle. */
  readonly handle: Buffer;
  /** Requests that resolved through this root and have not finished (ShareRegistry.hold/release). */
  inflight: number;
  /** Out of the registry; the fd is closed once `inflight` is 0. */
  retired: boolean;
}

/** Errors that say the mount is dead or failing (a FUSE daemon gone, an aborted connection, I/O errors). */
const BACKEND_ERRNOS = new Set(['ENOTCONN', 'ECONNABORTED', 'EIO', 'ETIMEDOUT', 'EHOSTDOWN', 'EHOSTUNREACH', 'ESTALE']);

/** Retired share keys remembered (key -> share id), to tell a revoked share's handles from unknown ones. */
const RETIRED_KEYS = 100_000;

export class ShareOpenError extends Error {
  constructor(
    readonly code:
      | 'SHARE_PATH_MISSING'
      | 'SHARE_PATH_ESCAPES'
      | 'SHARE_PATH_SYMLINK'
      | 'SHARE_NOT_DIRECTORY'
      | 'SHARE_NO_HANDLE'
      | 'SHARE_NOT_GRANTED'
      | 'SHARE_AT_BACKEND_ROOT'
      | 'BACKEND_UNAVAILABLE'
      | 'BACKEND_HUNG',
    message: string,
  ) {
    super(message);
  }
}

export class ShareRegistry {
  private readonly byKey = new Map<string, ShareRoot>();
  private readonly byId = new Map<string, ShareRoot>();
  private readonly opening = new Map<string, Promise<ShareRoot>>();
  /** key hex -> share id of retired roots, least recently retired first. */
  private readonly retiredKeys = new Map<string, string>();

  /**
   * `wanted` says whether a share is still granted at a location; an open that finishes after the
   * share was revoked or moved is closed instead of registered.
   */
  constructor(
    private readonly native: FsBridge,
    private readonly codec: HandleCodec,
    private readonly wanted: (shareId: string, backend: string, sharePath: string) => boolean = () => true,
  ) {}

  /** Open share roots. */
  get size(): number {
    return this.byKey.size;
  }

  roots(): IterableIterator<ShareRoot> {
    return this.byKey.values();
  }

  /** The share id of a retired (and not re-opened) share key, if still remembered. */
  retiredShare(keyHex: string): string | undefined {
    return this.retiredKeys.get(keyHex);
  }

  /** A request resolved through `share`: its fd stays open until the matching release. */
  hold(share: ShareRoot): void {
    share.inflight++;
  }

  release(share: ShareRoot): void {
    share.inflight--;
    if (share.inflight === 0 && share.retired) this.closeRoot(share);
  }

  /**
   * Takes `share` out of the registry at once, so no new request finds it, and closes its fd now or
   * when the last request holding it finishes.
   */
  retire(share: ShareRoot): void {
    if (share.retired) return;
    share.retired = true;
    if (this.byKey.get(share.keyHex) === share) this.byKey.delete(share.keyHex);
    if (this.byId.get(share.id) === share) this.byId.delete(share.id);
    this.retiredKeys.delete(share.keyHex);
    this.retiredKeys.set(share.keyHex, share.id);
    if (this.retiredKeys.size > RETIRED_KEYS) this.retiredKeys.delete(this.retiredKeys.keys().next().value!);
    if (share.inflight === 0) this.closeRoot(share);
  }

  private closeRoot(share: ShareRoot): void {
    if (share.fd < 0) return;
    this.native.close(share.fd);
    share.fd = -1;
  }

  byHandleKey(keyHex: string): ShareRoot | undefined {
    return this.byKey.get(keyHex);
  }

  get(shareId: string): ShareRoot | undefined {
    return this.byId.get(shareId);
  }

  /**
   * Opens (once) the share `shareId` at `sharePath` inside a backend rooted at `backendRoot`.
   * The share's directory must exist, be a directory, and resolve (symlinks and all) inside the backend.
   */
  open(shareId: string, backend: string, backendRoot: string, sharePath: string): Promise<ShareRoot> {
    const key = HandleCodec.shareKey(shareId, backend, sharePath);
    const keyHex = key.toString('hex');
    const existing = this.byKey.get(keyHex);
    if (existing) return Promise.resolve(existing);
    let pending = this.opening.get(keyHex);
    if (!pending) {
      pending = this.doOpen(shareId, backend, backendRoot, sharePath, key, keyHex).finally(() =>
        this.opening.delete(keyHex),
      );
      this.opening.set(keyHex, pending);
    }
    return pending;
  }

  private async doOpen(
    shareId: string,
    backend: string,
    backendRoot: string,
    sharePath: string,
    key: Buffer,
    keyHex: string,
  ): Promise<ShareRoot> {
    let root: string;
    let hostPath: string;
    try {
      root = await realpath(backendRoot);
      hostPath = await realpath(path.join(root, sharePath));
    } catch (error) {
      const errno = (error as NodeJS.ErrnoException).code;
      // A dead or failing mount is the backend's trouble, not a missing path: retried, and guests wait.
      if (errno !== undefined && BACKEND_ERRNOS.has(errno)) {
        throw new ShareOpenError('BACKEND_UNAVAILABLE', `share ${shareId}: backend ${backend} fails (${errno} on ${path.join(backendRoot, sharePath)})`);
      }
      throw new ShareOpenError('SHARE_PATH_MISSING', `share ${shareId}: ${path.join(backendRoot, sharePath)} does not exist (${errno})`);
    }
    if (hostPath !== root && !hostPath.startsWith(root.endsWith('/') ? root : `${root}/`)) {
      throw new ShareOpenError('SHARE_PATH_ESCAPES', `share ${shareId}: ${sharePath} resolves outside backend ${backend}`);
    }
    // No symlink on the way: the grant rules (one place per share, no share inside another)
    // compare share paths as written, so a link could make two shares one directory.
    if (hostPath !== path.join(root, sharePath)) {
      throw new ShareOpenError(
        'SHARE_PATH_SYMLINK',
        `share ${shareId}: ${sharePath} goes through a symlink (it is ${path.relative(root, hostPath) || '.'} in backend ${backend}); grant the real path`,
      );
    }
    // A real directory descriptor, not O_PATH: open_by_handle_at refuses an O_PATH mount fd.
    let fd: number;
    try {
      // asynchronous: on a hung backend this must hold a pool thread, not the event loop
      fd = await openDescriptor(hostPath, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
    } catch (error) {
      const errno = (error as NodeJS.ErrnoException).code;
      const code = errno === 'ENOTDIR' || errno === 'ELOOP' ? 'SHARE_NOT_DIRECTORY' : errno !== undefined && BACKEND_ERRNOS.has(errno) ? 'BACKEND_UNAVAILABLE' : 'SHARE_PATH_MISSING';
      throw new ShareOpenError(code, `share ${shareId}: cannot open ${hostPath} (${errno})`);
    }
    const [stat, handle] = await Promise.all([this.native.fstat(fd), this.native.nameToHandle(fd, null)]);
    if (stat.err !== 0 || !stat.stat || !isDirectory(stat.stat)) {
      this.native.close(fd);
      throw new ShareOpenError('SHARE_NOT_DIRECTORY', `share ${shareId}: ${hostPath} is not a directory`);
    }
    const nfsHandle = handle.handle ? this.codec.encode(key, handle.handle) : null;
    if (handle.err !== 0 || !handle.handle || !nfsHandle) {
      this.native.close(fd);
      throw new ShareOpenError(
        'SHARE_NO_HANDLE',
        `share ${shareId}: the filesystem at ${hostPath} gives no usable file handles (errno ${handle.err})`,
      );
    }
    // Revoked or moved while this open was under way: nobody may find it (checked in the same tick
    // as the registration, so no grant change can fall in between).
    if (!this.wanted(shareId, backend, sharePath)) {
      this.native.close(fd);
      throw new ShareOpenError('SHARE_NOT_GRANTED', `share ${shareId}: no longer granted at ${backend}:${sharePath}`);
    }
    const share: ShareRoot = {
      id: shareId,
      backend,
      sharePath,
      hostPath,
      key,
      keyHex,
      fsid: key.readBigUInt64BE(0) & 0x7fff_ffff_ffff_ffffn,
      fd,
      dev: stat.stat.dev,
      ino: stat.stat.ino,
      mountId: handle.mountId ?? -1,
      kernel: handle.handle,
      handle: nfsHandle,
      inflight: 0,
      retired: false,
    };
    this.byKey.set(keyHex, share);
    this.byId.set(shareId, share);
    this.retiredKeys.delete(keyHex);
    return share;
  }
}

interface PendingOpen {
  waiters: number;
  promise: Promise<OpenObject | number>;
}

/** One object a guest named by handle, open as O_PATH. */
export interface OpenObject {
  readonly share: ShareRoot;
  readonly fd: number;
  /** True for the share root itself (never closed by the cache). */
  readonly isRoot: boolean;
  refs: number;
  /** Removed from the cache while in use: closed by the last release. */
  forgotten?: boolean;
  /** The cache's move count when this entry last went to its most recent end (ObjectCache); 0: never. */
  movedAt: number;
}

/**
 * LRU of open objects keyed by the NFS handle bytes. A hit means those exact bytes were verified
 * when first opened, so the tag is not recomputed on every request. Keys are also indexed by share,
 * so retiring a share closes its objects without scanning the whole cache.
 */
export class ObjectCache {
  /** In least recently used order, roughly: see acquireCached. */
  private readonly entries = new Map<string, OpenObject>();
  /** Entries moved or inserted at the most recent end so far. */
  private moves = 0;
  private readonly pending = new Map<string, PendingOpen>();
  private readonly byShare = new Map<ShareRoot, Set<string>>();

  constructor(
    private readonly native: FsBridge,
    private limit: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The cached object for `key`, not marked in use (it may be evicted any time after). */
  peek(key: string): OpenObject | undefined {
    return this.entries.get(key);
  }

  /** The cached object for `key`, marked in use; undefined on a miss. */
  acquireCached(key: string): OpenObject | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // The most recently used goes to the end, unless fewer than limit/2 entries went there since it
    // did: then it is in the recent half already, and no eviction reaches it before that many more
    // inserts, after which its next use moves it. An object in steady use is never evicted, and the
    // Map is not churned on every request (a delete and a set per hit rehashed a small Map every few
    // requests: garbage on the hottest path).
    if (this.moves - entry.movedAt >= this.limit >> 1) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      entry.movedAt = ++this.moves;
    }
    entry.refs++;
    return entry;
  }

  /** Opens the object on a miss; returns it marked in use, or an errno. The caller holds `share`. */
  async acquire(key: string, share: ShareRoot, kernel: KernelHandle): Promise<OpenObject | number> {
    const hit = this.acquireCached(key);
    if (hit) return hit;
    let slot = this.pending.get(key);
    if (!slot) {
      const created: PendingOpen = { waiters: 0, promise: Promise.resolve(0) };
      created.promise = this.open(key, share, kernel, created).finally(() => this.pending.delete(key));
      this.pending.set(key, created);
      slot = created;
    }
    // Counted before the await: the entry is born holding one reference per waiter, so eviction
    // can never close it between its insertion and a waiter's use.
    slot.waiters++;
    return slot.promise;
  }

  private async open(key: string, share: ShareRoot, kernel: KernelHandle, slot: PendingOpen): Promise<OpenObject | number> {
    const result = await this.native.openByHandle(share.fd, kernel, O_PATH);
    if (result.err !== 0) return result.err;
    const entry: OpenObject = { share, fd: result.fd, isRoot: false, refs: slot.waiters, movedAt: 0 };
    if (share.retired) {
      // Retired while opening: the waiters use it, the last release closes it.
      entry.forgotten = true;
      return entry;
    }
    this.insert(key, entry);
    this.evict();
    return entry;
  }

  release(entry: OpenObject): void {
    entry.refs--;
    if (entry.refs === 0 && entry.forgotten) this.native.close(entry.fd);
  }

  /** Drop the entry of an object that is gone (unlinked), closing it once no request uses it. */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.remove(key, entry);
    this.drop(entry);
  }

  /** Drop every object of a retired share: idle ones closed now, busy ones by their last release. */
  forgetShare(share: ShareRoot): void {
    const keys = this.byShare.get(share);
    if (!keys) return;
    this.byShare.delete(share);
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (!entry || entry.share !== share) continue;
      this.entries.delete(key);
      this.drop(entry);
    }
  }

  private insert(key: string, entry: OpenObject): void {
    this.entries.set(key, entry);
    entry.movedAt = ++this.moves;
    let keys = this.byShare.get(entry.share);
    if (!keys) this.byShare.set(entry.share, (keys = new Set()));
    keys.add(key);
  }

  private remove(key: string, entry: OpenObject): void {
    this.entries.delete(key);
    const keys = this.byShare.get(entry.share);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byShare.delete(entry.share);
  }

  private drop(entry: OpenObject): void {
    if (entry.refs === 0) this.native.close(entry.fd);
    else entry.forgotten = true;
  }

  private evict(): void {
    if (this.entries.size <= this.limit) return;
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.limit) break;
      if (entry.refs > 0) continue;
      this.remove(key, entry);
      this.native.close(entry.fd);
    }
  }

  /** Closes every cached object now, busy or not (shutdown). */
  closeAll(): void {
    for (const entry of this.entries.values()) this.native.close(entry.fd);
    this.entries.clear();
    this.byShare.clear();
  }
}

export type { NativeStat };
