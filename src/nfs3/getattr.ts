// RFC 1813 section 3.3.1: GETATTR3res NFSPROC3_GETATTR(GETATTR3args) = 1.
//   struct GETATTR3args { nfs_fh3 object; };
//   struct GETATTR3resok { fattr3 obj_attributes; };
//   union GETATTR3res switch (nfsstat3 status) { case NFS3_OK: GETATTR3resok resok; default: void; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { AttrResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { decodeNfsFh, encodeFattr3 } from './xdr.js';

export interface Getattr3Args {
  object: Buffer;
}

export function decodeGetattr3Args(r: XdrReader): Getattr3Args {
  return { object: decodeNfsFh(r) };
}

export function encodeGetattr3Res(w: XdrWriter, res: AttrResult): void {
  w.uint32(res.status);
  if (res.status !== Nfs3Status.NFS3_OK) return;
  if (res.attr === null) throw new Error('GETATTR: NFS3_OK without attributes');
  encodeFattr3(w, res.attr);
}

export function getattr(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeGetattr3Args(call.args);
    encodeGetattr3Res(reply, await fs.getattr(callerOf(call), args.object));
  };
}
