// RFC 1813 section 3.3.6: READ3res NFSPROC3_READ(READ3args) = 6.
//   struct READ3args { nfs_fh3 file; offset3 offset; count3 count; };
//   struct READ3resok { post_op_attr file_attributes; count3 count; bool eof; opaque data<>; };
//   struct READ3resfail { post_op_attr file_attributes; };
//
// The data is read in place into the reply buffer: room for the largest possible reply is made
// before the read, the fs layer preads into it, and the header is filled in afterwards.
import type { ProcedureHandler } from '../rpc/types.js';
import { xdrPad, type XdrReader, type XdrWriter } from '../rpc/xdr.js';
import type { NfsFileService, ReadResult } from '../fs/types.js';
import { Nfs3Status } from './types.js';
import { callerOf } from './caller.js';
import { pipeAvailable } from '../rpc/pipes.js';
import { FATTR3_SIZE, NFS3_MAX_DATA, POST_OP_ATTR_SIZE_PRESENT, decodeNfsFh, encodePostOpAttr } from './xdr.js';

export interface Read3Args {
  file: Buffer;
  offset: bigint;
  count: number;
}

export function decodeRead3Args(r: XdrReader): Read3Args {
  const file = decodeNfsFh(r);
  const offset = r.uint64();
  const count = r.uint32();
  return { file, offset, count };
}

/** status, post_op_attr with attributes, count, eof, data length: the header before the data. */
const READ_HEADER_MAX = 4 + POST_OP_ATTR_SIZE_PRESENT + 4 + 4 + 4;

/** READ3resfail, or READ3resok for a reply whose data was not read in place (tests, small replies). */
export function encodeRead3ResFail(w: XdrWriter, res: ReadResult): void {
  w.uint32(res.status);
  encodePostOpAttr(w, res.attr);
}

/** READ3resok up to its data: status, post_op_attr, count, eof and the data's length (the data follows). */
function encodeRead3ResOkHeader(w: XdrWriter, res: ReadResult): void {
  w.uint32(Nfs3Status.NFS3_OK);
  encodePostOpAttr(w, res.attr);
  w.uint32(res.count);
  w.bool(res.eof);
  w.uint32(res.count);
}

/** From this size on, a READ on a socket that takes splices sends its data from a pipe (no copy). */
export const SPLICE_READ_MIN = 64 * 1024;

function checkCount(read: number, count: number): void {
  if (!Number.isInteger(read) || read < 0 || read > count) throw new Error(`READ: fs layer read ${read} bytes of ${count}`);
}

export function read(fs: NfsFileService): ProcedureHandler {
  return async (call, reply) => {
    const args = decodeRead3Args(call.args);
    // A client may ask for more than rtmax; RFC 1813 section 3.3.6 lets the server return less.
    const count = Math.min(args.count, NFS3_MAX_DATA);
    const spliced =
      count >= SPLICE_READ_MIN && call.connection.spliceFd !== undefined && fs.readToPipe && pipeAvailable()
        ? await fs.readToPipe(callerOf(call), args.file, args.offset, count)
        : undefined;
    if (spliced !== undefined && !spliced.copyInstead) {
      if (spliced.status !== Nfs3Status.NFS3_OK || spliced.pipeFd === undefined) {
        encodeRead3ResFail(reply, spliced);
        return;
      }
      // Owned by the reply from here (the dispatcher closes it if anything below throws). The
      // header goes up to the data's length; the data follows from the pipe, then its padding.
      reply.tail = { pipeFd: spliced.pipeFd, count: spliced.count, pad: xdrPad(spliced.count) };
      encodeRead3ResOkHeader(reply, spliced);
      return;
    }
    const start = reply.ensure(READ_HEADER_MAX + count + 3);
    const buffer = reply.buffer;
    const dataAt = start + READ_HEADER_MAX;
    let headerEnd: number;
    let readCount: number;
    if (fs.readInPlace) {
      // The layer writes the data and the fattr3 of the post_op_attr (after status and
      // attributes_follow); a failure answered while its worker still runs (JUKEBOX) ends before both.
      const res = await fs.readInPlace(callerOf(call), args.file, args.offset, count, { buffer, offset: dataAt, attrOffset: start + 8 });
      if (reply.buffer !== buffer || reply.offset !== start) throw new Error('READ: reply buffer changed while reading in place');
      buffer.writeUInt32BE(res.status, start);
      buffer.writeUInt32BE(res.attr ? 1 : 0, start + 4);
      reply.offset = start + 8 + (res.attr ? FATTR3_SIZE : 0);
      if (res.status !== Nfs3Status.NFS3_OK) return;
      checkCount(res.count, count);
      reply.uint32(res.count);
      reply.bool(res.eof);
      reply.uint32(res.count);
      headerEnd = reply.offset;
      readCount = res.count;
    } else {
      const res = await fs.read(callerOf(call), args.file, args.offset, count, { buffer, offset: dataAt });
      if (reply.buffer !== buffer || reply.offset !== start) {
        throw new Error('READ: reply buffer changed while reading in place');
      }
      if (res.status !== Nfs3Status.NFS3_OK) {
        encodeRead3ResFail(reply, res);
        return;
      }
      checkCount(res.count, count);
      // These writes stay within the room ensured above, so the buffer is not reallocated.
      encodeRead3ResOkHeader(reply, res);
      headerEnd = reply.offset;
      readCount = res.count;
    }
    if (headerEnd !== dataAt) {
      // No attributes: the header is 84 bytes shorter than planned; slide the data down.
      buffer.copyWithin(headerEnd, dataAt, dataAt + readCount);
    }
    const pad = xdrPad(readCount);
    buffer.fill(0, headerEnd + readCount, headerEnd + readCount + pad);
    reply.offset = headerEnd + readCount + pad;
  };
}
