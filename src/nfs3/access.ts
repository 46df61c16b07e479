// RFC 1813 section 3.3.4: ACCESS3res NFSPROC3_ACCESS(ACCESS3args) = 4.
//   struct ACCESS3args { nfs_fh3 object; uint32 access; };
//   struct ACCESS3resok { post_op_attr obj_attributes; uint32 access; };
//   struct ACCESS3resfail { post_op_attr obj_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { AccessResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Access3Args {
  object: Buffer;
  access: number;
}

export function decodeAccess3Args(r: XdrReader): Access3Args {
  const object = decodeNfsFh(r);
  const access = r.uint32();
  return { object, access };
}

export function encodeAccess3Res(w: XdrWriter, res: AccessResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
  if (res.status === Nfs3Status.NFS3_OK) w.uint32(res.access);
}

export function access(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeAccess3Args(call.args);
    encodeAccess3Res(reply, await fs.access(callerOf(call), args.object, args.access));
  };
}
