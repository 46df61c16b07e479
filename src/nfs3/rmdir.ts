// RFC 1813 section 3.3.13: RMDIR3res NFSPROC3_RMDIR(RMDIR3args) = 13.
//   struct RMDIR3args { diropargs3 object; };
//   struct RMDIR3resok { wcc_data dir_wcc; };  struct RMDIR3resfail { wcc_data dir_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader } from '../rpc/xdr.js';
import type { NfsFileService } from '../fs/types.js';
import { callerOf } from './caller.js';
import { encodeRemove3Res } from './remove.js';
import { decodeDirOpArgs } from './xdr.js';

export interface Rmdir3Args {
  object: { dir: Buffer; name: Buffer };
}

export function decodeRmdir3Args(r: XdrReader): Rmdir3Args {
  return { object: decodeDirOpArgs(r) };
}

export function rmdir(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { object } = decodeRmdir3Args(call.args);
    encodeRemove3Res(reply, await fs.rmdir(callerOf(call), object.dir, object.name));
  };
}
