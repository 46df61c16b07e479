// RFC 1813 section 3.3.14: RENAME3res NFSPROC3_RENAME(RENAME3args) = 14.
//   struct RENAME3args { diropargs3 from; diropargs3 to; };
//   struct RENAME3resok { wcc_data fromdir_wcc; wcc_data todir_wcc; };
//   struct RENAME3resfail { wcc_data fromdir_wcc; wcc_data todir_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, RenameResult } from '../fs/types.js';
import { callerOf } from './caller.js';
import { decodeDirOpArgs, encodeWccData } from './xdr.js';

export interface Rename3Args {
  from: { dir: Buffer; name: Buffer };
  to: { dir: Buffer; name: Buffer };
}

export function decodeRename3Args(r: XdrReader): Rename3Args {
  const from = decodeDirOpArgs(r);
  const to = decodeDirOpArgs(r);
  return { from, to };
}

export function encodeRename3Res(w: XdrWriter, res: RenameResult): void {
  w.uint32(res.status);
  encodeWccData(w, res.fromDirWcc);
  encodeWccData(w, res.toDirWcc);
}

export function rename(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { from, to } = decodeRename3Args(call.args);
    encodeRename3Res(reply, await fs.rename(callerOf(call), from.dir, from.name, to.dir, to.name));
  };
}
