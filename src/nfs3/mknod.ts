// RFC 1813 section 3.3.11: MKNOD3res NFSPROC3_MKNOD(MKNOD3args) = 11.
//   struct devicedata3 { sattr3 dev_attributes; specdata3 spec; };
//   union mknoddata3 switch (ftype3 type) {
//     case NF3CHR: case NF3BLK: devicedata3 device;
//     case NF3SOCK: case NF3FIFO: sattr3 pipe_attributes;
//     default: void; };
//   struct MKNOD3args { diropargs3 where; mknoddata3 what; };
//   MKNOD3resok / MKNOD3resfail: as CREATE3.
// NF3REG, NF3DIR and NF3LNK decode (default: void) and the fs layer answers NFS3ERR_BADTYPE; a
// value that is no ftype3 at all is not valid XDR for the enum, hence garbage.
import type { ProcedureHandler } from '../rpc/types.js';
import { XdrError, type XdrReader } from '../rpc/xdr.js';
import type { NfsFileService } from '../fs/types.js';
import { Ftype3, type MknodData } from './types.js';
import { callerOf } from './caller.js';
import { encodeCreate3Res } from './create.js';
import { decodeDirOpArgs, decodeSattr3 } from './xdr.js';

export interface Mknod3Args {
  where: { dir: Buffer; name: Buffer };
  what: MknodData;
}

export function decodeMknodData3(r: XdrReader): MknodData {
  const type = r.uint32();
  switch (type) {
    case Ftype3.NF3CHR:
    case Ftype3.NF3BLK: {
      const attributes = decodeSattr3(r);
      const specdata1 = r.uint32();
      const specdata2 = r.uint32();
      return { type, attributes, spec: { specdata1, specdata2 } };
    }
    case Ftype3.NF3SOCK:
    case Ftype3.NF3FIFO:
      return { type, attributes: decodeSattr3(r) };
    case Ftype3.NF3REG:
    case Ftype3.NF3DIR:
    case Ftype3.NF3LNK:
      return { type };
    default:
      throw new XdrError('XDR_BAD_VALUE', `ftype3 ${type}`);
  }
}

export function decodeMknod3Args(r: XdrReader): Mknod3Args {
  const where = decodeDirOpArgs(r);
  const what = decodeMknodData3(r);
  return { where, what };
}

export function mknod(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const { where, what } = decodeMknod3Args(call.args);
    encodeCreate3Res(reply, await fs.mknod(callerOf(call), where.dir, where.name, what));
  };
}
