import t from 'tap';
import { XdrReader, XdrWriter } from '../../src/rpc/xdr.js';
import {
  decodeNfsFh,
  decodeFilename,
  decodeSattr3,
  decodeSetTime,
  encodeFattr3,
  encodePostOpAttr,
  encodePreOpAttr,
  encodeWccData,
  encodePostOpFh3,
  NFS3_FILENAME_DECODE_MAX,
} from '../../src/nfs3/xdr.js';
import { ATTR, Bytes, fattrBytes } from './fixtures/helpers.js';

t.test('fattr3 is 84 bytes in RFC order', async (t) => {
  const w = new XdrWriter(8);
  encodeFattr3(w, ATTR);
  t.equal(w.result().length, 84);
  t.same(w.result(), fattrBytes(ATTR));
});

t.test('post_op_attr, pre_op_attr, wcc_data, post_op_fh3', async (t) => {
  const w = new XdrWriter(8);
  encodePostOpAttr(w, null);
  encodePreOpAttr(w, { size: 7, mtime: { seconds: 1, nseconds: 2 }, ctime: { seconds: 3, nseconds: 4 } });
  encodeWccData(w, { before: null, after: ATTR });
  encodePostOpFh3(w, Buffer.from('abcde'));
  encodePostOpFh3(w, null);
  const want = new Bytes()
    .u32(0)
    .u32(1).u64(7).u32(1, 2, 3, 4)
    .u32(0).u32(1).raw(fattrBytes(ATTR))
    .u32(1).opaque('abcde')
    .u32(0)
    .get();
  t.same(w.result(), want);
});

t.test('nfs_fh3 longer than 64 bytes is garbage', async (t) => {
  t.same(decodeNfsFh(new XdrReader(new Bytes().opaque(Buffer.alloc(64, 1)).get())), Buffer.alloc(64, 1));
  t.throws(() => decodeNfsFh(new XdrReader(new Bytes().opaque(Buffer.alloc(65, 1)).get())), { code: 'XDR_TOO_LONG' });
});

t.test('filename3 passes bytes through up to the decode limit', async (t) => {
  const odd = Buffer.from([0x61, 0x2f, 0x00, 0xff]); // 'a/\0\xff': the fs layer judges it
  t.same(decodeFilename(new XdrReader(new Bytes().opaque(odd).get())), odd);
  const long = Buffer.alloc(300, 0x61); // over NAME_MAX: reaches the fs layer for NAMETOOLONG
  t.same(decodeFilename(new XdrReader(new Bytes().opaque(long).get())), long);
  const tooLong = Buffer.alloc(NFS3_FILENAME_DECODE_MAX + 1, 0x61);
  t.throws(() => decodeFilename(new XdrReader(new Bytes().opaque(tooLong).get())), { code: 'XDR_TOO_LONG' });
});

t.test('sattr3 decodes every arm', async (t) => {
  const all = new Bytes()
    .u32(1, 0o4755)
    .u32(1, 7)
    .u32(1, 8)
    .u32(1).u64(2n ** 40n)
    .u32(2, 11, 12)
    .u32(1)
    .get();
  t.same(decodeSattr3(new XdrReader(all)), {
    mode: 0o4755,
    uid: 7,
    gid: 8,
    size: 2 ** 40,
    atime: { how: 'client', time: { seconds: 11, nseconds: 12 } },
    mtime: { how: 'server' },
  });
  const none = new Bytes().u32(0, 0, 0, 0, 0, 0).get();
  t.same(decodeSattr3(new XdrReader(none)), { atime: { how: 'dont' }, mtime: { how: 'dont' } });
  t.throws(() => decodeSattr3(new XdrReader(new Bytes().u32(2).get())), { code: 'XDR_BAD_VALUE' });
  t.throws(() => decodeSetTime(new XdrReader(new Bytes().u32(3).get())), { code: 'XDR_BAD_VALUE' });
});
