// Codecs shared by the NFSv3 procedures (RFC 1813 section 2.5 and 2.6), hand-written on Buffers.
// Decoders throw XdrError on a short or malformed message (GARBAGE_ARGS at the dispatcher);
// encoders write in place into the reply.
import { XdrError, xdrPad, type XdrReader, type XdrWriter } from '../rpc/xdr.js';
import {
  NFS3_COOKIEVERFSIZE,
  NFS3_FHSIZE,
  NFS3_WRITEVERFSIZE,
  type Fattr3,
  type NfsTime,
  type Sattr3,
  type SetTime,
  type WccAttr,
  type WccData,
} from './types.js';

/** The largest READ or WRITE payload we move in one call (FSINFO rtmax/wtmax should not exceed it). */
export const NFS3_MAX_DATA = 1024 * 1024;

/**
 * WRITE data may be this much longer than NFS3_MAX_DATA before it is refused as garbage: a client
 * that rounds its wsize up a little still gets a proper answer from the layer below.
 */
export const NFS3_WRITE_SLACK = 64 * 1024;

/**
 * filename3 is an unbounded string in the RFC. We decode up to this many bytes so that a name longer
 * than NAME_MAX reaches the fs layer and comes back as NFS3ERR_NAMETOOLONG (RFC 1813 section 3.3.3)
 * rather than GARBAGE_ARGS; anything longer than this is not a name any client means to send.
 */
export const NFS3_FILENAME_DECODE_MAX = 1024;

/** nfspath3 (symlink targets), decoded up to this length for the same reason (PATH_MAX is 4096). */
export const NFS3_PATH_DECODE_MAX = 8192;

/** Encoded sizes, used for READ and READDIR fitting. */
export const FATTR3_SIZE = 84;
export const POST_OP_ATTR_SIZE_PRESENT = 4 + FATTR3_SIZE;

/** nfs_fh3: opaque<NFS3_FHSIZE>. A longer handle is not a valid nfs_fh3 at all: garbage. */
export function decodeNfsFh(r: XdrReader): Buffer {
  return r.opaque(NFS3_FHSIZE);
}

/** filename3: raw bytes, passed through unvalidated (the fs layer checks '/', NUL, '.', '..', length). */
export function decodeFilename(r: XdrReader): Buffer {
  return r.stringBytes(NFS3_FILENAME_DECODE_MAX);
}

/** nfspath3: raw bytes. */
export function decodeNfsPath(r: XdrReader): Buffer {
  return r.stringBytes(NFS3_PATH_DECODE_MAX);
}

/** diropargs3: { nfs_fh3 dir; filename3 name; }. */
export function decodeDirOpArgs(r: XdrReader): { dir: Buffer; name: Buffer } {
  const dir = decodeNfsFh(r);
  const name = decodeFilename(r);
  return { dir, name };
}

/** nfstime3: { uint32 seconds; uint32 nseconds; }. */
export function decodeNfsTime(r: XdrReader): NfsTime {
  const seconds = r.uint32();
  const nseconds = r.uint32();
  return { seconds, nseconds };
}

/** cookieverf3 / createverf3 / writeverf3: 8 opaque bytes (a view). */
export function decodeVerifier(r: XdrReader): Buffer {
  return r.opaqueFixed(NFS3_COOKIEVERFSIZE);
}

/** time_how (RFC 1813 section 2.6). */
const DONT_CHANGE = 0;
const SET_TO_SERVER_TIME = 1;
const SET_TO_CLIENT_TIME = 2;

/** set_atime / set_mtime: union switch (time_how set_it). */
export function decodeSetTime(r: XdrReader): SetTime {
  const how = r.uint32();
  switch (how) {
    case DONT_CHANGE:
      return { how: 'dont' };
    case SET_TO_SERVER_TIME:
      return { how: 'server' };
    case SET_TO_CLIENT_TIME:
      return { how: 'client', time: decodeNfsTime(r) };
    default:
      throw new XdrError('XDR_BAD_VALUE', `time_how ${how}`);
  }
}

/**
 * sattr3: set_mode3, set_uid3, set_gid3, set_size3, set_atime, set_mtime, each a union on a bool
 * (or time_how). The size is a uint64; as a number it is exact to 2^53, beyond which the fs layer
 * answers NFS3ERR_FBIG anyway.
 */
