// Typed access to the native addon (native-bridges/): the few Linux syscalls Node lacks. Every
// filesystem operation a guest causes runs on the libuv threadpool in one hop, under the guest's
// credentials (per-thread setfsuid/setfsgid/setgroups, restored before the thread is released), so
// the kernel itself enforces POSIX permissions, sticky and setgid directories and ownership.
//
// Conventions:
// - Promises never reject for an errno: results carry `err` (0, or a positive errno such as 2 for
//   ENOENT). They reject only for misuse (wrong argument types), which is a bug.
// - `creds` is null to act as the daemon itself (root with its capabilities), or a Uint32Array
//   [uid, gid, ...supplementaryGroups] (at most 32 groups) to act as that caller.
// - Names are Buffers holding one path component; the caller has already validated them (no '/',
//   no NUL, not empty). The native side re-checks and answers EINVAL rather than trust it.
// - `pathFd` arguments are O_PATH file descriptors obtained from openByHandle (or open()).
// - Nothing follows a symlink in the last component (AT_SYMLINK_NOFOLLOW / O_NOFOLLOW everywhere).
import { loadAddon } from './addon.js';

export interface NativeStat {
  dev: number;
  ino: number;
  /** st_mode, type bits included. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  /** st_blocks (512-byte units). */
  blocks: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

/**
 * The handle type of a GlusterFS gfid handle ("GFID" in ASCII; no kernel handle has it): on a
 * mount given to registerGfidMount, handles are the object's 16-byte gfid, since the kernel's
 * handles of a gluster FUSE mount go stale (ESTALE) once its caches drop.
 */
export const GFID_HANDLE_TYPE = 0x47464944;

/** A kernel file handle (struct file_handle): its handle_type and f_handle bytes (or a gfid handle). */
export interface KernelHandle {
  type: number;
  bytes: Buffer;
}

export interface HandleResult {
  err: number;
  handle?: KernelHandle;
  /** mnt_id from name_to_handle_at: which mount the object is on. */
  mountId?: number;
}

/** An object found or made in a directory: its kernel handle, mount id and attributes. */
export interface ObjectResult {
  err: number;
  handle?: KernelHandle;
  mountId?: number;
  stat?: NativeStat;
}

/** Directory-changing operations report the directory's attributes around the change (wcc_data). */
export interface DirChangeResult {
  err: number;
  /** fstat of the directory just before the change (absent if that stat failed). */
  dirBefore?: NativeStat;
  /** fstat of the directory just after the change (also on failure, when it could be had). */
  dirAfter?: NativeStat;
}

/** MKDIR, MKNOD, SYMLINK, CREATE: the change plus the new object, found again by name. */
export interface CreateResult extends DirChangeResult {
  object?: ObjectResult;
}

export interface RenameResult {
  err: number;
  fromDirBefore?: NativeStat;
  fromDirAfter?: NativeStat;
  toDirBefore?: NativeStat;
  toDirAfter?: NativeStat;
}

export interface StatResult {
  err: number;
  stat?: NativeStat;
}

export interface SetattrRequest {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** atime/mtime: 'now' for the server's time, [sec, nsec] for a given time, absent to leave alone. */
  atime?: 'now' | [number, number];
  mtime?: 'now' | [number, number];
  /** sattrguard3: fail with err = -1 (NOT_SYNC) unless the object's ctime is exactly this. */
  guardCtime?: [number, number];
}

export interface SetattrResult {
  err: number;
  before?: NativeStat;
  after?: NativeStat;
}

export interface IoResult {
  err: number;
  /** Bytes read or written. */
  count: number;
  /** READ: true when the read reached the end of the file. */
  eof?: boolean;
  /** fstat before the write (WRITE only) and after the I/O. */
  before?: NativeStat;
  after?: NativeStat;
}

export interface NativeDirEntry {
  name: Buffer;
  ino: number;
  /** d_type (DT_REG = 8, DT_DIR = 4, ...). */
  dtype: number;
  /** d_off: the cookie that resumes the listing after this entry (filesystem-defined, 64-bit). */
  cookie: bigint;
  /** Only with plus: the entry's handle/attributes (absent if name_to_handle_at or fstatat failed). */
  handle?: KernelHandle;
  mountId?: number;
  stat?: NativeStat;
}

export interface ReaddirResult {
  err: number;
  entries: NativeDirEntry[];
  /** true when the directory has no entries after the last one returned. */
  eof: boolean;
  /** fstat of the directory. */
  dirStat?: NativeStat;
}

/**
 * A share as the in-place encoders (readdirPlusEncode, getattrEncode, lookupEncode, readEncode)
 * need it to make NFS handles and fattr3 exactly as HandleCodec.encode and toFattr3 do; handed to
 * shareContext() once. Holds the handle secret: never log it.
 */
export interface NativeShareInfo {
  /** HandleCodec's secret: the HMAC-SHA256 key of every handle's tag. */
  secret: Buffer;
  /** The 8-byte share key (HandleCodec.shareKey). */
  key: Buffer;
  /** The share root's mount: an entry on any other mount gets neither handle nor attributes. */
  mountId: number;
  /** The share root's dev and ino: `..` of the root is the root itself (fileid ino). */
  dev: number;
  ino: number;
  /** The share root's NFS handle (`..` of the root). */
  handle: Buffer;
  /** The fsid of every fattr3 of the share. */
  fsid: bigint;
  /**
   * How long readdirPlusEncode may answer from a listing of a directory read earlier (the
   * backend's listing_cache_ms; 0 or absent: never). See native-bridges/src/listing_cache.h.
   */
  listingCacheMs?: number;
}

export interface ListingCacheStats {
  hits: number;
  fills: number;
  bytes: number;
  listings: number;
}

/** A share's NativeShareInfo parsed once by the addon (shareContext): opaque to JS. */
export type NativeShareContext = { readonly __nativeShareContext: never };

/** The numbers getattrEncode and lookupEncode answer with, and the room they need (inplace.cc). */
export interface InPlaceCodes {
  /** getattrEncode: nlink 0 and not a directory (NFS3ERR_STALE). */
  unlinked: number;
  /** lookupEncode: the directory is not one (NFS3ERR_NOTDIR). */
  notDir: number;
  /** lookupEncode: the name is on another mount (NFS3ERR_ACCES). */
  otherMount: number;
  /** lookupEncode: no handle that fits an NFS handle (NFS3ERR_SERVERFAULT). */
  noHandle: number;
  /** Room getattrEncode writes into: one fattr3. */
  getattrBytes: number;
  /** Room lookupEncode may write into: the longest handle and two post_op_attr with attributes. */
  lookupBytes: number;
}

export interface ReaddirPlusEncodeResult {
  err: number;
  /** Not even one entry, or the reply's frame, fits in maxcount: the reply is NFS3ERR_TOOSMALL. */
  tooSmall: boolean;
  /** Bytes written at buffer[offset]: the entryplus3 chain, its end (FALSE) and eof (err 0, not tooSmall). */
  bytes: number;
  /** Entries written. */
  entries: number;
  /** No entries remain after the last one written. */
  eof: boolean;
  /**
   * The directory's attributes for the reply: the listing's fstat, or pathFd's when that failed
   * (absent if both failed). The header the caller puts before the entries has this dir_attributes.
   */
  dirStat?: NativeStat;
}

export interface StatfsResult {
  err: number;
  /** f_frsize-scaled totals in bytes and file counts. */
  totalBytes?: number;
  freeBytes?: number;
  availBytes?: number;
  totalFiles?: number;
  freeFiles?: number;
  nameMax?: number;
}

/** What trimMemory() did, and glibc's heap afterwards (mallinfo2, summed over every arena). */
export interface MallocTrim {
  released: boolean;
  seconds: number;
  /** Bytes the arenas span (the brk heap and every thread's arena). */
  arenaBytes: number;
  /** Allocated from the arenas. */
  inUseBytes: number;
  /** Free in the arenas: kept by glibc; after the trim, whole free pages no longer count in the RSS. */
  freeBytes: number;
  /** Large blocks mapped on their own (in use). */
  mmappedBytes: number;
}

export interface FsBridge {
  /** name_to_handle_at(dirFd, name | "" with AT_EMPTY_PATH, 0): no symlink following. */
  nameToHandle(dirFd: number, name: Buffer | null): Promise<HandleResult>;
  /**
   * open_by_handle_at(mountFd, handle, flags | O_CLOEXEC) as the daemon (needs CAP_DAC_READ_SEARCH).
   * The kernel refuses an O_PATH mountFd (EBADF); one is accepted here but costs a reopen through
   * /proc/self/fd on every call, so pass a real fd on the mount (e.g. the share root opened with
   * fs.openSync(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)).
   * A GFID_HANDLE_TYPE handle opens on the registered gluster mount mountFd is on (ESTALE if none).
   */
  openByHandle(mountFd: number, handle: KernelHandle, flags: number): Promise<{ err: number; fd: number }>;
  /**
   * GlusterFS: from now on, objects on the mount whose root directory is rootFd (a client mounted
   * with --aux-gfid-mount) get gfid handles (GFID_HANDLE_TYPE) from nameToHandle, lookup, create,
   * readdir plus..., and openByHandle opens those through MOUNT/.gfid (a directory by its path,
   * checked against the gfid, so it can be listed). rootFd is dup()ed. Returns the mount id, or a
   * negative errno (-EINVAL: not the root of a FUSE mount; -ENOENT: no aux-gfid-mount). The name
   * ".gfid" in that root is refused (ENOENT) by lookup: it reaches every object of the volume.
   */
  registerGfidMount(rootFd: number): number;
  /**
   * Undoes one registerGfidMount of that mount (they are counted); false if none was left. Call it
   * before unmounting: the kernel reuses mount ids.
   */
  unregisterGfidMount(mountId: number): boolean;
  /** open(path, O_PATH | O_NOFOLLOW | flags) as the daemon: share roots. */
  openPath(path: string, flags: number): Promise<{ err: number; fd: number }>;
  close(fd: number): void;
  /** fstatat(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW). */
  fstat(fd: number): Promise<StatResult>;
  /**
   * As creds: openat(dirFd, name, O_PATH | O_NOFOLLOW), then fstat and name_to_handle_at of that one
   * fd (so handle and stat are of the same object); search permission checked by the kernel.
   * If only the handle fails (a filesystem without handles), err is its errno and stat is present.
   * dirStat: fstat of dirFd taken just before (absent if it failed).
   */
  lookup(creds: Uint32Array | null, dirFd: number, name: Buffer): Promise<ObjectResult & { dirStat?: NativeStat }>;
  /**
   * As creds: which of R_OK (4), W_OK (2), X_OK (1) the caller has on the object, by
   * faccessat2(fd, "", mode, AT_EACCESS | AT_EMPTY_PATH) for each.
   */
  accessMask(creds: Uint32Array | null, pathFd: number): Promise<{ err: number; mask: number }>;
  /** As creds: readlinkat(pathFd, ""). */
  readlink(creds: Uint32Array | null, pathFd: number): Promise<{ err: number; target?: Buffer; stat?: NativeStat }>;
  /**
   * As creds: open the object for reading (reopening pathFd through /proc/self/fd), with the NFS
   * owner override (the owner may read a file whose mode denies it: an open file's rights, RFC 1813
   * section 4.4), pread up to `length` bytes at `position` into buffer[offset..], fstat, close.
   */
  read(
    creds: Uint32Array | null,
    pathFd: number,
    buffer: Buffer,
    offset: number,
    length: number,
    position: bigint,
  ): Promise<IoResult>;
  /**
   * READ in place: read() with the post_op_attr's fattr3 (the attributes after the read; for a READ
   * refused before it, the object's as found) written at buffer[attrOffset..+84], outside the data.
   * One number: >= 0, count * 4 + (eof ? 2 : 0) + (attributes written ? 1 : 0); < 0,
   * -(1 + errno * 2 + (attributes written ? 1 : 0)). decodeReadEncoded() takes it apart.
   */
  readEncode(
    creds: Uint32Array | null,
    pathFd: number,
    buffer: Buffer,
    offset: number,
    length: number,
    position: bigint,
    attrOffset: number,
    share: NativeShareContext,
  ): Promise<number>;
  /**
   * READ without copying the data (splice.cc): as `read`, but the bytes are spliced from the file
   * into a new pipe sized to hold them all (page references, no copy); pipeFd is its read end when
   * err is 0, and belongs to the caller (sendSpliced closes it; otherwise close it). length <= 1 MiB.
   */
  readToPipe(creds: Uint32Array | null, pathFd: number, length: number, position: bigint): Promise<IoResult & { pipeFd?: number }>;
  /**
   * On the main thread, driven by libuv: writes header, then count bytes from the pipe (splice),
   * then pad (0..3) zero bytes to the socket socketFd names, waiting for writability as needed
   * (through a dup of the socket, so Node may close its own meanwhile). Closes pipeFd when done.
   * `done` never rejects; cancelSpliced(id) ends it with ECANCELED (the connection closed).
   */
  sendSpliced(socketFd: number, header: Buffer, pipeFd: number, count: number, pad: number): { id: number; done: Promise<{ err: number }> };
  cancelSpliced(id: number): void;
  /**
   * As creds: open for writing (owner override as for read), fstat, pwrite all of data at position,
   * then fdatasync (stable 1) or fsync (stable 2) when asked, fstat, close.
   */
  write(creds: Uint32Array | null, pathFd: number, data: Buffer, position: bigint, stable: number): Promise<IoResult>;
  /** As the daemon: fsync the object's data and metadata (COMMIT). */
  fsync(pathFd: number): Promise<{ err: number; before?: NativeStat; after?: NativeStat }>;
  /**
   * As creds: openat(dirFd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode), close; `object`
   * is the new file. An existing name is never opened (a FIFO would block, a device would be
   * opened, and knfsd grants UNCHECKED create without write permission on the file): with
   * exclusive, err EEXIST; without, err 0 if it is a regular file (no truncation: size is the
   * caller's SETATTR) and EEXIST otherwise. `object` describes the existing object in all of these
   * cases, so EXCLUSIVE CREATE can compare its verifier.
   * CREATE, MKDIR, MKNOD: the mode is applied exactly (the thread's umask is 0 while creating, as
   * in knfsd: the client has applied its umask already); setgid directories still apply.
   */
  create(creds: Uint32Array | null, dirFd: number, name: Buffer, mode: number, exclusive: boolean): Promise<CreateResult>;
  mkdir(creds: Uint32Array | null, dirFd: number, name: Buffer, mode: number): Promise<CreateResult>;
  /** mknodat: mode carries the type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK); dev = makedev(major, minor). */
  mknod(creds: Uint32Array | null, dirFd: number, name: Buffer, mode: number, major: number, minor: number): Promise<CreateResult>;
  symlink(creds: Uint32Array | null, dirFd: number, name: Buffer, target: Buffer): Promise<CreateResult>;
  /** unlinkat(dirFd, name, isDir ? AT_REMOVEDIR : 0). */
  unlink(creds: Uint32Array | null, dirFd: number, name: Buffer, isDir: boolean): Promise<DirChangeResult>;
  rename(creds: Uint32Array | null, fromDirFd: number, fromName: Buffer, toDirFd: number, toName: Buffer): Promise<RenameResult>;
  /** linkat(AT_FDCWD, "/proc/self/fd/<pathFd>", dirFd, name, AT_SYMLINK_FOLLOW): a hard link to the object. */
  link(creds: Uint32Array | null, pathFd: number, dirFd: number, name: Buffer): Promise<CreateResult & { objectAfter?: NativeStat }>;
  /**
   * As creds, in this order: guard check, chown (fchownat AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW), chmod
   * (not for symlinks: EOPNOTSUPP... reported as err 95), truncate (regular files only, via a
   * write open through /proc/self/fd), times (utimensat AT_EMPTY_PATH). Stops at the first error.
   */
  setattr(creds: Uint32Array | null, pathFd: number, request: SetattrRequest): Promise<SetattrResult>;
  /**
   * As creds: open the directory for reading (through /proc/self/fd/<pathFd>, O_RDONLY | O_DIRECTORY),
   * lseek to cookie (0 = start), getdents64 until maxEntries entries or the end; with plus, each
   * entry's handle and attributes as lookup finds them (one O_PATH open of the name, no follow,
   * relative to the opened directory; absent when that fails).
   */
  readdir(creds: Uint32Array | null, pathFd: number, cookie: bigint, maxEntries: number, plus: boolean): Promise<ReaddirResult>;
  /**
   * READDIRPLUS's dirlistplus3 (RFC 1813 section 3.3.17), written on the worker thread straight
   * into buffer[offset..offset+length): what encodeReaddirplus3Res writes for the entries
   * ShareFileService.readdirplus lists, byte for byte. As creds: the directory is listed as by
   * readdir (at most maxEntries entries, resumed at cookie), each entry found with
   * fstatat(AT_SYMLINK_NOFOLLOW) and name_to_handle_at (no follow) relative to the opened directory.
   * The reply's header (status, dir_attributes as dirStat says, cookieverf) is the caller's:
   * maxcount counts it and the entries (from the status word on), dircount (0: no limit) each
   * entry's fileid, name and cookie, the first entry always passing dircount. isRoot: pathFd is the
   * share root (also assumed when its dev and ino are the share's). length must be at least maxcount.
   */
  readdirPlusEncode(
    creds: Uint32Array | null,
    pathFd: number,
    cookie: bigint,
    isRoot: boolean,
    maxEntries: number,
    dircount: number,
    maxcount: number,
    buffer: Buffer,
    offset: number,
    length: number,
    share: NativeShareContext,
  ): Promise<ReaddirPlusEncodeResult>;
  /** The share parsed once for the in-place encoders (its HMAC key prepared). Holds the secret. */
  shareContext(share: NativeShareInfo): NativeShareContext;
  /**
   * GETATTR in place: fstat of the object; on success its fattr3 (inPlaceCodes.getattrBytes) is
   * written at buffer[offset..] and 0 returned; otherwise an errno, or inPlaceCodes.unlinked.
   */
  getattrEncode(pathFd: number, buffer: Buffer, offset: number, share: NativeShareContext): Promise<number>;
  /**
   * LOOKUP in place, as lookup() with the directory's stat. Writes at buffer[offset..] (room:
   * inPlaceCodes.lookupBytes) what follows LOOKUP3res's status: > 0, NFS3_OK and that many bytes
   * (handle, obj_attributes, dir_attributes); <= 0, LOOKUP3resfail's dir_attributes (4 or 88 bytes,
   * as its first word says) and -errno or one of inPlaceCodes' lookup codes. No "." or "..": the
   * share-root rule for ".." is the service's.
   */
  lookupEncode(creds: Uint32Array | null, dirFd: number, name: Buffer, buffer: Buffer, offset: number, share: NativeShareContext): Promise<number>;
  readonly inPlaceCodes: InPlaceCodes;
  /** Tests: the NFS handle readdirPlusEncode makes (HandleCodec.encode's), null when the kernel handle is too long. */
  encodeNfsHandle(secret: Buffer, shareKey: Buffer, type: number, bytes: Buffer): Buffer | null;
  /** Tests: the fattr3 readdirPlusEncode writes for a stat (encodeFattr3(toFattr3(stat, fsid))'s). */
  encodeFattr3(stat: NativeStat, fsid: bigint): Buffer;
  /** fstatfs on the object. */
  statfs(pathFd: number): Promise<StatfsResult>;
  /**
   * As the daemon: whether the directory lies beneath the directory (rootDev, rootIno), walking
   * ".." until that root (true) or the top of the namespace (false).
   */
  beneath(pathFd: number, rootDev: number, rootIno: number): Promise<{ err: number; beneath: boolean }>;
  /** Diagnostics: the effective capabilities (bit mask) of a thread acting as `creds`. */
  /** The native worker pool (pool.cc): threads running now (idle ones exit after MANILA_POOL_IDLE_MS), and the bound (MANILA_POOL_THREADS). */
  poolStats(): { threads: number; maxThreads: number };
  /** The READDIRPLUS listing cache: replies served from it, listings filled, and what it holds now. */
  listingCacheStats(): ListingCacheStats;
  /**
   * malloc_trim(0) on a pool thread: whether memory went back to the kernel, how long it took, and
   * glibc's totals after it (mallinfo2): arena bytes, in use and free in them, and blocks mapped on
   * their own.
   */
  trimMemory(): Promise<MallocTrim>;
  effectiveCaps(creds: Uint32Array | null): Promise<{ err: number; effective: bigint }>;
  /** Raise RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft limit. */
  raiseFileLimit(): number;
}

/** readEncode's number: errno (0 on success), bytes read, eof, and whether the attributes were written. */
export function decodeReadEncoded(n: number): { err: number; count: number; eof: boolean; attr: boolean } {
  if (n < 0) {
    const e = -n - 1;
    return { err: Math.floor(e / 2), count: 0, eof: false, attr: e % 2 === 1 };
  }
  return { err: 0, count: Math.floor(n / 4), eof: (n & 2) !== 0, attr: (n & 1) !== 0 };
}

let loaded: FsBridge | undefined;

/** The file system half of the native addon (npm install builds it with node-gyp). */
export function fsBridge(): FsBridge {
  loaded ??= loadAddon(['nameToHandle', 'openByHandle', 'readdir', 'readdirPlusEncode', 'raiseFileLimit', 'registerGfidMount', 'poolStats', 'listingCacheStats', 'trimMemory', 'readToPipe', 'sendSpliced', 'shareContext', 'getattrEncode', 'lookupEncode', 'readEncode']) as unknown as FsBridge;
  return loaded;
}
