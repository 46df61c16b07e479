// RFC 1813 section 3.3.16: READDIR3res NFSPROC3_READDIR(READDIR3args) = 16.
//   struct READDIR3args { nfs_fh3 dir; cookie3 cookie; cookieverf3 cookieverf; count3 count; };
//   struct entry3 { fileid3 fileid; filename3 name; cookie3 cookie; entry3 *nextentry; };
//   struct dirlist3 { entry3 *entries; bool eof; };
//   struct READDIR3resok { post_op_attr dir_attributes; cookieverf3 cookieverf; dirlist3 reply; };
//   struct READDIR3resfail { post_op_attr dir_attributes; };
//
// count bounds the whole READDIR3resok including XDR overhead; we also count the status word, so a
// reply never exceeds what the client asked for. The fs layer may hand us more entries than fit:
// we encode a prefix, clear eof if we dropped any, and answer NFS3ERR_TOOSMALL when none fits.
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, ReaddirResult } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, decodeVerifier, encodePostOpAttr, encodeVerifier, opaqueSize } from './xdr.js';

/** No reply we build for a directory listing is larger than this, whatever count says. */
export const NFS3_READDIR_MAX = 1024 * 1024;

/** The list terminator (entries pointer FALSE) and eof: 8 bytes closing every dirlist3. */
export const DIRLIST3_TAIL = 8;

export interface Readdir3Args {
  dir: Buffer;
  cookie: bigint;
  cookieverf: Buffer;
  count: number;
}

export function decodeReaddir3Args(r: XdrReader): Readdir3Args {
  const dir = decodeNfsFh(r);
  const cookie = r.uint64();
  const cookieverf = decodeVerifier(r);
  const count = r.uint32();
  return { dir, cookie, cookieverf, count };
}

/** Encoded size of one entry3 with its value-follows flag. */
export function entry3Size(nameLength: number): number {
  return 4 + 8 + opaqueSize(nameLength) + 8;
}

/** READDIR3res fitted into `count` bytes (from the status word on). */
export function encodeReaddir3Res(w: XdrWriter, res: ReaddirResult, count: number): void {
  const start = w.offset;
  if (res.status !== Nfs3Status.NFS3_OK) {
    w.uint32(res.status);
    encodePostOpAttr(w, res.dirAttr);
    return;
  }
  const budget = Math.min(count, NFS3_READDIR_MAX);
  w.uint32(Nfs3Status.NFS3_OK);
  encodePostOpAttr(w, res.dirAttr);
  encodeVerifier(w, res.cookieVerifier);
  let used = w.offset - start;
  let written = 0;
  if (used + DIRLIST3_TAIL <= budget) {
    for (const entry of res.entries) {
      const size = entry3Size(entry.name.length);
      if (used + size + DIRLIST3_TAIL > budget) break;
      w.bool(true);
      w.uint64(entry.fileid);
      w.opaque(entry.name);
      w.uint64(entry.cookie);
      used += size;
      written++;
    }
  }
  endDirList(w, start, used, budget, written, res);
}

/**
 * Closes a dirlist3 / dirlistplus3 whose entries were written from `start` on: eof only when every
 * entry the layer gave was written, or NFS3ERR_TOOSMALL (RFC 1813 sections 3.3.16 and 3.3.17) with
 * the directory's attributes when not even one entry, or the reply's frame, fits.
 */
export function endDirList(
  w: XdrWriter,
  start: number,
  used: number,
  budget: number,
  written: number,
  res: { dirAttr: ReaddirResult['dirAttr']; entries: readonly unknown[]; eof: boolean },
): void {
  if (used + DIRLIST3_TAIL > budget || (written === 0 && res.entries.length > 0)) {
    w.offset = start;
    w.uint32(Nfs3Status.NFS3ERR_TOOSMALL);
    encodePostOpAttr(w, res.dirAttr);
    return;
  }
  w.bool(false);
  w.bool(written === res.entries.length ? res.eof : false);
}

export function readdir(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeReaddir3Args(call.args);
    const count = Math.min(args.count, NFS3_READDIR_MAX);
    const res = await fs.readdir(callerOf(call), args.dir, args.cookie, args.cookieverf, count);
    encodeReaddir3Res(reply, res, count);
  };
}
