// The share filesystem layer's contract with the NFSv3 and MOUNT programs. The programs decode and
// encode; this layer decides everything else: which share a handle belongs to, whether the caller
// is granted it, squash, permissions (enforced by the kernel under the caller's fsuid/fsgid), and
// confinement beneath the share root. Every result carries an Nfs3Status, never an exception.
import type { AuthFlavor, AuthSysParms, Peer } from '../rpc/types.js';
import type {
  CreateHow,
  Fattr3,
  MknodData,
  Nfs3Status,
  Sattr3,
  StableHow,
  WccData,
  NfsTime,
} from '../nfs3/types.js';

/** The caller of one request: the channel's identity plus what AUTH_SYS claims (trusted after squash). */
export interface Caller {
  readonly peer: Peer;
  /** peerIdentity(peer): `tcp:ADDR`, `cid:N` or `vm:NAME`. */
  readonly identity: string;
  readonly flavor: AuthFlavor;
  readonly authSys: AuthSysParms | null;
}

/** Result with only a status and post-op attributes of the object. */
export interface AttrResult {
  status: Nfs3Status;
  /** Always present when status is NFS3_OK; post_op_attr otherwise (may be null). */
  attr: Fattr3 | null;
}

export interface WccResult {
  status: Nfs3Status;
  wcc: WccData;
}

export interface LookupResult {
  status: Nfs3Status;
  /** NFS3_OK only. */
  handle?: Buffer;
  objAttr: Fattr3 | null;
  dirAttr: Fattr3 | null;
}

export interface AccessResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  /** The subset of the requested ACCESS3 bits the caller is granted (NFS3_OK only). */
  access: number;
}

export interface ReadlinkResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  target?: Buffer;
}

export interface ReadResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  /** Bytes read into the caller's buffer (NFS3_OK only). */
  count: number;
  eof: boolean;
}

/** READ in place: the data at ReadTarget.offset, the post_op_attr's fattr3 at attrOffset when `attr`. */
export interface ReadInPlaceResult {
  status: Nfs3Status;
  /** The fattr3 was written at attrOffset (the attributes follow). */
  attr: boolean;
  /** Bytes read (NFS3_OK only). */
  count: number;
  eof: boolean;
}

/** Where READ in place puts its data and the fattr3 of its post_op_attr (FATTR3_SIZE bytes, outside the data). */
export interface ReadInPlaceTarget extends ReadTarget {
  attrOffset: number;
}

/** A READ whose data waits in a pipe (zero-copy): pipeFd (NFS3_OK only) belongs to the caller. */
export interface SplicedReadResult extends ReadResult {
  pipeFd?: number;
  /** No pipe could be had: read with read() instead (nothing was read, nothing is held). */
  copyInstead?: boolean;
}

export interface WriteResult {
  status: Nfs3Status;
  wcc: WccData;
  count: number;
  committed: StableHow;
  /** The server's write verifier: 8 bytes, new on every start (RFC 1813 section 3.3.7). */
  verifier: Buffer;
}

/** CREATE, MKDIR, SYMLINK, MKNOD: post_op_fh3, post_op_attr and the directory's wcc_data. */
export interface CreatedResult {
  status: Nfs3Status;
  handle: Buffer | null;
  objAttr: Fattr3 | null;
  dirWcc: WccData;
}

export interface RenameResult {
  status: Nfs3Status;
  fromDirWcc: WccData;
  toDirWcc: WccData;
}

export interface LinkResult {
  status: Nfs3Status;
  fileAttr: Fattr3 | null;
  linkDirWcc: WccData;
}

export interface DirEntry {
  fileid: number;
  /** Raw name bytes, as the backend has them. */
  name: Buffer;
  cookie: bigint;
}

export interface DirEntryPlus extends DirEntry {
  /** null when the attributes or handle could not be had (RFC 1813 allows omitting them). */
  attr: Fattr3 | null;
  handle: Buffer | null;
}

export interface ReaddirResult {
  status: Nfs3Status;
  dirAttr: Fattr3 | null;
  cookieVerifier: Buffer;
  entries: DirEntry[];
  eof: boolean;
}

