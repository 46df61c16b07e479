import t from 'tap';
import { readdir } from '../../src/nfs3/readdir.js';
import { readdirplus } from '../../src/nfs3/readdirplus.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import type { DirEntry, DirEntryPlus } from '../../src/fs/types.js';
import { ATTR, DIR_ATTR, FH, FH2, Bytes, fakeFs, makeCall, newReply, postOpAttrBytes } from './fixtures/helpers.js';

const VERF = Buffer.from('cookieV!');
const name = (i: number) => Buffer.from(`f${String(i).padStart(7, '0')}`); // 8 bytes: no padding

function entries(n: number): DirEntry[] {
  return Array.from({ length: n }, (_, i) => ({ fileid: 1000 + i, name: name(i), cookie: BigInt(i + 1) * 7n }));
}

const readdirArgs = (count: number) => new Bytes().opaque(FH).u64(3).fixed(VERF).u32(count).get();

t.test('READDIR: 1000 entries, count 4096 -> only what fits, eof false, cookies as given', async (t) => {
  const { fs, calls } = fakeFs({
    readdir: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: entries(1000), eof: true }),
  });
  const reply = newReply();
  await readdir(fs)(makeCall(readdirArgs(4096)), reply);
  t.same(calls[0]!.args, [FH, 3n, VERF, 4096]);
  // header 4 + 88 + 8 = 100; entry 4 + 8 + 12 + 8 = 32; tail 8: (4096 - 108) / 32 -> 124 entries.
  const want = new Bytes().u32(0).raw(postOpAttrBytes(DIR_ATTR)).fixed(VERF);
  for (const e of entries(124)) want.u32(1).u64(e.fileid).opaque(e.name).u64(e.cookie);
  want.u32(0).u32(0);
  t.same(reply.result(), want.get());
  t.equal(reply.result().length, 4076);
  t.ok(reply.result().length <= 4096);
});

t.test('READDIR: everything fits -> eof as the layer says', async (t) => {
  const { fs } = fakeFs({
    readdir: () => ({ status: 0, dirAttr: null, cookieVerifier: VERF, entries: entries(2), eof: true }),
  });
  const reply = newReply();
  await readdir(fs)(makeCall(readdirArgs(4096)), reply);
  const want = new Bytes().u32(0, 0).fixed(VERF);
  for (const e of entries(2)) want.u32(1).u64(e.fileid).opaque(e.name).u64(e.cookie);
  want.u32(0, 1);
  t.same(reply.result(), want.get());
});

t.test('READDIR: empty directory', async (t) => {
  const { fs } = fakeFs({
    readdir: () => ({ status: 0, dirAttr: null, cookieVerifier: VERF, entries: [], eof: true }),
  });
  const reply = newReply();
  await readdir(fs)(makeCall(readdirArgs(512)), reply);
  t.same(reply.result(), new Bytes().u32(0, 0).fixed(VERF).u32(0, 1).get());
});

t.test('READDIR: first entry does not fit -> NFS3ERR_TOOSMALL with dir attributes', async (t) => {
  const { fs } = fakeFs({
    readdir: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: entries(3), eof: true }),
  });
  const reply = newReply();
  await readdir(fs)(makeCall(readdirArgs(100 + 32 + 8 - 1)), reply);
  t.same(reply.result(), new Bytes().u32(Nfs3Status.NFS3ERR_TOOSMALL).raw(postOpAttrBytes(DIR_ATTR)).get());

  const exact = newReply();
  await readdir(fs)(makeCall(readdirArgs(100 + 32 + 8)), exact);
  t.equal(exact.result().length, 140);
  t.equal(exact.result().readUInt32BE(0), 0);
});

t.test('READDIR: failure -> status and dir attributes', async (t) => {
  const { fs } = fakeFs({
    readdir: () => ({ status: Nfs3Status.NFS3ERR_BAD_COOKIE, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: [], eof: false }),
  });
  const reply = newReply();
  await readdir(fs)(makeCall(readdirArgs(4096)), reply);
  t.same(reply.result(), new Bytes().u32(10003).raw(postOpAttrBytes(DIR_ATTR)).get());
});

