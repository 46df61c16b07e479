// RFC 1813 section 3.3.3: LOOKUP3res NFSPROC3_LOOKUP(LOOKUP3args) = 3.
//   struct LOOKUP3args { diropargs3 what; };
//   struct LOOKUP3resok { nfs_fh3 object; post_op_attr obj_attributes; post_op_attr dir_attributes; };
//   struct LOOKUP3resfail { post_op_attr dir_attributes; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { LookupResult, NfsFileService } from '../fs/types.js';
import { NFS3_FHSIZE, Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { POST_OP_ATTR_SIZE_PRESENT, decodeDirOpArgs, encodeNfsFh, encodePostOpAttr } from './xdr.js';

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

/** LOOKUP3resfail at its longest: status and dir_attributes with attributes. */
const LOOKUP3RES_FAIL_MAX = 4 + POST_OP_ATTR_SIZE_PRESENT;
/** What follows LOOKUP3resok's status at its longest: the handle, then two post_op_attr with attributes. */
export const LOOKUP3RES_BODY_MAX = 4 + NFS3_FHSIZE + 2 * POST_OP_ATTR_SIZE_PRESENT;

export function lookup(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { what } = decodeLookup3Args(call.args);
    // The layer encodes past the longest failure reply, so one answered while its worker still
    // runs (JUKEBOX at a backend's deadline) is never written over; the bytes slide down after.
    const start = reply.ensure(LOOKUP3RES_FAIL_MAX + LOOKUP3RES_BODY_MAX);
    const buffer = reply.buffer;
    const bodyAt = start + LOOKUP3RES_FAIL_MAX;
    const inPlace = fs.lookupInPlace?.(callerOf(call), what.dir, what.name, { buffer, offset: bodyAt });
    if (!inPlace) {
      encodeLookup3Res(reply, await fs.lookup(callerOf(call), what.dir, what.name));
      return;
    }
    const { status, bytes } = await inPlace;
    if (reply.buffer !== buffer || reply.offset !== start) throw new Error('LOOKUP: reply buffer changed while encoding in place');
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > LOOKUP3RES_BODY_MAX) throw new Error(`LOOKUP: fs layer wrote ${bytes} bytes`);
    if (bytes === 0) {
      // nothing written by the layer (refused before its worker ran, or JUKEBOX): no attributes
      reply.uint32(status);
      encodePostOpAttr(reply, null);
      return;
    }
    buffer.writeUInt32BE(status, start);
    buffer.copyWithin(start + 4, bodyAt, bodyAt + bytes);
    reply.offset = start + 4 + bytes;
  };
}
