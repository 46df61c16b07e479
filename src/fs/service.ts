// The share filesystem layer: NFSv3 and MOUNT semantics on top of the native bridge.
//
// Every request: handle -> (tag check) -> share -> grant for this guest (checked on every request,
// so a revoke takes effect on the next one) -> squash -> the kernel does the operation under the
// caller's fsuid/fsgid/groups. Names are one component each, validated here before any syscall.
// Nothing follows a symlink on the server side, and `..` at a share root is the root.
// Share roots follow the grant table: a share left without grants, or moved, is retired.
import { constants } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { decodeReadEncoded, type CreateResult, type FsBridge, type KernelHandle, type NativeShareContext, type NativeStat, type ObjectResult, type SetattrRequest } from '../native/fsbridge.js';
import type { GrantTable } from '../grants/table.js';
import type { Grant } from '../grants/types.js';
import { AuthFlavor, type AuthSysParms } from '../rpc/types.js';
import { largeBuffers } from '../rpc/buffers.js';
import { closePipe, pipeOpened } from '../rpc/pipes.js';
import {
  ACCESS3,
  CreateMode,
  FSF3,
  Ftype3,
  Nfs3Status,
  StableHow,
  type CreateHow,
  type Fattr3,
  type MknodData,
  type NfsTime,
  type Sattr3,
} from '../nfs3/types.js';
import { POST_OP_ATTR_SIZE_PRESENT } from '../nfs3/xdr.js';
import type {
  AccessResult,
  AttrResult,
  Caller,
  CommitResult,
  CreatedResult,
  FsinfoResult,
  FsstatResult,
  LinkResult,
  LookupInPlaceResult,
  LookupResult,
  MountService,
  NfsFileService,
  PathconfResult,
  ReaddirPlusInPlaceResult,
  ReaddirPlusResult,
  ReaddirPlusTarget,
  ReaddirResult,
  ReadlinkResult,
  ReadResult,
  ReadInPlaceResult,
  ReadInPlaceTarget,
  ReadTarget,
  SplicedReadResult,
  RenameResult,
  WccResult,
  WriteResult,
  DirEntryPlus,
} from './types.js';
import { errnoToNfs3 } from './errors.js';
import type { BackendGate } from '../backends/gate.js';
import { HandleCodec, SHARE_KEY_BYTES } from './handle.js';
import { ObjectCache, ShareRegistry, ShareOpenError, type OpenObject, type ShareRoot } from './shares.js';
import {
  NO_WCC,
  S_IFIFO,
  S_IFSOCK,
  isDirectory,
  isRegular,
  toFattr3,
  wcc,
} from './attributes.js';

const E = constants.errno;
const MAX_NAME = 255;
const MAX_SYMLINK_TARGET = 4096;
const ONE_MIB = 1024 * 1024;
const ZERO_VERIFIER = Buffer.alloc(8);

/**
 * Entries READDIRPLUS lists for one reply: entryplus3 with attributes and a handle is about 150
 * bytes plus its name; a dircount of 0 sets no separate limit (the program treats it so too).
 */
function readdirplusMaxEntries(dirMaxBytes: number, maxBytes: number): number {
  const byMax = Math.ceil(Math.min(maxBytes, ONE_MIB) / 140);
  const byDir = dirMaxBytes === 0 ? Infinity : Math.ceil(Math.min(dirMaxBytes, ONE_MIB) / 24);
  return Math.min(4096, Math.max(1, Math.min(byMax, byDir)));
}

/** MOUNT v3 status (RFC 1813 section 5.1.5); the values it shares with nfsstat3. */
export const MountStat = {
  MNT3_OK: 0,
  MNT3ERR_PERM: 1,
  MNT3ERR_NOENT: 2,
  MNT3ERR_IO: 5,
  MNT3ERR_ACCES: 13,
  MNT3ERR_NOTDIR: 20,
  MNT3ERR_INVAL: 22,
  MNT3ERR_NAMETOOLONG: 63,
  MNT3ERR_NOTSUPP: 10004,
  MNT3ERR_SERVERFAULT: 10006,
} as const;

export interface BackendRoots {
  /**
   * Host directory of a backend (mounting it first when needed), or undefined when there is no such
   * backend. Throws an error with a `code` (BACKEND_UNAVAILABLE, BACKEND_HUNG) when it cannot serve.
   */
  rootOf(backend: string): string | undefined | Promise<string | undefined>;
  /** The backend's admission gate: bounded operations in flight, JUKEBOX past its bound. */
  gateOf?(backend: string): BackendGate | undefined;
  /** Whether a share may be the whole backend (default yes). */
  rootShareAllowed?(backend: string): boolean;
  /** How long READDIRPLUS may answer from a cached listing of a directory (default 0: never). */
  listingCacheMsOf?(backend: string): number;
}

/** An error of the backend layer (it has a string code): the share cannot be reached now. */
function backendCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('BACKEND_') ? code : undefined;
}

/** What one request may do on one object: resolved share, grant, creds, and the open object. */
interface Context {
  readonly share: ShareRoot;
  readonly grant: Grant;
  readonly creds: Uint32Array;
  readonly object: OpenObject;
}

/** A refusal names the share when the handle was one of ours for a known share (for the observer). */
type Resolved = { ok: true; ctx: Context } | { ok: false; status: Nfs3Status; share?: string };

const statusOnly = (status: Nfs3Status): { status: Nfs3Status } => ({ status });
/** A READ answered without data (in place): its status alone. */
const readFailed = (status: Nfs3Status): ReadInPlaceResult => ({ status, attr: false, count: 0, eof: false });
const STATUS_OK: { readonly status: Nfs3Status } = Object.freeze({ status: Nfs3Status.NFS3_OK });

/** A request's answer and the share it is counted under (none for a handle of no share). */
type Attempted<T> = { result: T; share: string | undefined };

/**
 * The name rules of DESIGN.md: one component, never a path. Returns a status for a bad name.
 * `dots` says whether "." and ".." are acceptable (LOOKUP only).
 */
export function checkName(name: Buffer, dots: boolean): Nfs3Status | undefined {
  if (name.length === 0) return Nfs3Status.NFS3ERR_INVAL;
  if (name.length > MAX_NAME) return Nfs3Status.NFS3ERR_NAMETOOLONG;
  if (name.includes(0x2f) || name.includes(0)) return Nfs3Status.NFS3ERR_INVAL;
  if (!dots && isDotName(name)) return Nfs3Status.NFS3ERR_INVAL;
  return undefined;
}

function isDotName(name: Buffer): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

function timeOf(t: NfsTime): [number, number] {
  return [t.seconds, t.nseconds];
}

const MAX_ID = 0xffff_fffe; // (uid_t)-1 means "leave unchanged" to chown: never a real id

/** A status for sattr3 values no backend can take (RFC 1813 section 3.3.2: NFS3ERR_INVAL). */
function checkSattr(attributes: Sattr3): Nfs3Status | undefined {
  if (attributes.uid !== undefined && attributes.uid > MAX_ID) return Nfs3Status.NFS3ERR_INVAL;
  if (attributes.gid !== undefined && attributes.gid > MAX_ID) return Nfs3Status.NFS3ERR_INVAL;
  if (attributes.size !== undefined && attributes.size > Number.MAX_SAFE_INTEGER) return Nfs3Status.NFS3ERR_FBIG;
  for (const time of [attributes.atime, attributes.mtime]) {
    if (time.how === 'client' && time.time.nseconds >= 1_000_000_000) return Nfs3Status.NFS3ERR_INVAL;
  }
  return undefined;
}

/** sattr3 -> the native setattr request (mode, owner, size, times), or null when nothing is set. */
function setattrRequest(attributes: Sattr3, skipMode = false): SetattrRequest | null {
  const request: SetattrRequest = {};
  let any = false;
  if (attributes.mode !== undefined && !skipMode) {
    request.mode = attributes.mode & 0o7777;
    any = true;
  }
  if (attributes.uid !== undefined) {
    request.uid = attributes.uid;
    any = true;
  }
  if (attributes.gid !== undefined) {
    request.gid = attributes.gid;
    any = true;
  }
  if (attributes.size !== undefined) {
    request.size = attributes.size;
    any = true;
  }
  if (attributes.atime.how !== 'dont') {
    request.atime = attributes.atime.how === 'server' ? 'now' : timeOf(attributes.atime.time);
    any = true;
  }
  if (attributes.mtime.how !== 'dont') {
    request.mtime = attributes.mtime.how === 'server' ? 'now' : timeOf(attributes.mtime.time);
    any = true;
  }
  return any ? request : null;
}

