// RFC 1813 section 3.3.5: READLINK3res NFSPROC3_READLINK(READLINK3args) = 5.
//   struct READLINK3args { nfs_fh3 symlink; };
//   struct READLINK3resok { post_op_attr symlink_attributes; nfspath3 data; };
//   struct READLINK3resfail { post_op_attr symlink_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, ReadlinkResult } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Readlink3Args {
  symlink: Buffer;
}

export function decodeReadlink3Args(r: XdrReader): Readlink3Args {
  return { symlink: decodeNfsFh(r) };
}

export function encodeReadlink3Res(w: XdrWriter, res: ReadlinkResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
  if (res.status === Nfs3Status.NFS3_OK) {
    if (res.target === undefined) throw new Error('READLINK: NFS3_OK without a target');
    w.opaque(res.target);
  }
}

export function readlink(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeReadlink3Args(call.args);
    encodeReadlink3Res(reply, await fs.readlink(callerOf(call), args.symlink));
  };
}