function plusEntries(n: number): DirEntryPlus[] {
  return entries(n).map((e) => ({ ...e, attr: ATTR, handle: FH }));
}

const plusArgs = (dircount: number, maxcount: number) =>
  new Bytes().opaque(FH2).u64(0).fixed(VERF).u32(dircount).u32(maxcount).get();

function plusWant(list: DirEntryPlus[], eof: boolean): Buffer {
  const want = new Bytes().u32(0).raw(postOpAttrBytes(DIR_ATTR)).fixed(VERF);
  for (const e of list) {
    want.u32(1).u64(e.fileid).opaque(e.name).u64(e.cookie).raw(postOpAttrBytes(e.attr));
    if (e.handle) want.u32(1).opaque(e.handle);
    else want.u32(0);
  }
  return want.u32(0).u32(eof ? 1 : 0).get();
}

t.test('READDIRPLUS: maxcount bounds the whole reply', async (t) => {
  const { fs, calls } = fakeFs({
    readdirplus: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: plusEntries(50), eof: true }),
  });
  const reply = newReply();
  // entry: 4 + 8 + 12 + 8 + 88 + 4 + 24 = 148; (1000 - 108) / 148 -> 6 entries. dircount 0: no limit.
  await readdirplus(fs)(makeCall(plusArgs(0, 1000)), reply);
  t.same(calls[0]!.args, [FH2, 0n, VERF, 0, 1000]);
  t.same(reply.result(), plusWant(plusEntries(6), false));
  t.ok(reply.result().length <= 1000);
});

t.test('READDIRPLUS: dircount bounds fileid + name + cookie', async (t) => {
  const { fs } = fakeFs({
    readdirplus: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: plusEntries(50), eof: true }),
  });
  const reply = newReply();
  // 28 dircount bytes per entry: 3 entries fit in 100 (84), a fourth would make 112.
  await readdirplus(fs)(makeCall(plusArgs(100, 1000)), reply);
  t.same(reply.result(), plusWant(plusEntries(3), false));

  const one = newReply();
  // dircount smaller than one entry still returns one entry: only maxcount makes a reply TOOSMALL.
  await readdirplus(fs)(makeCall(plusArgs(10, 1000)), one);
  t.same(one.result(), plusWant(plusEntries(1), false));
});

t.test('READDIRPLUS: entries without attributes or handle; all fit -> eof', async (t) => {
  const list: DirEntryPlus[] = [
    { fileid: 1, name: Buffer.from('.'), cookie: 1n, attr: null, handle: null },
    { fileid: 2, name: Buffer.from('abcde'), cookie: 2n, attr: ATTR, handle: null },
  ];
  const { fs } = fakeFs({
    readdirplus: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: list, eof: true }),
  });
  const reply = newReply();
  await readdirplus(fs)(makeCall(plusArgs(4096, 32768)), reply);
  t.same(reply.result(), plusWant(list, true));
});

t.test('READDIRPLUS: TOOSMALL when maxcount cannot hold one entry', async (t) => {
  const { fs } = fakeFs({
    readdirplus: () => ({ status: 0, dirAttr: DIR_ATTR, cookieVerifier: VERF, entries: plusEntries(2), eof: true }),
  });
  const reply = newReply();
  await readdirplus(fs)(makeCall(plusArgs(4096, 100 + 148 + 8 - 1)), reply);
  t.same(reply.result(), new Bytes().u32(10005).raw(postOpAttrBytes(DIR_ATTR)).get());
  const fits = newReply();
  await readdirplus(fs)(makeCall(plusArgs(4096, 100 + 148 + 8)), fits);
  t.same(fits.result(), plusWant(plusEntries(1), false));
});
