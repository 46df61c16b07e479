// READDIRPLUS replies as the program handler writes them, parsed and compared page by page: the
// in-place encoding tests (test/fs/readdirplus-inplace.test.ts) and the listing cache's
// (test/fs/readdirplus-cache.test.ts) hold two services to the same bytes with these.
import type { Test } from 'tap';
import type { NfsFileService } from '../../src/fs/types.js';
import type { Peer } from '../../src/rpc/types.js';
import { XdrReader, XdrWriter } from '../../src/rpc/xdr.js';
import { readdirplus } from '../../src/nfs3/readdirplus.js';
import { Bytes, makeCall } from '../nfs3/fixtures/helpers.js';

/** One READDIRPLUS reply (from the status word), through the program handler, behind a 28-byte RPC header. */
export async function callReaddirplus(
  fs: NfsFileService, peer: Peer, fh: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number,
  authSys?: { uid: number; gid: number; gids: number[] },
): Promise<Buffer> {
  const args = new Bytes().opaque(fh).u64(cookie).fixed(verf).u32(dircount).u32(maxcount).get();
  const reply = new XdrWriter(64);
  for (let i = 0; i < 7; i++) reply.uint32(0xdeadbeef);
  const call = makeCall(args, { peer });
  await readdirplus(fs)(authSys ? { ...call, authSys: { stamp: 1, machineName: 'guest', ...authSys } } : call, reply);
  return Buffer.from(reply.result().subarray(28));
}

export interface Page {
  status: number;
  names: Buffer[];
  lastCookie: bigint | null;
  eof: boolean;
  verf: Buffer;
  withAttr: Set<string>;
  withHandle: Set<string>;
  /** Each entry's fattr3 (84 bytes) by name (latin1). */
  attrs: Map<string, Buffer>;
}

export function parsePage(t: Test, reply: Buffer): Page {
  const r = new XdrReader(reply);
  const status = r.uint32();
  if (r.bool()) r.opaqueFixed(84);
  const page: Page = { status, names: [], lastCookie: null, eof: false, verf: Buffer.alloc(8), withAttr: new Set(), withHandle: new Set(), attrs: new Map() };
  if (status !== 0) return page;
  page.verf = Buffer.from(r.opaqueFixed(8));
  while (r.bool()) {
    r.uint64();
    const name = Buffer.from(r.opaque(255));
    page.lastCookie = r.uint64();
    if (r.bool()) {
      page.attrs.set(name.toString('latin1'), Buffer.from(r.opaqueFixed(84)));
      page.withAttr.add(name.toString('latin1'));
    }
    if (r.bool()) {
      r.opaque(64);
      page.withHandle.add(name.toString('latin1'));
    }
    page.names.push(name);
  }
  page.eof = r.bool();
  t.equal(r.remaining, 0, 'nothing after eof');
  return page;
}

/** Where two replies part, for a failure message. */
export function difference(a: Buffer, b: Buffer): string {
  let at = 0;
  while (at < a.length && at < b.length && a[at] === b[at]) at++;
  const around = (x: Buffer) => x.subarray(at, at + 16).toString('hex');
  return `${a.length} bytes against ${b.length}; from byte ${at}: ${around(a)} / ${around(b)}`;
}

export const allNames = (pages: Page[]): string[] => pages.flatMap((p) => p.names.map((n) => n.toString('latin1')));

/**
 * Lists `fh` to the end through `expected` and `tested` alike with these budgets, comparing every
 * reply; returns the pages. Stops early at a reply that is not NFS3_OK (compared too).
 */
export async function compareListing(
  t: Test, expected: NfsFileService, tested: NfsFileService, peer: Peer, fh: Buffer, dircount: number, maxcount: number, what: string,
  authSys?: { uid: number; gid: number; gids: number[] },
): Promise<Page[]> {
  const pages: Page[] = [];
  let cookie = 0n;
  let verf = Buffer.alloc(8);
  for (let n = 0; n < 10_000; n++) {
    const want = await callReaddirplus(expected, peer, fh, cookie, verf, dircount, maxcount, authSys);
    const got = await callReaddirplus(tested, peer, fh, cookie, verf, dircount, maxcount, authSys);
    if (!got.equals(want)) {
      t.fail(`${what}: page ${n} (cookie ${cookie}) differs: ${difference(got, want)}`);
      return pages;
    }
    t.ok(got.length <= Math.max(maxcount, 92), `${what}: page ${n} within maxcount`);
    const page = parsePage(t, got);
    pages.push(page);
    if (page.status !== 0 || page.eof) return pages;
    if (page.lastCookie === null) {
      t.fail(`${what}: page ${n} has no entries and no eof`);
      return pages;
    }
    cookie = page.lastCookie;
    verf = page.verf;
  }
  t.fail(`${what}: no eof`);
  return pages;
}
