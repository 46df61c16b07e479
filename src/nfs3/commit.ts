// RFC 1813 section 3.3.21: COMMIT3res NFSPROC3_COMMIT(COMMIT3args) = 21.
//   struct COMMIT3args { nfs_fh3 file; offset3 offset; count3 count; };
//   struct COMMIT3resok { wcc_data file_wcc; writeverf3 verf; };
//   struct COMMIT3resfail { wcc_data file_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { CommitResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodeVerifier, encodeWccData } from './xdr.js';

export interface Commit3Args {
  file: Buffer;
  offset: bigint;
  /** 0 means from offset to the end of the file. */
  count: number;
}

export function decodeCommit3Args(r: XdrReader): Commit3Args {
  const file = decodeNfsFh(r);
  const offset = r.uint64();
  const count = r.uint32();
  return { file, offset, count };
}

export function encodeCommit3Res(w: XdrWriter, res: CommitResult): void {
  w.uint32(res.status);
  encodeWccData(w, res.wcc);
  if (res.status === Nfs3Status.NFS3_OK) encodeVerifier(w, res.verifier);
}

export function commit(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeCommit3Args(call.args);
    encodeCommit3Res(reply, await fs.commit(callerOf(call), args.file, args.offset, args.count));
  };
}
