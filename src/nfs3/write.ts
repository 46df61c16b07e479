// RFC 1813 section 3.3.7: WRITE3res NFSPROC3_WRITE(WRITE3args) = 7.
//   struct WRITE3args { nfs_fh3 file; offset3 offset; count3 count; stable_how stable; opaque data<>; };
//   struct WRITE3resok { wcc_data file_wcc; count3 count; stable_how committed; writeverf3 verf; };
//   struct WRITE3resfail { wcc_data file_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import { XdrError, type XdrReader, type XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, WriteResult } from '../fs/types.js';
import { Nfs3Status, StableHow } from './types.js';
import { callerOf } from './caller.js';
import { NFS3_MAX_DATA, NFS3_WRITE_SLACK, decodeNfsFh, encodeVerifier, encodeWccData } from './xdr.js';

export interface Write3Args {
  file: Buffer;
  offset: bigint;
  stable: StableHow;
  /** Exactly `count` bytes: a view into the request, never a copy. */
  data: Buffer;
}

export function decodeStableHow(r: XdrReader): StableHow {
  const stable = r.uint32();
  if (stable !== StableHow.UNSTABLE && stable !== StableHow.DATA_SYNC && stable !== StableHow.FILE_SYNC) {
    throw new XdrError('XDR_BAD_VALUE', `stable_how ${stable}`);
  }
  return stable;
}

export function decodeWrite3Args(r: XdrReader): Write3Args {
  const file = decodeNfsFh(r);
  const offset = r.uint64();
  const count = r.uint32();
  const stable = decodeStableHow(r);
  const data = r.opaque(NFS3_MAX_DATA + NFS3_WRITE_SLACK);
  // RFC 1813 section 3.3.7: count is the number of bytes to write. More than the data holds is a
  // malformed request; fewer means only the first count bytes are written.
  if (count > data.length) throw new XdrError('XDR_BAD_VALUE', `WRITE count ${count} exceeds data of ${data.length}`);
  return { file, offset, stable, data: count < data.length ? data.subarray(0, count) : data };
}

export function encodeWrite3Res(w: XdrWriter, res: WriteResult): void {
  w.uint32(res.status);
  encodeWccData(w, res.wcc);
  if (res.status !== Nfs3Status.NFS3_OK) return;
  w.uint32(res.count);
  w.uint32(res.committed);
  encodeVerifier(w, res.verifier);
}

export function write(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeWrite3Args(call.args);
    encodeWrite3Res(reply, await fs.write(callerOf(call), args.file, args.offset, args.stable, args.data));
  };
}
