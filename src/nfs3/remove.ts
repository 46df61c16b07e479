// RFC 1813 section 3.3.12: REMOVE3res NFSPROC3_REMOVE(REMOVE3args) = 12.
//   struct REMOVE3args { diropargs3 object; };
//   struct REMOVE3resok { wcc_data dir_wcc; };  struct REMOVE3resfail { wcc_data dir_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, WccResult } from '../fs/types.js';
import { callerOf } from './caller.js';
import { decodeDirOpArgs, encodeWccData } from './xdr.js';

export interface Remove3Args {
  object: { dir: Buffer; name: Buffer };
}

export function decodeRemove3Args(r: XdrReader): Remove3Args {
  return { object: decodeDirOpArgs(r) };
}

/** REMOVE3res and RMDIR3res: status, then dir_wcc in both arms. */
export function encodeRemove3Res(w: XdrWriter, res: WccResult): void {
  w.uint32(res.status);
  encodeWccData(w, res.wcc);
}

export function remove(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { object } = decodeRemove3Args(call.args);
    encodeRemove3Res(reply, await fs.remove(callerOf(call), object.dir, object.name));
  };
}