export interface ShareFileServiceOptions {
  native: FsBridge;
  grants: GrantTable;
  backends: BackendRoots;
  codec: HandleCodec;
  logger: Logger;
  /** Open objects kept (O_PATH descriptors). */
  cacheLimit?: number;
  /** Told about every NFS request that resolved to a share (metrics). */
  observer?: ShareOpObserver;
}

/** The NFSv3 procedures that name a share through a handle (RFC 1813 names, lower case). */
export type NfsShareProcedure =
  | 'getattr' | 'setattr' | 'lookup' | 'access' | 'readlink' | 'read' | 'write' | 'create' | 'mkdir'
  | 'symlink' | 'mknod' | 'remove' | 'rmdir' | 'rename' | 'link' | 'readdir' | 'readdirplus'
  | 'fsstat' | 'fsinfo' | 'pathconf' | 'commit';

/**
 * Watches the NFS requests that resolved to a share: a handle of ours for a known share (open, or
 * among the recently retired), whether or not the caller was granted it. onOp is called exactly
 * once per such request, with the status the guest is answered (RENAME and LINK: once, under the
 * first handle's share); a request whose handle names no share (NFS3ERR_BADHANDLE, an unknown share
 * key) or whose handler throws (the guest gets SYSTEM_ERR) is not reported. onRead: the bytes a
 * successful READ returned; onWrite: the `count` a successful WRITE reported written. Calls are
 * synchronous and must be cheap; a throw is logged and otherwise ignored.
 */
export interface ShareOpObserver {
  onOp(share: string, procedure: NfsShareProcedure, status: Nfs3Status): void;
  onRead(share: string, bytes: number): void;
  onWrite(share: string, bytes: number): void;
}

/** By grant (a changed grant is a new object): its anonymous credentials, and those of each AUTH_SYS credential seen. */
const effectiveCredentials = new WeakMap<Grant, { readonly anon: Uint32Array; readonly bySys: WeakMap<AuthSysParms, Uint32Array> }>();

/** [uid, gid, ...groups] of an AUTH_SYS caller under the grant's squash ('none' or 'root': 0 becomes the anon id). */
function squashed(grant: Grant, sys: AuthSysParms): Uint32Array {
  const root = grant.squash === 'root';
  const creds = Uint32Array.of(sys.uid, sys.gid, ...sys.gids);
  if (root) for (let i = 0; i < creds.length; i++) if (creds[i] === 0) creds[i] = i === 0 ? grant.anonUid : grant.anonGid;
  return creds;
}

export class ShareFileService implements NfsFileService, MountService {
  private readonly native: FsBridge;
  private readonly grants: GrantTable;
  private readonly backends: BackendRoots;
  private readonly codec: HandleCodec;
  private readonly logger: Logger;
  private readonly observer: ShareOpObserver | undefined;
  readonly shares: ShareRegistry;
  private readonly objects: ObjectCache;
  /** RFC 1813 section 3.3.7: changes on every start, so clients resend uncommitted writes. */
  readonly writeVerifier: Buffer = randomBytes(8);
  /** READDIR cookies are the backend's own directory offsets, valid across restarts: one verifier. */
  private readonly cookieVerifier: Buffer;
  /**
   * share key -> share id of every granted location, open or not: a handle of a share whose backend
   * is not mounted yet (or not any more) is still known, and answered JUKEBOX while it cannot open.
   */
  private readonly grantedKeys = new Map<string, string>();
  /** share id -> NFS requests resolved to it since start (kept across retire and re-open). */
  private readonly ops = new Map<string, number>();
  private readonly unsubscribe: () => void;
  private closed = false;
  /** The addon's parsed view of each open share root (shareContext). */
  private readonly nativeContexts = new WeakMap<ShareRoot, NativeShareContext>();

  constructor(options: ShareFileServiceOptions) {
    this.native = options.native;
    this.grants = options.grants;
    this.backends = options.backends;
    this.codec = options.codec;
    this.logger = options.logger;
    this.observer = options.observer;
    this.shares = new ShareRegistry(this.native, this.codec, (id, backend, sharePath) => !this.closed && this.grantedAt(id, backend, sharePath));
    this.objects = new ObjectCache(this.native, options.cacheLimit ?? 4096);
    this.cookieVerifier = this.codec.derive('readdir-cookie-verifier');
    for (const grant of this.grants.all()) this.grantedKeys.set(grantKeyHex(grant), grant.share);
    this.unsubscribe = this.grants.onChange(({ removed, added }) => {
      for (const grant of removed) if (!this.grantedAt(grant.share, grant.backend, grant.path)) this.grantedKeys.delete(grantKeyHex(grant));
      for (const grant of added) this.grantedKeys.set(grantKeyHex(grant), grant.share);
      this.followGrants(removed);
    });
  }

  /** Number of open share roots. */
  get openShareCount(): number {
    return this.shares.size;
  }

  /** share id -> NFS requests that resolved to it since start (a copy, for status reports). */
  shareOps(): Map<string, number> {
    return new Map(this.ops);
  }

  private grantedAt(shareId: string, backend: string, sharePath: string): boolean {
    const location = this.grants.location(shareId);
    return location !== undefined && location.backend === backend && location.path === sharePath;
  }

  /**
   * Retires the open roots of shares that lost their last grant or moved. A share's location can
   * only change once all its grants are gone, so the shares of removed grants are the only ones to
   * look at: a 10,000-grant snapshot costs a few map lookups per grant.
   */
  private followGrants(removed: readonly Grant[]): void {
    for (const grant of removed) {
      const share = this.shares.get(grant.share);
      if (share && !this.grantedAt(share.id, share.backend, share.sharePath)) this.retire(share);
    }
  }

  private retire(share: ShareRoot): void {
    this.objects.forgetShare(share);
    this.shares.retire(share);
    this.logger.debug({ share: share.id }, 'share closed');
  }

  // ---- shares and grants ------------------------------------------------------------------

  /** Opens a share's root (once: the registry keeps it by location); errors name the share and the reason. */
  async openShare(shareId: string): Promise<ShareRoot> {
    const location = this.grants.location(shareId);
    if (!location) throw new ShareOpenError('SHARE_PATH_MISSING', `share ${shareId} has no grant`);
    const open = () => this.openShareUngated(shareId);
    const gate = this.backends.gateOf?.(location.backend);
    if (!gate) return open();
    const outcome = await gate.run(open);
    if (outcome.ok) return outcome.value;
    throw new ShareOpenError('BACKEND_HUNG', `share ${shareId}: backend ${location.backend} did not answer (${outcome.reason})`);
  }

  /** openShare inside a gate already held (a handle's request re-opening its retired root). */
  private async openShareUngated(shareId: string): Promise<ShareRoot> {
    const location = this.grants.location(shareId);
    if (!location) throw new ShareOpenError('SHARE_PATH_MISSING', `share ${shareId} has no grant`);
    const root = await this.backends.rootOf(location.backend);
    if (root === undefined) throw new ShareOpenError('SHARE_PATH_MISSING', `share ${shareId}: no backend ${location.backend}`);
    if (this.backends.rootShareAllowed?.(location.backend) === false && location.path.split('/').every((part) => part === '' || part === '.')) {
      throw new ShareOpenError('SHARE_AT_BACKEND_ROOT', `share ${shareId}: backend ${location.backend} cannot be shared whole; grant a directory inside it`);
    }
    return this.shares.open(shareId, location.backend, root, location.path);
  }

  /** A backend is being remounted or unmounted: its roots and open objects are let go (re-opened on demand). */
  retireBackend(backend: string): void {
    for (const share of [...this.shares.roots()]) if (share.backend === backend) this.retire(share);
  }

  /**
   * The effective credentials after squash (RFC 1813 leaves it to the server; knfsd's rules). The
   * same array for the same grant and decoded credential (a connection decodes a credential it
   * sent recently once: rpc/message.ts RecentCredentials): a new one per request was garbage.
   * Nothing writes to it (the native layer copies it when a call is submitted).
   */
  static credentials(grant: Grant, caller: Caller): Uint32Array {
    let known = effectiveCredentials.get(grant);
    if (known === undefined) {
      known = { anon: Uint32Array.of(grant.anonUid, grant.anonGid), bySys: new WeakMap() };
      effectiveCredentials.set(grant, known);
    }
    const sys = caller.flavor === AuthFlavor.AUTH_SYS ? caller.authSys : null;
    if (!sys || grant.squash === 'all') return known.anon;
    let creds = known.bySys.get(sys);
    if (creds === undefined) {
      creds = squashed(grant, sys);
      known.bySys.set(sys, creds);
    }
    return creds;
  }

