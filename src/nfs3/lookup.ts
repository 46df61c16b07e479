// RFC 1813 section 3.3.3: LOOKUP3res NFSPROC3_LOOKUP(LOOKUP3args) = 3.
//   struct LOOKUP3args { diropargs3 what; };
//   struct LOOKUP3resok { nfs_fh3 object; post_op_attr obj_attributes; post_op_attr dir_attributes; };
//   struct LOOKUP3resfail { post_op_attr dir_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { LookupResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeDirOpArgs, encodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Lookup3Args {
  what: { dir: Buffer; name: Buffer };
}

export function decodeLookup3Args(r: XdrReader): Lookup3Args {
  return { what: decodeDirOpArgs(r) };
}

export function encodeLookup3Res(w: XdrWriter, res: LookupResult): void {
  w.uint32(res.status);
  if (res.status === Nfs3Status.NFS3_OK) {
    if (res.handle === undefined) throw new Error('LOOKUP: NFS3_OK without a handle');
    encodeNfsFh(w, res.handle);
    encodePostOpAttr(w, res.objAttr);
  }
  encodePostOpAttr(w, res.dirAttr);
}

export function lookup(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { what } = decodeLookup3Args(call.args);
    encodeLookup3Res(reply, await fs.lookup(callerOf(call), what.dir, what.name));
  };
}
