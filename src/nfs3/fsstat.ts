// RFC 1813 section 3.3.18: FSSTAT3res NFSPROC3_FSSTAT(FSSTAT3args) = 18.
//   struct FSSTAT3args { nfs_fh3 fsroot; };
//   struct FSSTAT3resok { post_op_attr obj_attributes; size3 tbytes; size3 fbytes; size3 abytes;
//                         size3 tfiles; size3 ffiles; size3 afiles; uint32 invarsec; };
//   struct FSSTAT3resfail { post_op_attr obj_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { FsstatResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Fsstat3Args {
  fsroot: Buffer;
}

export function decodeFsstat3Args(r: XdrReader): Fsstat3Args {
  return { fsroot: decodeNfsFh(r) };
}

export function encodeFsstat3Res(w: XdrWriter, res: FsstatResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
  if (res.status !== Nfs3Status.NFS3_OK) return;
  w.uint64(res.tbytes);
  w.uint64(res.fbytes);
  w.uint64(res.abytes);
  w.uint64(res.tfiles);
  w.uint64(res.ffiles);
  w.uint64(res.afiles);
  w.uint32(res.invarsec);
}

export function fsstat(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeFsstat3Args(call.args);
    encodeFsstat3Res(reply, await fs.fsstat(callerOf(call), args.fsroot));
  };
}
