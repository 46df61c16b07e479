// RFC 1813 section 3.3.1: GETATTR3res NFSPROC3_GETATTR(GETATTR3args) = 1.
//   struct GETATTR3args { nfs_fh3 object; };
//   struct GETATTR3resok { fattr3 obj_attributes; };
//   union GETATTR3res switch (nfsstat3 status) { case NFS3_OK: GETATTR3resok resok; default: void; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { AttrResult, NfsFileService } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { FATTR3_SIZE, decodeNfsFh, encodeFattr3 } from './xdr.js';

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
    if (!fs.getattrInPlace) {
      encodeGetattr3Res(reply, await fs.getattr(callerOf(call), args.object));
      return;
    }
    // The layer writes the fattr3 after the status word, which is ours: a failure answered while
    // its worker still runs (JUKEBOX at a backend's deadline) ends before anything it writes.
    const start = reply.ensure(4 + FATTR3_SIZE);
    const buffer = reply.buffer;
    const { status } = await fs.getattrInPlace(callerOf(call), args.object, { buffer, offset: start + 4 });
    if (reply.buffer !== buffer || reply.offset !== start) throw new Error('GETATTR: reply buffer changed while encoding in place');
    buffer.writeUInt32BE(status, start);
    reply.offset = start + 4 + (status === Nfs3Status.NFS3_OK ? FATTR3_SIZE : 0);
  };
}