  /**
   * Handle -> share -> grant -> object, holding the share root until done(). For a handle whose tag
   * verifies, the answers are:
   * - its share is not granted to this guest (never was, or revoked), whether or not the share is
   *   still open for other guests: NFS3ERR_ACCES, the answer a revoke gives on the next request;
   * - its share is granted to this guest at another backend or path (moved): NFS3ERR_STALE, the
   *   handle names a place the share no longer is;
   * - its share was revoked and granted again at the same place: the handle works again (the share
   *   key derives from id, backend and path, so the re-opened root has the same key); a retired
   *   root is re-opened on demand;
   * - a share key neither open nor among the last retired ones: NFS3ERR_STALE.
   * `count` is false for the second handle of one request (RENAME, LINK) and MOUNT's own lookups.
   */
  private async resolve(caller: Caller, fh: Buffer, key: string, count: boolean): Promise<Resolved> {
    // (after a miss of resolveCached: the handle is checked and its object opened or found)
    const decoded = this.codec.decode(fh);
    if (!decoded) return { ok: false, status: Nfs3Status.NFS3ERR_BADHANDLE };
    let share = this.shares.byHandleKey(decoded.shareKey);
    if (!share) {
      const retiredId = this.knownShare(decoded.shareKey);
      const reopened = await this.reopenRetired(caller, decoded.shareKey);
      if (typeof reopened === 'number') return { ok: false, status: reopened, ...(retiredId === undefined ? {} : { share: retiredId }) };
      share = reopened;
    }
    const isRoot = decoded.kernel.bytes.equals(share.kernel.bytes) && decoded.kernel.type === share.kernel.type;
    const grant = this.grantFor(caller, share);
    if (!grant.ok) return grant;
    // Held before anything uses share.fd (open_by_handle_at below): a retire now defers the close.
    this.shares.hold(share);
    let object: OpenObject;
    if (isRoot) {
      object = { share, fd: share.fd, isRoot: true, refs: 1, movedAt: 0 };
    } else {
      const opened = await this.objects.acquire(key, share, decoded.kernel);
      if (typeof opened === 'number') {
        this.shares.release(share);
        const status = opened === E.ESTALE || opened === E.ENOENT ? Nfs3Status.NFS3ERR_STALE : errnoToNfs3(opened);
        return { ok: false, status, share: share.id };
      }
      object = opened;
    }
    return this.resolved(caller, share, grant.grant, object, count);
  }

  /**
   * resolve() for a handle in the object cache, without waiting for anything; undefined on a miss.
   * (The cache key is the whole handle, tag included: only a handle that resolved before is there.)
   */
  private resolveCached(caller: Caller, key: string, count: boolean): Resolved | undefined {
    const object = this.objects.acquireCached(key);
    if (!object) return undefined;
    // (A cached object's share is never retired: retiring drops its objects from the cache.)
    const grant = this.grantFor(caller, object.share);
    if (!grant.ok) {
      this.objects.release(object);
      return grant;
    }
    this.shares.hold(object.share);
    return this.resolved(caller, object.share, grant.grant, object, count);
  }

  /** The caller's grant for `share` where it is open now; STALE (moved or retired) or ACCES (none) otherwise. */
  private grantFor(caller: Caller, share: ShareRoot): { ok: true; grant: Grant } | { ok: false; status: Nfs3Status; share: string } {
    const grant = this.grants.find(caller.identity, share.id);
    if (!grant || grant.backend !== share.backend || grant.path !== share.sharePath || share.retired) {
      return { ok: false, status: grant ? Nfs3Status.NFS3ERR_STALE : Nfs3Status.NFS3ERR_ACCES, share: share.id };
    }
    return { ok: true, grant };
  }

  private resolved(caller: Caller, share: ShareRoot, grant: Grant, object: OpenObject, count: boolean): Resolved {
    if (count) this.ops.set(share.id, (this.ops.get(share.id) ?? 0) + 1);
    return { ok: true, ctx: { share, grant, creds: ShareFileService.credentials(grant, caller), object } };
  }

  /**
   * The root for a share key that is not open: re-opened when it was retired and this guest holds a
   * grant for the share at the same place again; otherwise the status resolve() answers.
   */
  private async reopenRetired(caller: Caller, keyHex: string): Promise<ShareRoot | Nfs3Status> {
    const shareId = this.knownShare(keyHex);
    if (shareId === undefined) return Nfs3Status.NFS3ERR_STALE;
    const grant = this.grants.find(caller.identity, shareId);
    if (!grant) return Nfs3Status.NFS3ERR_ACCES;
    if (HandleCodec.shareKey(shareId, grant.backend, grant.path).toString('hex') !== keyHex) return Nfs3Status.NFS3ERR_STALE;
    try {
      await this.openShareUngated(shareId);
    } catch (error) {
      // a backend that is being mounted, remounted or hangs: the guest tries again later
      if (backendCode(error) !== undefined) return Nfs3Status.NFS3ERR_JUKEBOX;
      if (!(error instanceof ShareOpenError)) throw error;
      this.logger.debug({ share: shareId, err: error.message }, 'share cannot be re-opened');
      return this.grants.find(caller.identity, shareId) ? Nfs3Status.NFS3ERR_STALE : Nfs3Status.NFS3ERR_ACCES;
    }
    // Whatever holds the key now: the grants may have changed again while the open was under way.
    const share = this.shares.byHandleKey(keyHex);
    if (share) return share;
    return this.grants.find(caller.identity, shareId) ? Nfs3Status.NFS3ERR_STALE : Nfs3Status.NFS3ERR_ACCES;
  }

  /** The share of a key that is not open: granted there now, or retired not long ago. */
  private knownShare(keyHex: string): string | undefined {
    return this.grantedKeys.get(keyHex) ?? this.shares.retiredShare(keyHex);
  }

  private done(ctx: Context): void {
    if (!ctx.object.isRoot) this.objects.release(ctx.object);
    this.shares.release(ctx.share);
  }

  /**
   * Runs `body` with the object named by `fh`; `fail` builds the answer for a status. `procedure`
   * names the NFS request, counted and reported to the observer once it is answered; null for the
   * second handle of one request (RENAME, LINK) and MOUNT's own lookups (not counted, as resolve()).
   *
   * with() and attempt() are the path of every request, so they are written with as few promises
   * and async frames as can be: each one is an allocation and a microtask hop per request, and at
   * tens of thousands of requests a second those were most of the young-generation garbage whose
   * scavenges set the p99 latency.
   */
  private with<T extends { status: Nfs3Status }>(
    caller: Caller,
    fh: Buffer,
    fail: (status: Nfs3Status) => T,
    body: (ctx: Context) => Promise<T>,
    procedure: NfsShareProcedure | null,
    late?: (result: T) => void,
  ): Promise<T> {
    const key = fh.toString('latin1');
    const target = this.backendOfHandle(fh, key);
    const gate = target && this.backends.gateOf?.(target.backend);
    const count = procedure !== null;
    if (!gate) return this.attempt(caller, fh, key, fail, body, count).then((answered) => this.answered(answered, procedure));
    // Everything that may touch the backend runs inside its gate (DESIGN.md: a hung backend
    // stalls nothing else); past the bound the guest hears JUKEBOX and retries later.
    // The request's bytes (fh, names, WRITE data: views into its record, which may be a pooled
    // buffer) stay pinned until the work itself settles, not just until the guest is answered:
    // past the deadline the work may still be waiting to resolve its handle, then run.
    largeBuffers.pin(fh);
    return gate
      .run(
        () => this.attempt(caller, fh, key, fail, body, count),
        late && ((answer) => late(answer.result)),
        () => largeBuffers.unpin(fh),
      )
      .then((outcome) => this.answered(outcome.ok ? outcome.value : { result: fail(Nfs3Status.NFS3ERR_JUKEBOX), share: target.id }, procedure));
  }

  private answered<T extends { status: Nfs3Status; copyInstead?: boolean }>(answered: Attempted<T>, procedure: NfsShareProcedure | null): T {
    // A spliced READ that found no pipe is not an answer: the handler reads it again by copy, and
    // that read is the one counted.
    if (procedure !== null && answered.share !== undefined && answered.result.copyInstead !== true) {
      this.observeOp(answered.share, procedure, answered.result.status);
    }
    return answered.result;
  }

  /**
   * The second handle of one request (RENAME, LINK), inside the slot the first one holds: a second
   * slot of the same gate could deadlock against requests holding their first. A handle on another
   * backend is another share anyway: NFS3ERR_XDEV before any I/O on it. Not counted again.
   */
  private async withSecond<T extends { status: Nfs3Status }>(
    caller: Caller,
    first: Context,
    fh: Buffer,
    fail: (status: Nfs3Status) => T,
    body: (ctx: Context) => Promise<T>,
  ): Promise<T> {
    const key = fh.toString('latin1');
    const target = this.backendOfHandle(fh, key);
    if (target && target.backend !== first.share.backend) return fail(Nfs3Status.NFS3ERR_XDEV);
    return (await this.attempt(caller, fh, key, fail, body, false)).result;
  }

