// RFC 1813 section 3.3.9: MKDIR3res NFSPROC3_MKDIR(MKDIR3args) = 9.
//   struct MKDIR3args { diropargs3 where; sattr3 attributes; };
//   MKDIR3resok / MKDIR3resfail: as CREATE3.
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader } from '../rpc/xdr.js';
import type { NfsFileService } from '../fs/types.js';
import type { Sattr3 } from './types.js';
import { callerOf } from './caller.js';
import { encodeCreate3Res } from './create.js';
import { decodeDirOpArgs, decodeSattr3 } from './xdr.js';

export interface Mkdir3Args {
  where: { dir: Buffer; name: Buffer };
  attributes: Sattr3;
}

export function decodeMkdir3Args(r: XdrReader): Mkdir3Args {
  const where = decodeDirOpArgs(r);
  const attributes = decodeSattr3(r);
  return { where, attributes };
}

export function mkdir(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { where, attributes } = decodeMkdir3Args(call.args);
    encodeCreate3Res(reply, await fs.mkdir(callerOf(call), where.dir, where.name, attributes));
  };
}
