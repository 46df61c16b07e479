// NFSv3 protocol types (RFC 1813 section 2), in the RFC's own words.

export const NFS3_FHSIZE = 64;
export const NFS3_COOKIEVERFSIZE = 8;
export const NFS3_CREATEVERFSIZE = 8;
export const NFS3_WRITEVERFSIZE = 8;

/** RFC 1813 section 2.6: nfsstat3. Every member with its explicit number. */
export enum Nfs3Status {
  NFS3_OK = 0,
  NFS3ERR_PERM = 1,
  NFS3ERR_NOENT = 2,
  NFS3ERR_IO = 5,
  NFS3ERR_NXIO = 6,
  NFS3ERR_ACCES = 13,
  NFS3ERR_EXIST = 17,
  NFS3ERR_XDEV = 18,
  NFS3ERR_NODEV = 19,
  NFS3ERR_NOTDIR = 20,
  NFS3ERR_ISDIR = 21,
  NFS3ERR_INVAL = 22,
  NFS3ERR_FBIG = 27,
  NFS3ERR_NOSPC = 28,
  NFS3ERR_ROFS = 30,
  NFS3ERR_MLINK = 31,
  NFS3ERR_NAMETOOLONG = 63,
  NFS3ERR_NOTEMPTY = 66,
  NFS3ERR_DQUOT = 69,
  NFS3ERR_STALE = 70,
  NFS3ERR_REMOTE = 71,
  NFS3ERR_BADHANDLE = 10001,
  NFS3ERR_NOT_SYNC = 10002,
  NFS3ERR_BAD_COOKIE = 10003,
  NFS3ERR_NOTSUPP = 10004,
  NFS3ERR_TOOSMALL = 10005,
  NFS3ERR_SERVERFAULT = 10006,
  NFS3ERR_BADTYPE = 10007,
  NFS3ERR_JUKEBOX = 10008,
}

/** RFC 1813 section 2.6: ftype3. */
export enum Ftype3 {
  NF3REG = 1,
  NF3DIR = 2,
  NF3BLK = 3,
  NF3CHR = 4,
  NF3LNK = 5,
  NF3SOCK = 6,
  NF3FIFO = 7,
}

/** RFC 1813 section 3.3.20 / 4: stable_how. */
export enum StableHow {
  UNSTABLE = 0,
  DATA_SYNC = 1,
  FILE_SYNC = 2,
}

/** RFC 1813 section 3.3.8: createmode3. */
export enum CreateMode {
  UNCHECKED = 0,
  GUARDED = 1,
  EXCLUSIVE = 2,
}

/** RFC 1813 section 3.3.4: ACCESS bits. */
export const ACCESS3 = {
  READ: 0x0001,
  LOOKUP: 0x0002,
  MODIFY: 0x0004,
  EXTEND: 0x0008,
  DELETE: 0x0010,
  EXECUTE: 0x0020,
} as const;

/** RFC 1813 section 3.3.19: FSINFO properties. */
export const FSF3 = {
  LINK: 0x0001,
  SYMLINK: 0x0002,
  HOMOGENEOUS: 0x0008,
  CANSETTIME: 0x0010,
} as const;

/** nfstime3: seconds and nanoseconds since the epoch. */
export interface NfsTime {
  seconds: number;
  nseconds: number;
}

/** RFC 1813 section 2.6: fattr3. 64-bit fields as numbers (exact to 2^53; sizes and inode numbers fit). */
export interface Fattr3 {
  type: Ftype3;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  used: number;
  rdev: { specdata1: number; specdata2: number };
  fsid: bigint;
  fileid: number;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** RFC 1813 section 2.6: wcc_attr, the pre-operation attributes. */
export interface WccAttr {
  size: number;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** wcc_data: pre_op_attr and post_op_attr, each optional. */
export interface WccData {
  before: WccAttr | null;
  after: Fattr3 | null;
}

/** RFC 1813 section 2.6: set_atime / set_mtime. */
export type SetTime = { how: 'dont' } | { how: 'server' } | { how: 'client'; time: NfsTime };

/** RFC 1813 section 2.6: sattr3. Absent fields are not set. */
export interface Sattr3 {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime: SetTime;
  mtime: SetTime;
}

/** createhow3 (RFC 1813 section 3.3.8). */
export type CreateHow =
  | { mode: CreateMode.UNCHECKED | CreateMode.GUARDED; attributes: Sattr3 }
  | { mode: CreateMode.EXCLUSIVE; verifier: Buffer };

/** mknoddata3 (RFC 1813 section 3.3.11). */
export type MknodData =
  | { type: Ftype3.NF3CHR | Ftype3.NF3BLK; attributes: Sattr3; spec: { specdata1: number; specdata2: number } }
  | { type: Ftype3.NF3SOCK | Ftype3.NF3FIFO; attributes: Sattr3 }
  | { type: Ftype3.NF3REG | Ftype3.NF3DIR | Ftype3.NF3LNK };
