// Backend attributes (struct stat) -> fattr3 / wcc_attr (RFC 1813 section 2.6).
import type { NativeStat } from '../native/fsbridge.js';
import { Ftype3, type Fattr3, type WccAttr, type WccData } from '../nfs3/types.js';

const S_IFMT = 0o170000;

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

export function ftypeOf(mode: number): Ftype3 {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return Ftype3.NF3DIR;
    case S_IFLNK:
      return Ftype3.NF3LNK;
    case S_IFCHR:
      return Ftype3.NF3CHR;
    case S_IFBLK:
      return Ftype3.NF3BLK;
    case S_IFIFO:
      return Ftype3.NF3FIFO;
    case S_IFSOCK:
      return Ftype3.NF3SOCK;
    default:
      return Ftype3.NF3REG;
  }
}

export function isDirectory(stat: NativeStat): boolean {
  return (stat.mode & S_IFMT) === S_IFDIR;
}

export function isRegular(stat: NativeStat): boolean {
  return (stat.mode & S_IFMT) === S_IFREG;
}

/** fattr3 of a backend object; fsid is the share's, so each share is its own filesystem to the guest. */
export function toFattr3(stat: NativeStat, fsid: bigint): Fattr3 {
  return {
    type: ftypeOf(stat.mode),
    mode: stat.mode & 0o7777,
    nlink: stat.nlink,
    uid: stat.uid,
    gid: stat.gid,
    size: stat.size,
    used: stat.blocks * 512,
    rdev: { specdata1: stat.rdevMajor, specdata2: stat.rdevMinor },
    fsid,
    fileid: stat.ino,
    atime: { seconds: stat.atimeSec, nseconds: stat.atimeNsec },
    mtime: { seconds: stat.mtimeSec, nseconds: stat.mtimeNsec },
    ctime: { seconds: stat.ctimeSec, nseconds: stat.ctimeNsec },
  };
}

export function toWccAttr(stat: NativeStat): WccAttr {
  return {
    size: stat.size,
    mtime: { seconds: stat.mtimeSec, nseconds: stat.mtimeNsec },
    ctime: { seconds: stat.ctimeSec, nseconds: stat.ctimeNsec },
  };
}

export function wcc(before: NativeStat | undefined, after: NativeStat | undefined, fsid: bigint): WccData {
  return {
    before: before ? toWccAttr(before) : null,
    after: after ? toFattr3(after, fsid) : null,
  };
}

export const NO_WCC: WccData = { before: null, after: null };