  /** resolve + body + done: the answer and the share it is counted under (none for a handle of no share). */
  private attempt<T extends { status: Nfs3Status }>(
    caller: Caller,
    fh: Buffer,
    key: string,
    fail: (status: Nfs3Status) => T,
    body: (ctx: Context) => Promise<T>,
    count: boolean,
  ): Promise<Attempted<T>> {
    // A handle in the object cache resolves without waiting for anything (the common case).
    const cached = this.resolveCached(caller, key, count);
    if (cached === undefined) return this.resolve(caller, fh, key, count).then((resolved) => this.run(resolved, fail, body));
    return this.run(cached, fail, body);
  }

  /** body with a resolved object, then done(); or the failure answer. */
  private run<T extends { status: Nfs3Status }>(resolved: Resolved, fail: (status: Nfs3Status) => T, body: (ctx: Context) => Promise<T>): Promise<Attempted<T>> {
    if (!resolved.ok) return Promise.resolve({ result: fail(resolved.status), share: resolved.share });
    const ctx = resolved.ctx;
    let work: Promise<T>;
    try {
      work = body(ctx);
    } catch (error) {
      this.done(ctx);
      return Promise.reject(error);
    }
    return work.then(
      (result) => {
        this.done(ctx);
        return { result, share: ctx.share.id };
      },
      (error: unknown) => {
        this.done(ctx);
        throw error;
      },
    );
  }

  /**
   * Which backend (and share) a handle points at, from its share key alone: no I/O and no tag check
   * (resolve() checks the tag). Only picks the gate; undefined when the key names no share we know.
   */
  private backendOfHandle(fh: Buffer, key: string): { readonly backend: string; readonly id: string } | undefined {
    // The share's own record where there is one: this runs for every request, and a new object
    // each time was garbage.
    const cached = this.objects.peek(key);
    if (cached) return cached.share;
    if (fh.length < 2 + SHARE_KEY_BYTES) return undefined;
    const keyHex = fh.toString('hex', 2, 2 + SHARE_KEY_BYTES);
    const open = this.shares.byHandleKey(keyHex);
    if (open) return open;
    const retired = this.knownShare(keyHex);
    const location = retired === undefined ? undefined : this.grants.location(retired);
    return location && retired !== undefined ? { backend: location.backend, id: retired } : undefined;
  }

  private observeOp(share: string, procedure: NfsShareProcedure, status: Nfs3Status): void {
    if (!this.observer) return;
    try {
      this.observer.onOp(share, procedure, status);
    } catch (err) {
      this.logger.error({ err }, 'share observer threw');
    }
  }

  private observeBytes(share: string, kind: 'read' | 'write', bytes: number): void {
    if (!this.observer) return;
    try {
      if (kind === 'read') this.observer.onRead(share, bytes);
      else this.observer.onWrite(share, bytes);
    } catch (err) {
      this.logger.error({ err }, 'share observer threw');
    }
  }

  private async attrOf(ctx: Context): Promise<Fattr3 | null> {
    const result = await this.native.fstat(ctx.object.fd);
    return result.stat ? toFattr3(result.stat, ctx.share.fsid) : null;
  }

  /** An NFS handle for an object found under `share`, or null when it may not be handed out. */
  private handleFor(share: ShareRoot, kernel: { type: number; bytes: Buffer } | undefined, mountId: number | undefined): Buffer | null {
    if (!kernel || mountId !== share.mountId) return null;
    return this.codec.encode(share.key, kernel);
  }

  private readOnly(ctx: Context): boolean {
    return ctx.grant.access === 'ro';
  }

  // ---- NFSv3 procedures (RFC 1813 section 3.3) --------------------------------------------

  getattr(caller: Caller, fh: Buffer): Promise<AttrResult> {
    // (then(), not an async body: one frame fewer on the busiest request there is)
    return this.with<AttrResult>(caller, fh, (status) => ({ status, attr: null }), (ctx) => this.native.fstat(ctx.object.fd).then((result): AttrResult => {
      if (result.err !== 0 || !result.stat) return { status: errnoToNfs3(result.err), attr: null };
      if (result.stat.nlink === 0 && !isDirectory(result.stat)) {
        // Unlinked on the host while we held it open: gone, as knfsd would say. (Clients never
        // unlink files they hold open: they rename them to .nfsXXXX instead.)
        if (!ctx.object.isRoot) this.objects.forget(fh.toString('latin1'));
        return { status: Nfs3Status.NFS3ERR_STALE, attr: null };
      }
      return { status: Nfs3Status.NFS3_OK, attr: toFattr3(result.stat, ctx.share.fsid) };
    }), 'getattr');
  }

  getattrInPlace(caller: Caller, fh: Buffer, target: ReadTarget): Promise<{ status: Nfs3Status }> {
    return this.with(caller, fh, statusOnly, (ctx) =>
      // Pinned while the pool thread may write into it (a pooled buffer), even past a JUKEBOX.
      largeBuffers.whilePinned(
        target.buffer,
        () => this.native.getattrEncode(ctx.object.fd, target.buffer, target.offset, this.shareContext(ctx.share)),
        (code) => {
          if (code === 0) return STATUS_OK;
          if (code !== this.native.inPlaceCodes.unlinked) return statusOnly(errnoToNfs3(code));
          // as getattr(): unlinked on the host while we held it open
          if (!ctx.object.isRoot) this.objects.forget(fh.toString('latin1'));
          return statusOnly(Nfs3Status.NFS3ERR_STALE);
        },
      ), 'getattr');
  }

  setattr(caller: Caller, fh: Buffer, attributes: Sattr3, guard: NfsTime | null): Promise<WccResult> {
    return this.with(caller, fh, (status) => ({ status, wcc: NO_WCC }), async (ctx) => {
      if (this.readOnly(ctx)) return { status: Nfs3Status.NFS3ERR_ROFS, wcc: NO_WCC };
      const invalid = checkSattr(attributes) ?? (guard && guard.nseconds >= 1_000_000_000 ? Nfs3Status.NFS3ERR_INVAL : undefined);
      if (invalid !== undefined) return { status: invalid, wcc: NO_WCC };
      const request = setattrRequest(attributes) ?? {};
      if (guard) request.guardCtime = timeOf(guard);
      const result = await this.native.setattr(ctx.creds, ctx.object.fd, request);
      const status =
        result.err === 0 ? Nfs3Status.NFS3_OK : result.err === -1 ? Nfs3Status.NFS3ERR_NOT_SYNC : errnoToNfs3(result.err);
      return { status, wcc: wcc(result.before, result.after, ctx.share.fsid) };
    }, 'setattr');
  }

  lookup(caller: Caller, dirFh: Buffer, name: Buffer): Promise<LookupResult> {
    const bad = checkName(name, true);
    return this.with<LookupResult>(caller, dirFh, (status) => ({ status, objAttr: null, dirAttr: null }), (ctx) =>
      bad === undefined ? this.lookupIn(ctx, name) : this.attrOf(ctx).then((dirAttr) => ({ status: bad, objAttr: null, dirAttr })), 'lookup');
  }

  lookupInPlace(caller: Caller, dirFh: Buffer, name: Buffer, target: ReadTarget): Promise<LookupInPlaceResult> | null {
    // ".." has the share-root rule (lookupIn); a bad name is answered by lookup()
    if (checkName(name, true) !== undefined || (name.length === 2 && isDotName(name))) return null;
    return this.with<LookupInPlaceResult>(caller, dirFh, (status) => ({ status, bytes: 0 }), (ctx) =>
      largeBuffers.whilePinned(
        target.buffer,
        () => this.native.lookupEncode(ctx.creds, ctx.object.fd, name, target.buffer, target.offset, this.shareContext(ctx.share)),
        (code): LookupInPlaceResult => {
          if (code > 0) return { status: Nfs3Status.NFS3_OK, bytes: code };
          // LOOKUP3resfail: the directory's post_op_attr is written, present or not
          const bytes = target.buffer.readUInt32BE(target.offset) === 1 ? POST_OP_ATTR_SIZE_PRESENT : 4;
          const codes = this.native.inPlaceCodes;
          const status =
            code === codes.notDir ? Nfs3Status.NFS3ERR_NOTDIR
            : code === codes.otherMount ? Nfs3Status.NFS3ERR_ACCES // another filesystem mounted inside the share
            : code === codes.noHandle ? Nfs3Status.NFS3ERR_SERVERFAULT
            : errnoToNfs3(-code);
          return { status, bytes };
        },
      ), 'lookup');
  }

