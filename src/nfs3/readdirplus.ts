// RFC 1813 section 3.3.17: READDIRPLUS3res NFSPROC3_READDIRPLUS(READDIRPLUS3args) = 17.
//   struct READDIRPLUS3args { nfs_fh3 dir; cookie3 cookie; cookieverf3 cookieverf;
//                             count3 dircount; count3 maxcount; };
//   struct entryplus3 { fileid3 fileid; filename3 name; cookie3 cookie;
//                       post_op_attr name_attributes; post_op_fh3 name_handle; entryplus3 *nextentry; };
//   struct dirlistplus3 { entryplus3 *entries; bool eof; };
//   struct READDIRPLUS3resok { post_op_attr dir_attributes; cookieverf3 cookieverf; dirlistplus3 reply; };
//   struct READDIRPLUS3resfail { post_op_attr dir_attributes; };
//
// maxcount bounds the whole reply (we count from the status word). dircount bounds "the directory
// information" without attributes and handles: we count each entry's fileid, name and cookie. The
// first entry is always allowed past dircount (only maxcount can make a reply TOOSMALL), and a
// dircount of 0 means no separate limit: the RFC leaves dircount a hint, and Linux knfsd ignores it.
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, ReaddirPlusResult } from '../fs/types.js';
import { NFS3_COOKIEVERFSIZE, Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { DIRLIST3_TAIL, NFS3_READDIR_MAX, endDirList } from './readdir.js';
import {
  decodeNfsFh,
  decodeVerifier,
  encodePostOpAttr,
  encodePostOpFh3,
  encodeVerifier,
  opaqueSize,
  POST_OP_ATTR_SIZE_PRESENT,
  postOpAttrSize,
  postOpFh3Size,
} from './xdr.js';

export interface Readdirplus3Args {
  dir: Buffer;
  cookie: bigint;
  cookieverf: Buffer;
  dircount: number;
  maxcount: number;
}

export function decodeReaddirplus3Args(r: XdrReader): Readdirplus3Args {
  const dir = decodeNfsFh(r);
  const cookie = r.uint64();
  const cookieverf = decodeVerifier(r);
  const dircount = r.uint32();
  const maxcount = r.uint32();
  return { dir, cookie, cookieverf, dircount, maxcount };
}

/** The dircount-relevant bytes of one entry: fileid, name, cookie. */
export function entryplus3DirSize(nameLength: number): number {
  return 8 + opaqueSize(nameLength) + 8;
}

/** READDIRPLUS3res fitted into maxcount (whole reply) and dircount (names and cookies). */
export function encodeReaddirplus3Res(w: XdrWriter, res: ReaddirPlusResult, dircount: number, maxcount: number): void {
  const start = w.offset;
  if (res.status !== Nfs3Status.NFS3_OK) {
    w.uint32(res.status);
    encodePostOpAttr(w, res.dirAttr);
    return;
  }
  const budget = Math.min(maxcount, NFS3_READDIR_MAX);
  const dirBudget = dircount === 0 ? Infinity : dircount;
  w.uint32(Nfs3Status.NFS3_OK);
  encodePostOpAttr(w, res.dirAttr);
  encodeVerifier(w, res.cookieVerifier);
  let used = w.offset - start;
  let dirUsed = 0;
  let written = 0;
  if (used + DIRLIST3_TAIL <= budget) {
    for (const entry of res.entries) {
      const dirSize = entryplus3DirSize(entry.name.length);
      const size = 4 + dirSize + postOpAttrSize(entry.attr) + postOpFh3Size(entry.handle);
      if (used + size + DIRLIST3_TAIL > budget) break;
      if (written > 0 && dirUsed + dirSize > dirBudget) break;
      w.bool(true);
      w.uint64(entry.fileid);
      w.opaque(entry.name);
      w.uint64(entry.cookie);
      encodePostOpAttr(w, entry.attr);
      encodePostOpFh3(w, entry.handle);
      used += size;
      dirUsed += dirSize;
      written++;
    }
  }
  endDirList(w, start, used, budget, written, res);
}

/** status, post_op_attr with attributes, cookieverf: the READDIRPLUS3resok header at its largest. */
export const READDIRPLUS_HEADER_MAX = 4 + POST_OP_ATTR_SIZE_PRESENT + NFS3_COOKIEVERFSIZE;

export function readdirplus(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeReaddirplus3Args(call.args);
    const maxcount = Math.min(args.maxcount, NFS3_READDIR_MAX);
    const dircount = Math.min(args.dircount, NFS3_READDIR_MAX);
    if (fs.readdirplusInPlace) {
      await readdirplusInPlace(fs, call, reply, args, dircount, maxcount);
      return;
    }
    const res = await fs.readdirplus(callerOf(call), args.dir, args.cookie, args.cookieverf, dircount, maxcount);
    encodeReaddirplus3Res(reply, res, dircount, maxcount);
  };
}

/**
 * The entries are encoded by the fs layer (on a worker thread) straight into the reply, as READ
 * reads in place: room for the largest header plus maxcount is made first, the layer writes the
 * dirlistplus3 after the largest header, and the header is filled in afterwards (sliding the
 * entries down when the directory's attributes are missing). The fs layer never writes into the
 * header's room, so a failure reply written there (JUKEBOX at a backend's timeout, with the
 * worker still running) is never overwritten.
 */
async function readdirplusInPlace(
  fs: NfsFileService,
  call: Parameters<ProcedureHandler>[0],
  reply: XdrWriter,
  args: Readdirplus3Args,
  dircount: number,
  maxcount: number,
): Promise<void> {
  const start = reply.ensure(READDIRPLUS_HEADER_MAX + maxcount);
  const buffer = reply.buffer;
  const entriesAt = start + READDIRPLUS_HEADER_MAX;
  const res = await fs.readdirplusInPlace!(callerOf(call), args.dir, args.cookie, args.cookieverf, dircount, maxcount, {
    buffer,
    offset: entriesAt,
    length: maxcount,
  });
  if (reply.buffer !== buffer || reply.offset !== start) {
    throw new Error('READDIRPLUS: reply buffer changed while encoding in place');
  }
  // These writes stay within the room ensured above, so the buffer is not reallocated.
  if (res.status !== Nfs3Status.NFS3_OK || res.tooSmall) {
    reply.uint32(res.status !== Nfs3Status.NFS3_OK ? res.status : Nfs3Status.NFS3ERR_TOOSMALL);
    encodePostOpAttr(reply, res.dirAttr);
    return;
  }
  reply.uint32(Nfs3Status.NFS3_OK);
  encodePostOpAttr(reply, res.dirAttr);
  encodeVerifier(reply, res.cookieVerifier);
  const headerEnd = reply.offset;
  if (!Number.isInteger(res.bytes) || res.bytes < DIRLIST3_TAIL || headerEnd - start + res.bytes > maxcount) {
    throw new Error(`READDIRPLUS: fs layer wrote ${res.bytes} bytes after a ${headerEnd - start}-byte header, maxcount ${maxcount}`);
  }
  if (headerEnd !== entriesAt) buffer.copyWithin(headerEnd, entriesAt, entriesAt + res.bytes);
  reply.offset = headerEnd + res.bytes;
}