export interface ReaddirPlusResult {
  status: Nfs3Status;
  dirAttr: Fattr3 | null;
  cookieVerifier: Buffer;
  entries: DirEntryPlus[];
  eof: boolean;
}

/**
 * Where READDIRPLUS writes its entries in place: the NFS program reserves room in the reply and the
 * layer writes the dirlistplus3 there. `buffer` has at least `length` bytes free from `offset`.
 */
export interface ReaddirPlusTarget {
  buffer: Buffer;
  offset: number;
  length: number;
}

/** READDIRPLUS with its entries already encoded into a ReaddirPlusTarget. */
export interface ReaddirPlusInPlaceResult {
  status: Nfs3Status;
  dirAttr: Fattr3 | null;
  cookieVerifier: Buffer;
  /** NFS3_OK only: not even one entry, or the reply's frame, fits in maxBytes (the program answers NFS3ERR_TOOSMALL). */
  tooSmall: boolean;
  /**
   * NFS3_OK and not tooSmall: bytes written at the target's offset, the whole dirlistplus3 (the
   * entryplus3 chain, its end and eof), sized so that status, dirAttr, cookieverf and these fit
   * in maxBytes.
   */
  bytes: number;
  /** Entries written. */
  entries: number;
  eof: boolean;
}

export interface FsstatResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  tbytes: number;
  fbytes: number;
  abytes: number;
  tfiles: number;
  ffiles: number;
  afiles: number;
  invarsec: number;
}

export interface FsinfoResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  rtmax: number;
  rtpref: number;
  rtmult: number;
  wtmax: number;
  wtpref: number;
  wtmult: number;
  dtpref: number;
  maxfilesize: number;
  timeDelta: NfsTime;
  properties: number;
}

export interface PathconfResult {
  status: Nfs3Status;
  attr: Fattr3 | null;
  linkmax: number;
  nameMax: number;
  noTrunc: boolean;
  chownRestricted: boolean;
  caseInsensitive: boolean;
  casePreserving: boolean;
}

export interface CommitResult {
  status: Nfs3Status;
  wcc: WccData;
  verifier: Buffer;
}

/**
 * Where READ puts its data: the NFS program reserves room in the reply and the layer reads into it
 * (no copy of the payload). `buffer` has at least `count` bytes free from `offset`.
 */
export interface ReadTarget {
  buffer: Buffer;
  offset: number;
}

/** LOOKUP encoded in place: its status, and the bytes the layer wrote after the status word. */
export interface LookupInPlaceResult {
  status: Nfs3Status;
  /**
   * NFS3_OK: the handle, obj_attributes and dir_attributes. Otherwise LOOKUP3resfail's
   * dir_attributes, or 0 when the layer wrote nothing (the program writes them absent).
   */
  bytes: number;
}

