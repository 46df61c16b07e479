// RFC 1813 section 3.3.2: SETATTR3res NFSPROC3_SETATTR(SETATTR3args) = 2.
//   union sattrguard3 switch (bool check) { case TRUE: nfstime3 obj_ctime; case FALSE: void; };
//   struct SETATTR3args { nfs_fh3 object; sattr3 new_attributes; sattrguard3 guard; };
//   struct SETATTR3resok { wcc_data obj_wcc; };  struct SETATTR3resfail { wcc_data obj_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, WccResult } from '../fs/types.js';
import type { NfsTime, Sattr3 } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, decodeSattr3, decodeSattrGuard3, encodeWccData } from './xdr.js';

export interface Setattr3Args {
  object: Buffer;
  newAttributes: Sattr3;
  guard: NfsTime | null;
}

export function decodeSetattr3Args(r: XdrReader): Setattr3Args {
  const object = decodeNfsFh(r);
  const newAttributes = decodeSattr3(r);
  const guard = decodeSattrGuard3(r);
  return { object, newAttributes, guard };
}

/** resok and resfail are the same shape: obj_wcc. */
export function encodeSetattr3Res(w: XdrWriter, res: WccResult): void {
  w.uint32(res.status);
  encodeWccData(w, res.wcc);
}

export function setattr(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeSetattr3Args(call.args);
    encodeSetattr3Res(reply, await fs.setattr(callerOf(call), args.object, args.newAttributes, args.guard));
  };
}
