// RFC 1813 section 3.3.10: SYMLINK3res NFSPROC3_SYMLINK(SYMLINK3args) = 10.
//   struct symlinkdata3 { sattr3 symlink_attributes; nfspath3 symlink_data; };
//   struct SYMLINK3args { diropargs3 where; symlinkdata3 symlink; };
//   SYMLINK3resok / SYMLINK3resfail: as CREATE3.
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader } from '../rpc/xdr.js';
import type { NfsFileService } from '../fs/types.js';
import type { Sattr3 } from './types.js';
import { callerOf } from './caller.js';
import { encodeCreate3Res } from './create.js';
import { decodeDirOpArgs, decodeNfsPath, decodeSattr3 } from './xdr.js';

export interface Symlink3Args {
  where: { dir: Buffer; name: Buffer };
  symlinkAttributes: Sattr3;
  /** The link's target, raw bytes: stored, never followed by the server. */
  symlinkData: Buffer;
}

export function decodeSymlink3Args(r: XdrReader): Symlink3Args {
  const where = decodeDirOpArgs(r);
  const symlinkAttributes = decodeSattr3(r);
  const symlinkData = decodeNfsPath(r);
  return { where, symlinkAttributes, symlinkData };
}

export function symlink(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const a = decodeSymlink3Args(call.args);
    encodeCreate3Res(
      reply,
      await fs.symlink(callerOf(call), a.where.dir, a.where.name, a.symlinkAttributes, a.symlinkData),
    );
  };
}