  /** LOOKUP within a resolved directory, with the share-root rule for `..`. */
  private async lookupIn(ctx: Context, name: Buffer): Promise<LookupResult> {
    const { share } = ctx;
    if (!(name.length === 2 && isDotName(name))) {
      // Any name but "..": the directory's stat comes with the lookup (one pool round trip).
      const found = await this.native.lookup(ctx.creds, ctx.object.fd, name);
      const dirAttr = found.dirStat ? toFattr3(found.dirStat, share.fsid) : null;
      if (found.dirStat && !isDirectory(found.dirStat)) return { status: Nfs3Status.NFS3ERR_NOTDIR, objAttr: null, dirAttr };
      return this.lookupAnswer(share, found, dirAttr);
    }
    const dirResult = await this.native.fstat(ctx.object.fd);
    const dirStat = dirResult.stat;
    const dirAttr = dirStat ? toFattr3(dirStat, share.fsid) : null;
    if (dirStat && !isDirectory(dirStat)) return { status: Nfs3Status.NFS3ERR_NOTDIR, objAttr: null, dirAttr };
    const atRoot = ctx.object.isRoot || (dirStat !== undefined && dirStat.ino === share.ino && dirStat.dev === share.dev);
    const dotdot = name.length === 2 && isDotName(name);
    if (atRoot && dotdot) name = Buffer.from('.');
    if (!atRoot && dotdot) {
      // A directory moved out of the share (by the host, or a guest of an enclosing share) after
      // its handle was given must not lead upward into the rest of the backend.
      const walk = await this.native.beneath(ctx.object.fd, share.dev, share.ino);
      if (walk.err !== 0 || !walk.beneath) return { status: Nfs3Status.NFS3ERR_STALE, objAttr: null, dirAttr };
    }
    return this.lookupAnswer(share, await this.native.lookup(ctx.creds, ctx.object.fd, name), dirAttr);
  }

  private lookupAnswer(share: ShareRoot, found: ObjectResult, dirAttr: Fattr3 | null): LookupResult {
    if (found.err !== 0 || !found.stat) return { status: errnoToNfs3(found.err), objAttr: null, dirAttr };
    // Another filesystem mounted inside the share is not part of it.
    const handle = this.handleFor(share, found.handle, found.mountId);
    if (!handle) {
      return { status: found.mountId !== share.mountId ? Nfs3Status.NFS3ERR_ACCES : Nfs3Status.NFS3ERR_SERVERFAULT, objAttr: null, dirAttr };
    }
    return { status: Nfs3Status.NFS3_OK, handle, objAttr: toFattr3(found.stat, share.fsid), dirAttr };
  }

  access(caller: Caller, fh: Buffer, requested: number): Promise<AccessResult> {
    return this.with(caller, fh, (status) => ({ status, attr: null, access: 0 }), async (ctx) => {
      const [mask, stat] = await Promise.all([this.native.accessMask(ctx.creds, ctx.object.fd), this.native.fstat(ctx.object.fd)]);
      if (mask.err !== 0 || !stat.stat) return { status: errnoToNfs3(mask.err || stat.err), attr: null, access: 0 };
      const directory = isDirectory(stat.stat);
      const r = (mask.mask & 4) !== 0;
      const w = (mask.mask & 2) !== 0;
      const x = (mask.mask & 1) !== 0;
      let granted = 0;
      if (r) granted |= ACCESS3.READ;
      if (directory) {
        if (x) granted |= ACCESS3.LOOKUP;
        if (w && x) granted |= ACCESS3.MODIFY | ACCESS3.EXTEND | ACCESS3.DELETE;
      } else {
        if (x) granted |= ACCESS3.EXECUTE;
        if (w) granted |= ACCESS3.MODIFY | ACCESS3.EXTEND;
      }
      if (this.readOnly(ctx)) granted &= ~(ACCESS3.MODIFY | ACCESS3.EXTEND | ACCESS3.DELETE);
      return { status: Nfs3Status.NFS3_OK, attr: toFattr3(stat.stat, ctx.share.fsid), access: granted & requested };
    }, 'access');
  }

  readlink(caller: Caller, fh: Buffer): Promise<ReadlinkResult> {
    return this.with<ReadlinkResult>(caller, fh, (status) => ({ status, attr: null }), async (ctx) => {
      const result = await this.native.readlink(ctx.creds, ctx.object.fd);
      const attr = result.stat ? toFattr3(result.stat, ctx.share.fsid) : await this.attrOf(ctx);
      if (result.err !== 0 || !result.target) return { status: errnoToNfs3(result.err), attr };
      return { status: Nfs3Status.NFS3_OK, attr, target: result.target };
    }, 'readlink');
  }

  read(caller: Caller, fh: Buffer, offset: bigint, count: number, target: ReadTarget): Promise<ReadResult> {
    return this.with(caller, fh, (status) => ({ status, attr: null, count: 0, eof: false }), async (ctx) => {
      // Pinned while the pool thread may write into it, even past a JUKEBOX at the gate's timeout.
      const result = await largeBuffers.whilePinned(target.buffer, () =>
        this.native.read(ctx.creds, ctx.object.fd, target.buffer, target.offset, count, offset),
      );
      const attr = result.after ? toFattr3(result.after, ctx.share.fsid) : null;
      if (result.err !== 0) return { status: errnoToNfs3(result.err), attr: attr ?? (await this.attrOf(ctx)), count: 0, eof: false };
      this.observeBytes(ctx.share.id, 'read', result.count);
      return { status: Nfs3Status.NFS3_OK, attr, count: result.count, eof: result.eof ?? false };
    }, 'read');
  }

  readInPlace(caller: Caller, fh: Buffer, offset: bigint, count: number, target: ReadInPlaceTarget): Promise<ReadInPlaceResult> {
    return this.with(caller, fh, readFailed, (ctx) =>
      // Pinned while the pool thread may write into it (a pooled buffer), even past a JUKEBOX at
      // the gate's timeout.
      largeBuffers.whilePinned(
        target.buffer,
        () => this.native.readEncode(ctx.creds, ctx.object.fd, target.buffer, target.offset, count, offset, target.attrOffset, this.shareContext(ctx.share)),
        (encoded): ReadInPlaceResult => {
          const read = decodeReadEncoded(encoded);
          if (read.err !== 0) return { status: errnoToNfs3(read.err), attr: read.attr, count: 0, eof: false };
          this.observeBytes(ctx.share.id, 'read', read.count);
          return { status: Nfs3Status.NFS3_OK, attr: read.attr, count: read.count, eof: read.eof };
        },
      ), 'read');
  }

  readToPipe(caller: Caller, fh: Buffer, offset: bigint, count: number): Promise<SplicedReadResult> {
    return this.with<SplicedReadResult>(caller, fh, (status) => ({ status, attr: null, count: 0, eof: false }), async (ctx) => {
      const read = await this.native.readToPipe(ctx.creds, ctx.object.fd, count, offset);
      if (read.pipeFd !== undefined) pipeOpened();
      // No pipe to be had (descriptors or the per-user pipe quota spent): this READ copies as usual.
      if (read.err === E.ENOBUFS) return { status: Nfs3Status.NFS3_OK, attr: null, count: 0, eof: false, copyInstead: true };
      const attr = read.after ? toFattr3(read.after, ctx.share.fsid) : null;
      if (read.err !== 0 || read.pipeFd === undefined) {
        if (read.pipeFd !== undefined) closePipe(read.pipeFd);
        return { status: errnoToNfs3(read.err || E.EIO), attr: attr ?? (await this.attrOf(ctx)), count: 0, eof: false };
      }
      this.observeBytes(ctx.share.id, 'read', read.count);
      return { status: Nfs3Status.NFS3_OK, attr, count: read.count, eof: read.eof ?? false, pipeFd: read.pipeFd };
    }, 'read', (late) => {
      // Filled after the guest was answered JUKEBOX (the gate's bound passed): no reply takes it.
      if (late.pipeFd !== undefined) closePipe(late.pipeFd);
    });
  }

