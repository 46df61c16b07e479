// RFC 1813 section 3.3.15: LINK3res NFSPROC3_LINK(LINK3args) = 15.
//   struct LINK3args { nfs_fh3 file; diropargs3 link; };
//   struct LINK3resok { post_op_attr file_attributes; wcc_data linkdir_wcc; };
//   struct LINK3resfail { post_op_attr file_attributes; wcc_data linkdir_wcc; };
import type { ProcedureHandler } from '../rpc/types.js';
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import type { LinkResult, NfsFileService } from '../fs/types.js';
import { callerOf } from './caller.js';
import { decodeDirOpArgs, decodeNfsFh, encodePostOpAttr, encodeWccData } from './xdr.js';

export interface Link3Args {
  file: Buffer;
  link: { dir: Buffer; name: Buffer };
}

export function decodeLink3Args(r: XdrReader): Link3Args {
  const file = decodeNfsFh(r);
  const link = decodeDirOpArgs(r);
  return { file, link };
}

export function encodeLink3Res(w: XdrWriter, res: LinkResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.fileAttr);
  encodeWccData(w, res.linkDirWcc);
}

export function link(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeLink3Args(call.args);
    encodeLink3Res(reply, await fs.link(callerOf(call), args.file, args.link.dir, args.link.name));
  };
}