export function decodeSattr3(r: XdrReader): Sattr3 {
  const attributes: Sattr3 = { atime: { how: 'dont' }, mtime: { how: 'dont' } };
  if (r.bool()) attributes.mode = r.uint32();
  if (r.bool()) attributes.uid = r.uint32();
  if (r.bool()) attributes.gid = r.uint32();
  if (r.bool()) attributes.size = r.uint64AsNumber();
  attributes.atime = decodeSetTime(r);
  attributes.mtime = decodeSetTime(r);
  return attributes;
}

/** sattrguard3: union switch (bool check) { case TRUE: nfstime3 obj_ctime; }. */
export function decodeSattrGuard3(r: XdrReader): NfsTime | null {
  return r.bool() ? decodeNfsTime(r) : null;
}

export function encodeNfsTime(w: XdrWriter, time: NfsTime): void {
  w.uint32(time.seconds);
  w.uint32(time.nseconds);
}

/** fattr3: 84 bytes (RFC 1813 section 2.6). */
export function encodeFattr3(w: XdrWriter, a: Fattr3): void {
  w.uint32(a.type);
  w.uint32(a.mode);
  w.uint32(a.nlink);
  w.uint32(a.uid);
  w.uint32(a.gid);
  w.uint64(a.size);
  w.uint64(a.used);
  w.uint32(a.rdev.specdata1);
  w.uint32(a.rdev.specdata2);
  w.uint64(a.fsid);
  w.uint64(a.fileid);
  encodeNfsTime(w, a.atime);
  encodeNfsTime(w, a.mtime);
  encodeNfsTime(w, a.ctime);
}

/** post_op_attr: union switch (bool attributes_follow) { case TRUE: fattr3 attributes; }. */
export function encodePostOpAttr(w: XdrWriter, a: Fattr3 | null): void {
  if (a === null) {
    w.bool(false);
  } else {
    w.bool(true);
    encodeFattr3(w, a);
  }
}

/** wcc_attr: { size3 size; nfstime3 mtime; nfstime3 ctime; }. */
export function encodeWccAttr(w: XdrWriter, a: WccAttr): void {
  w.uint64(a.size);
  encodeNfsTime(w, a.mtime);
  encodeNfsTime(w, a.ctime);
}

/** pre_op_attr: union switch (bool attributes_follow) { case TRUE: wcc_attr attributes; }. */
export function encodePreOpAttr(w: XdrWriter, a: WccAttr | null): void {
  if (a === null) {
    w.bool(false);
  } else {
    w.bool(true);
    encodeWccAttr(w, a);
  }
}

/** wcc_data: { pre_op_attr before; post_op_attr after; }. */
export function encodeWccData(w: XdrWriter, wcc: WccData): void {
  encodePreOpAttr(w, wcc.before);
  encodePostOpAttr(w, wcc.after);
}

/** nfs_fh3 as a reply field. A handle the fs layer made longer than 64 bytes is a bug, not a reply. */
export function encodeNfsFh(w: XdrWriter, fh: Buffer): void {
  if (fh.length > NFS3_FHSIZE) throw new Error(`file handle of ${fh.length} bytes exceeds NFS3_FHSIZE`);
  w.opaque(fh);
}

/** post_op_fh3: union switch (bool handle_follows) { case TRUE: nfs_fh3 handle; }. */
export function encodePostOpFh3(w: XdrWriter, fh: Buffer | null): void {
  if (fh === null) {
    w.bool(false);
  } else {
    w.bool(true);
    encodeNfsFh(w, fh);
  }
}

/** cookieverf3 / writeverf3: exactly 8 bytes on the wire; anything else from below is a bug. */
export function encodeVerifier(w: XdrWriter, verifier: Buffer): void {
  if (verifier.length !== NFS3_WRITEVERFSIZE) throw new Error(`verifier of ${verifier.length} bytes, want 8`);
  w.opaqueFixed(verifier);
}

/** Encoded size of an XDR variable-length opaque or string of `length` bytes. */
export function opaqueSize(length: number): number {
  return 4 + length + xdrPad(length);
}

export function postOpAttrSize(a: Fattr3 | null): number {
  return a === null ? 4 : POST_OP_ATTR_SIZE_PRESENT;
}

export function postOpFh3Size(fh: Buffer | null): number {
  return fh === null ? 4 : 4 + opaqueSize(fh.length);
}