  write(caller: Caller, fh: Buffer, offset: bigint, stable: StableHow, data: Buffer): Promise<WriteResult> {
    const fail = (status: Nfs3Status): WriteResult => ({ status, wcc: NO_WCC, count: 0, committed: stable, verifier: this.writeVerifier });
    return this.with(caller, fh, fail, async (ctx) => {
      if (this.readOnly(ctx)) return fail(Nfs3Status.NFS3ERR_ROFS);
      if (offset + BigInt(data.length) > BigInt(Number.MAX_SAFE_INTEGER)) return fail(Nfs3Status.NFS3ERR_FBIG);
      // data is a view into the request's record, which with() keeps pinned until this settles.
      const result = await this.native.write(ctx.creds, ctx.object.fd, data, offset, stable);
      const data_wcc = wcc(result.before, result.after, ctx.share.fsid);
      if (result.err !== 0) return { ...fail(errnoToNfs3(result.err)), wcc: data_wcc };
      this.observeBytes(ctx.share.id, 'write', result.count);
      return { status: Nfs3Status.NFS3_OK, wcc: data_wcc, count: result.count, committed: stable, verifier: this.writeVerifier };
    }, 'write');
  }

  /** Runs a directory-changing procedure: name checks, read-only grants, the directory's wcc. */
  private async changeDir(
    procedure: 'create' | 'mkdir' | 'symlink' | 'mknod',
    caller: Caller,
    dirFh: Buffer,
    name: Buffer,
    attributes: Sattr3 | null,
    body: (ctx: Context) => Promise<CreatedResult>,
  ): Promise<CreatedResult> {
    const fail = (status: Nfs3Status): CreatedResult => ({ status, handle: null, objAttr: null, dirWcc: NO_WCC });
    return this.with(caller, dirFh, fail, async (ctx) => {
      const bad = checkName(name, true) ?? (attributes ? checkSattr(attributes) : undefined);
      if (bad !== undefined) return fail(bad);
      if (isDotName(name)) return fail(Nfs3Status.NFS3ERR_EXIST);
      if (this.readOnly(ctx)) return fail(Nfs3Status.NFS3ERR_ROFS);
      return body(ctx);
    }, procedure);
  }

  private created(ctx: Context, result: CreateResult): CreatedResult {
    const dirWcc = wcc(result.dirBefore, result.dirAfter, ctx.share.fsid);
    if (result.err !== 0) return { status: errnoToNfs3(result.err), handle: null, objAttr: null, dirWcc };
    const object = result.object;
    const handle = object ? this.handleFor(ctx.share, object.handle, object.mountId) : null;
    return {
      status: Nfs3Status.NFS3_OK,
      handle,
      objAttr: object?.stat ? toFattr3(object.stat, ctx.share.fsid) : null,
      dirWcc,
    };
  }

  /**
   * The answer to a create, after applying the rest of sattr3 as the caller (owner, size, times;
   * the mode went into the create itself). `onlySize` for an existing file under UNCHECKED.
   */
  private async finishCreate(ctx: Context, result: CreateResult, attributes: Sattr3, onlySize = false): Promise<CreatedResult> {
    const created = this.created(ctx, result);
    const kernel = result.object?.handle;
    if (created.status !== Nfs3Status.NFS3_OK || !created.handle || !kernel) return created;
    const request = onlySize
      ? attributes.size !== undefined
        ? { size: attributes.size }
        : null
      : setattrRequest(attributes, true);
    if (!request) return created;
    const opened = await this.objects.acquire(created.handle.toString('latin1'), ctx.share, kernel);
    if (typeof opened === 'number') return { ...created, status: errnoToNfs3(opened) };
    try {
      const changed = await this.native.setattr(ctx.creds, opened.fd, request);
      if (changed.err !== 0) return { ...created, status: errnoToNfs3(changed.err) };
      return { ...created, objAttr: changed.after ? toFattr3(changed.after, ctx.share.fsid) : created.objAttr };
    } finally {
      this.objects.release(opened);
    }
  }

  async create(caller: Caller, dirFh: Buffer, name: Buffer, how: CreateHow): Promise<CreatedResult> {
    return this.changeDir('create', caller, dirFh, name, how.mode === CreateMode.EXCLUSIVE ? null : how.attributes, async (ctx) => {
      if (how.mode === CreateMode.EXCLUSIVE) return this.createExclusive(ctx, name, how.verifier);
      const mode = (how.attributes.mode ?? 0o644) & 0o7777;
      const result = await this.native.create(ctx.creds, ctx.object.fd, name, mode, true);
      if (result.err !== E.EEXIST || how.mode === CreateMode.GUARDED) {
        return this.finishCreate(ctx, result, how.attributes);
      }
      // UNCHECKED on an existing name: open it as the caller would (write permission, regular file)
      // and apply only the size (RFC 1813 section 3.3.8; knfsd does the same).
      const existing = await this.native.create(ctx.creds, ctx.object.fd, name, mode, false);
      return this.finishCreate(ctx, existing, how.attributes, true);
    });
  }

  /**
   * EXCLUSIVE CREATE (RFC 1813 section 3.3.8): the verifier is kept in the new file's atime and
   * mtime seconds, so a retransmitted CREATE finds its own file and succeeds.
   */
  private async createExclusive(ctx: Context, name: Buffer, verifier: Buffer): Promise<CreatedResult> {
    const atime = verifier.readUInt32BE(0);
    const mtime = verifier.readUInt32BE(4);
    const result = await this.native.create(ctx.creds, ctx.object.fd, name, 0o600, true);
    if (result.err === E.EEXIST) {
      const stat = result.object?.stat;
      if (stat && isRegular(stat) && stat.atimeSec === atime && stat.mtimeSec === mtime) {
        return this.created(ctx, { ...result, err: 0 });
      }
      return this.created(ctx, result);
    }
    return this.finishCreate(ctx, result, {
      atime: { how: 'client', time: { seconds: atime, nseconds: 0 } },
      mtime: { how: 'client', time: { seconds: mtime, nseconds: 0 } },
    });
  }

  async mkdir(caller: Caller, dirFh: Buffer, name: Buffer, attributes: Sattr3): Promise<CreatedResult> {
    return this.changeDir('mkdir', caller, dirFh, name, attributes, async (ctx) => {
      const result = await this.native.mkdir(ctx.creds, ctx.object.fd, name, (attributes.mode ?? 0o755) & 0o7777);
      return this.finishCreate(ctx, result, attributes);
    });
  }

  async symlink(caller: Caller, dirFh: Buffer, name: Buffer, attributes: Sattr3, target: Buffer): Promise<CreatedResult> {
    return this.changeDir('symlink', caller, dirFh, name, attributes, async (ctx) => {
      if (target.length === 0 || target.includes(0)) return { status: Nfs3Status.NFS3ERR_INVAL, handle: null, objAttr: null, dirWcc: NO_WCC };
      if (target.length > MAX_SYMLINK_TARGET) return { status: Nfs3Status.NFS3ERR_NAMETOOLONG, handle: null, objAttr: null, dirWcc: NO_WCC };
      const result = await this.native.symlink(ctx.creds, ctx.object.fd, name, target);
      // Symlink modes mean nothing on Linux; owner and times still apply.
      return this.finishCreate(ctx, result, { ...attributes, mode: undefined, size: undefined });
    });
  }

  async mknod(caller: Caller, dirFh: Buffer, name: Buffer, what: MknodData): Promise<CreatedResult> {
    return this.changeDir('mknod', caller, dirFh, name, 'attributes' in what ? what.attributes : null, async (ctx) => {
      const fail = (status: Nfs3Status): CreatedResult => ({ status, handle: null, objAttr: null, dirWcc: NO_WCC });
      // Device nodes would let a guest reach host devices through the share: refused, as a local
      // unprivileged user is refused (EPERM). FIFOs and sockets are plain directory entries.
      if (what.type === Ftype3.NF3CHR || what.type === Ftype3.NF3BLK) return fail(Nfs3Status.NFS3ERR_PERM);
      if (what.type !== Ftype3.NF3FIFO && what.type !== Ftype3.NF3SOCK) return fail(Nfs3Status.NFS3ERR_BADTYPE);
      const typeBits = what.type === Ftype3.NF3FIFO ? S_IFIFO : S_IFSOCK;
      const mode = typeBits | ((what.attributes.mode ?? 0o644) & 0o7777);
      const result = await this.native.mknod(ctx.creds, ctx.object.fd, name, mode, 0, 0);
      return this.finishCreate(ctx, result, what.attributes);
    });
  }

  private async removeEntry(caller: Caller, dirFh: Buffer, name: Buffer, isDir: boolean): Promise<WccResult> {
    return this.with(caller, dirFh, (status) => ({ status, wcc: NO_WCC }), async (ctx) => {
      const bad = checkName(name, false);
      if (bad !== undefined) return { status: isDotName(name) && isDir && name.length === 2 ? Nfs3Status.NFS3ERR_NOTEMPTY : bad, wcc: NO_WCC };
      if (this.readOnly(ctx)) return { status: Nfs3Status.NFS3ERR_ROFS, wcc: NO_WCC };
      const result = await this.native.unlink(ctx.creds, ctx.object.fd, name, isDir);
      return {
        status: result.err === 0 ? Nfs3Status.NFS3_OK : errnoToNfs3(result.err),
        wcc: wcc(result.dirBefore, result.dirAfter, ctx.share.fsid),
      };
    }, isDir ? 'rmdir' : 'remove');
  }

