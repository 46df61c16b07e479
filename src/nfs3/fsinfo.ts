// RFC 1813 section 3.3.19: FSINFO3res NFSPROC3_FSINFO(FSINFO3args) = 19.
//   struct FSINFO3args { nfs_fh3 fsroot; };
//   struct FSINFO3resok { post_op_attr obj_attributes; uint32 rtmax; uint32 rtpref; uint32 rtmult;
//                         uint32 wtmax; uint32 wtpref; uint32 wtmult; uint32 dtpref;
//                         size3 maxfilesize; nfstime3 time_delta; uint32 properties; };
//   struct FSINFO3resfail { post_op_attr obj_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { FsinfoResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodeNfsTime, encodePostOpAttr } from './xdr.js';

export interface Fsinfo3Args {
  fsroot: Buffer;
}

export function decodeFsinfo3Args(r: XdrReader): Fsinfo3Args {
  return { fsroot: decodeNfsFh(r) };
}

export function encodeFsinfo3Res(w: XdrWriter, res: FsinfoResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
  if (res.status !== Nfs3Status.NFS3_OK) return;
  w.uint32(res.rtmax);
  w.uint32(res.rtpref);
  w.uint32(res.rtmult);
  w.uint32(res.wtmax);
  w.uint32(res.wtpref);
  w.uint32(res.wtmult);
  w.uint32(res.dtpref);
  w.uint64(res.maxfilesize);
  encodeNfsTime(w, res.timeDelta);
  w.uint32(res.properties);
}

export function fsinfo(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeFsinfo3Args(call.args);
    encodeFsinfo3Res(reply, await fs.fsinfo(callerOf(call), args.fsroot));
  };
}