/** The NFSv3 procedures' semantics (RFC 1813 section 3.3), one method each. */
export interface NfsFileService {
  getattr(caller: Caller, fh: Buffer): Promise<AttrResult>;
  /**
   * GETATTR with the fattr3 written by the layer at target (FATTR3_SIZE bytes of room), there for
   * NFS3_OK only: the same reply as getattr's, byte for byte. Optional: the program falls back to
   * getattr without it.
   */
  getattrInPlace?(caller: Caller, fh: Buffer, target: ReadTarget): Promise<{ status: Nfs3Status }>;
  /** guard: sattrguard3, the object's ctime the client expects, or null for no check. */
  setattr(caller: Caller, fh: Buffer, attributes: Sattr3, guard: NfsTime | null): Promise<WccResult>;
  lookup(caller: Caller, dirFh: Buffer, name: Buffer): Promise<LookupResult>;
  /**
   * LOOKUP encoded by the layer at target (LOOKUP3RES_BODY_MAX bytes of room, the program's header
   * never inside it): the same reply as lookup's, byte for byte. null for a name it leaves to
   * lookup() (".." and invalid names). Optional.
   */
  lookupInPlace?(caller: Caller, dirFh: Buffer, name: Buffer, target: ReadTarget): Promise<LookupInPlaceResult> | null;
  access(caller: Caller, fh: Buffer, requested: number): Promise<AccessResult>;
  readlink(caller: Caller, fh: Buffer): Promise<ReadlinkResult>;
  read(caller: Caller, fh: Buffer, offset: bigint, count: number, target: ReadTarget): Promise<ReadResult>;
  /**
   * READ as read(), with the post_op_attr's fattr3 written by the layer too (at target.attrOffset):
   * the same reply, byte for byte. Optional: the program falls back to read without it.
   */
  readInPlace?(caller: Caller, fh: Buffer, offset: bigint, count: number, target: ReadInPlaceTarget): Promise<ReadInPlaceResult>;
  /** READ into a pipe instead of a buffer (large READs on a socket that can take a splice); optional. */
  readToPipe?(caller: Caller, fh: Buffer, offset: bigint, count: number): Promise<SplicedReadResult>;
  write(caller: Caller, fh: Buffer, offset: bigint, stable: StableHow, data: Buffer): Promise<WriteResult>;
  create(caller: Caller, dirFh: Buffer, name: Buffer, how: CreateHow): Promise<CreatedResult>;
  mkdir(caller: Caller, dirFh: Buffer, name: Buffer, attributes: Sattr3): Promise<CreatedResult>;
  symlink(caller: Caller, dirFh: Buffer, name: Buffer, attributes: Sattr3, target: Buffer): Promise<CreatedResult>;
  mknod(caller: Caller, dirFh: Buffer, name: Buffer, what: MknodData): Promise<CreatedResult>;
  remove(caller: Caller, dirFh: Buffer, name: Buffer): Promise<WccResult>;
  rmdir(caller: Caller, dirFh: Buffer, name: Buffer): Promise<WccResult>;
  rename(caller: Caller, fromDirFh: Buffer, fromName: Buffer, toDirFh: Buffer, toName: Buffer): Promise<RenameResult>;
  link(caller: Caller, fh: Buffer, linkDirFh: Buffer, linkName: Buffer): Promise<LinkResult>;
  /**
   * maxBytes: the client's `count` (the whole READDIR3resok must fit in it). The layer may return more
   * entries than fit: the program encodes those that fit, clears eof if it dropped any, and answers
   * NFS3ERR_TOOSMALL if not even one fits (RFC 1813 section 3.3.16).
   */
  readdir(caller: Caller, dirFh: Buffer, cookie: bigint, cookieVerifier: Buffer, maxBytes: number): Promise<ReaddirResult>;
  /** dirMaxBytes: `dircount` (names and cookies); maxBytes: `maxcount` (the whole reply). Fitting as for readdir. */
  readdirplus(
    caller: Caller,
    dirFh: Buffer,
    cookie: bigint,
    cookieVerifier: Buffer,
    dirMaxBytes: number,
    maxBytes: number,
  ): Promise<ReaddirPlusResult>;
  /**
   * READDIRPLUS as readdirplus, with the entries encoded by the layer into `target` (at least
   * maxBytes long) rather than returned as objects: the same reply, byte for byte. Optional: the
   * program falls back to readdirplus without it.
   */
  readdirplusInPlace?(
    caller: Caller,
    dirFh: Buffer,
    cookie: bigint,
    cookieVerifier: Buffer,
    dirMaxBytes: number,
    maxBytes: number,
    target: ReaddirPlusTarget,
  ): Promise<ReaddirPlusInPlaceResult>;
  fsstat(caller: Caller, fh: Buffer): Promise<FsstatResult>;
  fsinfo(caller: Caller, fh: Buffer): Promise<FsinfoResult>;
  pathconf(caller: Caller, fh: Buffer): Promise<PathconfResult>;
  commit(caller: Caller, fh: Buffer, offset: bigint, count: number): Promise<CommitResult>;
}

/** MOUNT v3 (RFC 1813 section 5) needs: which shares a peer may see, and the handle for a path. */
export interface MountService {
  /** Share ids granted to this peer, with the groups list MOUNT EXPORT reports (the peer itself). */
  exportsFor(identity: string): string[];
  /**
   * MNT: `path` is `/<share>` or `/<share>/sub/dir`, one character per byte (latin1). Answers a MOUNT status (mountstat3, RFC 1813
   * section 5.1.5) and, on success, the directory's handle.
   */
  mount(caller: Caller, path: string): Promise<{ status: number; handle?: Buffer }>;
}