  remove(caller: Caller, dirFh: Buffer, name: Buffer): Promise<WccResult> {
    return this.removeEntry(caller, dirFh, name, false);
  }

  rmdir(caller: Caller, dirFh: Buffer, name: Buffer): Promise<WccResult> {
    return this.removeEntry(caller, dirFh, name, true);
  }

  async rename(caller: Caller, fromDirFh: Buffer, fromName: Buffer, toDirFh: Buffer, toName: Buffer): Promise<RenameResult> {
    const fail = (status: Nfs3Status): RenameResult => ({ status, fromDirWcc: NO_WCC, toDirWcc: NO_WCC });
    return this.with(caller, fromDirFh, fail, (from) =>
      this.withSecond(caller, from, toDirFh, fail, async (to) => {
        if (from.share !== to.share) return fail(Nfs3Status.NFS3ERR_XDEV);
        const bad = checkName(fromName, false) ?? checkName(toName, false);
        if (bad !== undefined) return fail(bad);
        if (this.readOnly(from)) return fail(Nfs3Status.NFS3ERR_ROFS);
        const result = await this.native.rename(from.creds, from.object.fd, fromName, to.object.fd, toName);
        return {
          status: result.err === 0 ? Nfs3Status.NFS3_OK : errnoToNfs3(result.err),
          fromDirWcc: wcc(result.fromDirBefore, result.fromDirAfter, from.share.fsid),
          toDirWcc: wcc(result.toDirBefore, result.toDirAfter, to.share.fsid),
        };
      }),
    'rename', // one request, counted and reported once under the first handle's share
    );
  }

  async link(caller: Caller, fh: Buffer, linkDirFh: Buffer, linkName: Buffer): Promise<LinkResult> {
    const fail = (status: Nfs3Status): LinkResult => ({ status, fileAttr: null, linkDirWcc: NO_WCC });
    return this.with(caller, fh, fail, (file) =>
      this.withSecond(caller, file, linkDirFh, fail, async (dir) => {
        if (file.share !== dir.share) return fail(Nfs3Status.NFS3ERR_XDEV);
        const bad = checkName(linkName, true);
        if (bad !== undefined) return fail(bad);
        if (isDotName(linkName)) return fail(Nfs3Status.NFS3ERR_EXIST);
        if (this.readOnly(dir)) return fail(Nfs3Status.NFS3ERR_ROFS);
        const result = await this.native.link(dir.creds, file.object.fd, dir.object.fd, linkName);
        const after = result.objectAfter ?? result.object?.stat;
        return {
          status: result.err === 0 ? Nfs3Status.NFS3_OK : errnoToNfs3(result.err),
          fileAttr: after ? toFattr3(after, file.share.fsid) : null,
          linkDirWcc: wcc(result.dirBefore, result.dirAfter, dir.share.fsid),
        };
      }),
    'link', // one request, counted and reported once under the first handle's share
    );
  }

  /** A READDIR cookie verifier we accept: ours, or zeros (RFC 1813 lets a client send those). */
  private verifierAccepted(cookie: bigint, verifier: Buffer): boolean {
    return cookie === 0n || verifier.equals(this.cookieVerifier) || verifier.equals(ZERO_VERIFIER);
  }

  /** Shared READDIR / READDIRPLUS work: verifier check, listing, the share-root rule for "..". */
  private async list(ctx: Context, cookie: bigint, verifier: Buffer, maxEntries: number, plus: boolean) {
    if (!this.verifierAccepted(cookie, verifier)) {
      return { status: Nfs3Status.NFS3ERR_BAD_COOKIE as Nfs3Status, dirAttr: await this.attrOf(ctx), entries: [] as DirEntryPlus[], eof: false };
    }
    const result = await this.native.readdir(ctx.creds, ctx.object.fd, cookie, maxEntries, plus);
    const dirAttr = result.dirStat ? toFattr3(result.dirStat, ctx.share.fsid) : await this.attrOf(ctx);
    if (result.err !== 0) {
      const status = result.err === E.EINVAL && cookie !== 0n ? Nfs3Status.NFS3ERR_BAD_COOKIE : errnoToNfs3(result.err);
      return { status, dirAttr, entries: [] as DirEntryPlus[], eof: false };
    }
    const share = ctx.share;
    const atRoot = ctx.object.isRoot || (result.dirStat !== undefined && result.dirStat.ino === share.ino && result.dirStat.dev === share.dev);
    const entries: DirEntryPlus[] = [];
    for (const entry of result.entries) {
      const dotdot = entry.name.length === 2 && entry.name[0] === 0x2e && entry.name[1] === 0x2e;
      let stat: NativeStat | undefined = entry.stat;
      let handle: Buffer | null = plus ? this.handleFor(share, entry.handle, entry.mountId) : null;
      let fileid = stat?.ino ?? entry.ino;
      if (dotdot && atRoot) {
        // `..` of a share root is the root itself: nothing above the share is ever named.
        stat = result.dirStat;
        handle = plus ? share.handle : null;
        fileid = share.ino;
      } else if (dotdot) {
        // Elsewhere the parent's handle is left to LOOKUP, which checks it is still in the share.
        stat = undefined;
        handle = null;
      }
      entries.push({
        fileid,
        name: entry.name,
        cookie: entry.cookie,
        attr: plus && stat && handle ? toFattr3(stat, share.fsid) : null,
        handle,
      });
    }
    return { status: Nfs3Status.NFS3_OK, dirAttr, entries, eof: result.eof };
  }

  async readdir(caller: Caller, dirFh: Buffer, cookie: bigint, cookieVerifier: Buffer, maxBytes: number): Promise<ReaddirResult> {
    return this.with(caller, dirFh, (status) => ({ status, dirAttr: null, cookieVerifier: this.cookieVerifier, entries: [], eof: false }), async (ctx) => {
      // entry3 is at least 24 bytes plus its name: enough entries to fill the reply, not many more
      const maxEntries = Math.min(4096, Math.max(1, Math.ceil(Math.min(maxBytes, ONE_MIB) / 24)));
      const listed = await this.list(ctx, cookie, cookieVerifier, maxEntries, false);
      return { ...listed, cookieVerifier: this.cookieVerifier, entries: listed.entries.map(({ fileid, name, cookie: c }) => ({ fileid, name, cookie: c })) };
    }, 'readdir');
  }

  async readdirplus(
    caller: Caller,
    dirFh: Buffer,
    cookie: bigint,
    cookieVerifier: Buffer,
    dirMaxBytes: number,
    maxBytes: number,
  ): Promise<ReaddirPlusResult> {
    return this.with(caller, dirFh, (status) => ({ status, dirAttr: null, cookieVerifier: this.cookieVerifier, entries: [], eof: false }), async (ctx) => {
      const listed = await this.list(ctx, cookie, cookieVerifier, readdirplusMaxEntries(dirMaxBytes, maxBytes), true);
      return { ...listed, cookieVerifier: this.cookieVerifier };
    }, 'readdirplus');
  }

  /**
   * READDIRPLUS with the entries encoded on the worker thread into the reply (readdirPlusEncode):
   * the main thread's work no longer grows with the number of entries. The same reply as
   * readdirplus + encodeReaddirplus3Res, including the ".." rules of list().
   */
  async readdirplusInPlace(
    caller: Caller,
    dirFh: Buffer,
    cookie: bigint,
    cookieVerifier: Buffer,
    dirMaxBytes: number,
    maxBytes: number,
    target: ReaddirPlusTarget,
  ): Promise<ReaddirPlusInPlaceResult> {
    const fail = (status: Nfs3Status): ReaddirPlusInPlaceResult => ({
      status, dirAttr: null, cookieVerifier: this.cookieVerifier, tooSmall: false, bytes: 0, entries: 0, eof: false,
    });
    return this.with(caller, dirFh, fail, async (ctx) => {
      if (!this.verifierAccepted(cookie, cookieVerifier)) return { ...fail(Nfs3Status.NFS3ERR_BAD_COOKIE), dirAttr: await this.attrOf(ctx) };
      const maxEntries = readdirplusMaxEntries(dirMaxBytes, maxBytes);
      // Pinned while the pool thread may write into it, even past a JUKEBOX at the gate's timeout.
      const result = await largeBuffers.whilePinned(target.buffer, () =>
        this.native.readdirPlusEncode(
          ctx.creds, ctx.object.fd, cookie, ctx.object.isRoot, maxEntries, dirMaxBytes, maxBytes,
          target.buffer, target.offset, target.length, this.shareContext(ctx.share),
        ),
      );
      // The native side took the fallback fstat of the directory itself (list() calls attrOf).
      const dirAttr = result.dirStat ? toFattr3(result.dirStat, ctx.share.fsid) : null;
      if (result.err !== 0) {
        const status = result.err === E.EINVAL && cookie !== 0n ? Nfs3Status.NFS3ERR_BAD_COOKIE : errnoToNfs3(result.err);
        return { ...fail(status), dirAttr };
      }
      return {
        status: Nfs3Status.NFS3_OK,
        dirAttr,
        cookieVerifier: this.cookieVerifier,
        tooSmall: result.tooSmall,
        bytes: result.bytes,
        entries: result.entries,
        eof: result.eof,
      };
    }, 'readdirplus');
  }

