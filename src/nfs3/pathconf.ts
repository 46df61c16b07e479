// RFC 1813 section 3.3.20: PATHCONF3res NFSPROC3_PATHCONF(PATHCONF3args) = 20.
//   struct PATHCONF3args { nfs_fh3 object; };
//   struct PATHCONF3resok { post_op_attr obj_attributes; uint32 linkmax; uint32 name_max;
//                           bool no_trunc; bool chown_restricted; bool case_insensitive; bool case_preserving; };
//   struct PATHCONF3resfail { post_op_attr obj_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, PathconfResult } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Pathconf3Args {
  object: Buffer;
}

export function decodePathconf3Args(r: XdrReader): Pathconf3Args {
  return { object: decodeNfsFh(r) };
}

export function encodePathconf3Res(w: XdrWriter, res: PathconfResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
  if (res.status !== Nfs3Status.NFS3_OK) return;
  w.uint32(res.linkmax);
  w.uint32(res.nameMax);
  w.bool(res.noTrunc);
  w.bool(res.chownRestricted);
  w.bool(res.caseInsensitive);
  w.bool(res.casePreserving);
}

export function pathconf(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodePathconf3Args(call.args);
    encodePathconf3Res(reply, await fs.pathconf(callerOf(call), args.object));
  };
}
