// RFC 1813 section 3.3.8: CREATE3res NFSPROC3_CREATE(CREATE3args) = 8.
//   enum createmode3 { UNCHECKED = 0, GUARDED = 1, EXCLUSIVE = 2 };
//   union createhow3 switch (createmode3 mode) {
//     case UNCHECKED: case GUARDED: sattr3 obj_attributes;  case EXCLUSIVE: createverf3 verf; };
//   struct CREATE3args { diropargs3 where; createhow3 how; };
//   struct CREATE3resok { post_op_fh3 obj; post_op_attr obj_attributes; wcc_data dir_wcc; };
//   struct CREATE3resfail { wcc_data dir_wcc; };
// MKDIR, SYMLINK and MKNOD answer the same shape and share encodeCreate3Res.
import type { ProcedureHandler } from '../rpc/types.js';
import { XdrError, type XdrReader, type XdrWriter } from '../rpc/xdr.js';
import type { CreatedResult, NfsFileService } from '../fs/types.js';
import { CreateMode, Nfs3Status, type CreateHow } from './types.js';
import { callerOf } from './caller.js';
import { decodeDirOpArgs, decodeSattr3, decodeVerifier, encodePostOpAttr, encodePostOpFh3, encodeWccData } from './xdr.js';

export interface Create3Args {
  where: { dir: Buffer; name: Buffer };
  how: CreateHow;
}

export function decodeCreateHow3(r: XdrReader): CreateHow {
  const mode = r.uint32();
  switch (mode) {
    case CreateMode.UNCHECKED:
    case CreateMode.GUARDED:
      return { mode, attributes: decodeSattr3(r) };
    case CreateMode.EXCLUSIVE:
      return { mode, verifier: decodeVerifier(r) };
    default:
      throw new XdrError('XDR_BAD_VALUE', `createmode3 ${mode}`);
  }
}

export function decodeCreate3Args(r: XdrReader): Create3Args {
  const where = decodeDirOpArgs(r);
  const how = decodeCreateHow3(r);
  return { where, how };
}

/** CREATE3res, MKDIR3res, SYMLINK3res, MKNOD3res. */
export function encodeCreate3Res(w: XdrWriter, res: CreatedResult): void {
  w.uint32(res.status);
  if (res.status === Nfs3Status.NFS3_OK) {
    encodePostOpFh3(w, res.handle);
    encodePostOpAttr(w, res.objAttr);
  }
  encodeWccData(w, res.dirWcc);
}

export function create(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { where, how } = decodeCreate3Args(call.args);
    encodeCreate3Res(reply, await fs.create(callerOf(call), where.dir, where.name, how));
  };
}