  /**
   * The share as the addon's in-place encoders need it (HMAC key, share key, root, fsid), parsed by
   * it once per open root. Holds the secret: never logged.
   */
  private shareContext(share: ShareRoot): NativeShareContext {
    let context = this.nativeContexts.get(share);
    if (!context) {
      context = this.native.shareContext({
        secret: this.codec.nativeSecret,
        key: share.key,
        mountId: share.mountId,
        dev: share.dev,
        ino: share.ino,
        handle: share.handle,
        fsid: share.fsid,
        listingCacheMs: this.backends.listingCacheMsOf?.(share.backend) ?? 0,
      });
      this.nativeContexts.set(share, context);
    }
    return context;
  }

  fsstat(caller: Caller, fh: Buffer): Promise<FsstatResult> {
    const fail = (status: Nfs3Status): FsstatResult => ({ status, attr: null, tbytes: 0, fbytes: 0, abytes: 0, tfiles: 0, ffiles: 0, afiles: 0, invarsec: 0 });
    return this.with(caller, fh, fail, async (ctx) => {
      const [stats, attr] = await Promise.all([this.native.statfs(ctx.object.fd), this.attrOf(ctx)]);
      if (stats.err !== 0) return { ...fail(errnoToNfs3(stats.err)), attr };
      return {
        status: Nfs3Status.NFS3_OK,
        attr,
        tbytes: stats.totalBytes ?? 0,
        fbytes: stats.freeBytes ?? 0,
        abytes: stats.availBytes ?? 0,
        tfiles: stats.totalFiles ?? 0,
        ffiles: stats.freeFiles ?? 0,
        afiles: stats.freeFiles ?? 0,
        invarsec: 0,
      };
    }, 'fsstat');
  }

  fsinfo(caller: Caller, fh: Buffer): Promise<FsinfoResult> {
    const base = {
      rtmax: ONE_MIB,
      rtpref: ONE_MIB,
      rtmult: 4096,
      wtmax: ONE_MIB,
      wtpref: ONE_MIB,
      wtmult: 4096,
      dtpref: 64 * 1024,
      maxfilesize: Number.MAX_SAFE_INTEGER,
      timeDelta: { seconds: 0, nseconds: 1 },
      properties: FSF3.LINK | FSF3.SYMLINK | FSF3.HOMOGENEOUS | FSF3.CANSETTIME,
    };
    return this.with<FsinfoResult>(caller, fh, (status) => ({ status, attr: null, ...base }), async (ctx) => ({
      status: Nfs3Status.NFS3_OK,
      attr: await this.attrOf(ctx),
      ...base,
    }), 'fsinfo');
  }

  pathconf(caller: Caller, fh: Buffer): Promise<PathconfResult> {
    const base = { linkmax: 65000, nameMax: MAX_NAME, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true };
    return this.with<PathconfResult>(caller, fh, (status) => ({ status, attr: null, ...base }), async (ctx) => {
      const [stats, attr] = await Promise.all([this.native.statfs(ctx.object.fd), this.attrOf(ctx)]);
      return { status: Nfs3Status.NFS3_OK, attr, ...base, nameMax: Math.min(stats.nameMax ?? MAX_NAME, MAX_NAME) };
    }, 'pathconf');
  }

  commit(caller: Caller, fh: Buffer, _offset: bigint, _count: number): Promise<CommitResult> {
    const fail = (status: Nfs3Status): CommitResult => ({ status, wcc: NO_WCC, verifier: this.writeVerifier });
    return this.with(caller, fh, fail, async (ctx) => {
      if (this.readOnly(ctx)) return fail(Nfs3Status.NFS3ERR_ROFS);
      // fsync of the inode flushes every write to it, whichever descriptor wrote it: the whole file
      // is committed, which RFC 1813 section 3.3.21 allows for any offset and count.
      const result = await this.native.fsync(ctx.object.fd);
      const data = wcc(result.before, result.after, ctx.share.fsid);
      if (result.err !== 0) return { ...fail(errnoToNfs3(result.err)), wcc: data };
      return { status: Nfs3Status.NFS3_OK, wcc: data, verifier: this.writeVerifier };
    }, 'commit');
  }

  // ---- MOUNT v3 (RFC 1813 section 5) ------------------------------------------------------

  exportsFor(identity: string): string[] {
    return this.grants.sharesFor(identity);
  }

  async mount(caller: Caller, dirPath: string): Promise<{ status: number; handle?: Buffer }> {
    if (!dirPath.startsWith('/')) return { status: MountStat.MNT3ERR_NOENT };
    const parts = dirPath.split('/').filter((part) => part !== '' && part !== '.');
    const shareId = parts.shift();
    if (!shareId) return { status: MountStat.MNT3ERR_ACCES };
    const grant = this.grants.find(caller.identity, shareId);
    if (!grant) return { status: MountStat.MNT3ERR_ACCES };
    let share: ShareRoot;
    try {
      share = await this.openShare(shareId);
    } catch (error) {
      // revoked while it was being opened: the answer the revoke itself would have given
      if (error instanceof ShareOpenError && error.code === 'SHARE_NOT_GRANTED') return { status: MountStat.MNT3ERR_ACCES };
      // a backend that is down or hangs is reported by its own state; a guest retrying must not flood the log
      const level = backendCode(error) !== undefined ? 'debug' : 'error';
      this.logger[level]({ share: shareId, err: (error as Error).message }, 'share cannot be opened');
      return { status: MountStat.MNT3ERR_IO };
    }
    // The open may have waited on the file system: the grant is what counts now, not before it.
    const still = this.grants.find(caller.identity, shareId);
    if (!still || still.backend !== share.backend || still.path !== share.sharePath) return { status: MountStat.MNT3ERR_ACCES };
    let handle = share.handle;
    for (const part of parts) {
      const name = Buffer.from(part, 'latin1');
      const found = await this.with<LookupResult>(caller, handle, (status) => ({ status, objAttr: null, dirAttr: null }) as LookupResult, (ctx) => {
        const bad = checkName(name, true);
        if (bad !== undefined) return Promise.resolve({ status: bad, objAttr: null, dirAttr: null } as LookupResult);
        return this.lookupIn(ctx, name);
      }, null); // MOUNT's own walk: not an NFS request
      if (found.status !== Nfs3Status.NFS3_OK || !found.handle) return { status: mountStatus(found.status) };
      // Mount points are directories reached without following symlinks.
      if (found.objAttr?.type !== Ftype3.NF3DIR) return { status: MountStat.MNT3ERR_NOTDIR };
      handle = found.handle;
    }
    return { status: MountStat.MNT3_OK, handle };
  }

  /** Stops following the grants and retires every share (each root closed once its requests finish). */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const share of [...this.shares.roots()]) this.retire(share);
    this.objects.closeAll();
  }
}

function grantKeyHex(grant: Grant): string {
  return HandleCodec.shareKey(grant.share, grant.backend, grant.path).toString('hex');
}

function mountStatus(status: Nfs3Status): number {
  switch (status) {
    case Nfs3Status.NFS3ERR_PERM:
    case Nfs3Status.NFS3ERR_NOENT:
    case Nfs3Status.NFS3ERR_IO:
    case Nfs3Status.NFS3ERR_ACCES:
    case Nfs3Status.NFS3ERR_NOTDIR:
    case Nfs3Status.NFS3ERR_INVAL:
    case Nfs3Status.NFS3ERR_NAMETOOLONG:
    case Nfs3Status.NFS3ERR_NOTSUPP:
    case Nfs3Status.NFS3ERR_SERVERFAULT:
      return status;
    default:
      return MountStat.MNT3ERR_IO;
  }
}
