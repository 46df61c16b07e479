// Protocol properties that stock clients hide, checked with our own RPC client against a gateway
// running in-process: READDIR cookies over a 100,000-entry directory and while it changes, handles
// that survive a restart, one port for every program, and guests confined to their shares.
import t from 'tap';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/server.js';
import { Args, MOUNT_PROG, NFS_PROG, RpcClient, RpcError } from '../helpers/nfs-client.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-protocol-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exportsDir = path.join(dir, 'exports');
mkdirSync(path.join(exportsDir, 'demo', 'big'), { recursive: true });
mkdirSync(path.join(exportsDir, 'demo', 'churn'), { recursive: true });
mkdirSync(path.join(exportsDir, 'other'), { recursive: true });

function config() {
  return parseConfig(
    {
      node_id: 'protocol-test',
      state_dir: path.join(dir, 'state'),
      listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
      backends: [{ id: 'local1', type: 'local', path: exportsDir }],
      grants: [
        { id: 'g1', share: 'demo', backend: 'local1', path: 'demo', guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none' },
        { id: 'g2', share: 'other', backend: 'local1', path: 'other', guest: { tcp: '192.0.2.7' }, access: 'rw', squash: 'none' },
      ],
    },
    'test',
  );
}

const logger = pino({ level: 'silent' });
let gateway: Gateway = await startGateway(config(), { logger });
t.teardown(() => gateway.stop());
const port = () => gateway.ports()[0]!;

async function client(): Promise<RpcClient> {
  const c = await RpcClient.connect(port());
  t.teardown(() => c.close());
  return c;
}

/** Reads a whole directory page by page; returns the names in order and how many pages it took. */
async function listAll(c: RpcClient, handle: Buffer, plus: boolean, count: number, between?: (page: number) => void) {
  const names: string[] = [];
  let cookie = 0n;
  let verifier = Buffer.alloc(8);
  let pages = 0;
  for (;;) {
    const page = await c.readdir(handle, cookie, verifier, count, plus);
    if (page.status !== 0) throw new Error(`READDIR status ${page.status} after ${pages} pages`);
    pages++;
    for (const entry of page.entries) names.push(entry.name);
    if (page.eof) break;
    if (page.entries.length === 0) throw new Error('a page with no entries and no eof');
    cookie = page.entries[page.entries.length - 1]!.cookie;
    verifier = page.verifier;
    between?.(pages);
  }
  return { names, pages };
}

t.test('READDIR and READDIRPLUS page through 100,000 entries exactly once', async (t) => {
  const bigDir = path.join(exportsDir, 'demo', 'big');
  for (let i = 0; i < 100_000; i++) closeSync(openSync(path.join(bigDir, `file-${i}`), 'w'));
  const c = await client();
  const root = (await c.mount('/demo')).handle!;
  const big = (await c.lookup(root, 'big')).handle!;

  const plain = await listAll(c, big, false, 32768);
  const expected = 100_000 + 2; // with "." and ".."
  t.equal(plain.names.length, expected, `READDIR: ${plain.names.length} names in ${plain.pages} pages`);
  t.equal(new Set(plain.names).size, expected, 'no duplicates');
  t.ok(plain.pages > 10, 'really paged');

  const plus = await listAll(c, big, true, 65536);
  t.equal(plus.names.length, expected, `READDIRPLUS: ${plus.names.length} names in ${plus.pages} pages`);
  t.equal(new Set(plus.names).size, expected, 'no duplicates');
});

t.test('cookies stay valid while entries are added and removed', async (t) => {
  const churn = path.join(exportsDir, 'demo', 'churn');
  for (let i = 0; i < 10_000; i++) writeFileSync(path.join(churn, `stay-${i}`), '');
  for (let i = 0; i < 2_000; i++) writeFileSync(path.join(churn, `gone-${i}`), '');
  const c = await client();
  const root = (await c.mount('/demo')).handle!;
  const handle = (await c.lookup(root, 'churn')).handle!;
  let changed = false;
  const listing = await listAll(c, handle, false, 8192, (page) => {
    if (page !== 3) return;
    // between pages: remove every "gone" file, add new ones
    for (let i = 0; i < 2_000; i++) unlinkSync(path.join(churn, `gone-${i}`));
    for (let i = 0; i < 2_000; i++) writeFileSync(path.join(churn, `new-${i}`), '');
    changed = true;
  });
  t.ok(changed, 'the directory changed mid-listing');
  t.equal(new Set(listing.names).size, listing.names.length, 'no entry listed twice');
  const stays = listing.names.filter((n) => n.startsWith('stay-'));
  t.equal(stays.length, 10_000, 'every entry present throughout was listed');
});

t.test('a cookie verifier the server did not issue is refused', async (t) => {
  const c = await client();
  const root = (await c.mount('/demo')).handle!;
  const big = (await c.lookup(root, 'big')).handle!;
  const first = await c.readdir(big, 0n, Buffer.alloc(8), 4096);
  const cookie = first.entries[first.entries.length - 1]!.cookie;
  const bad = await c.readdir(big, cookie, Buffer.from('deadbeefdeadbeef', 'hex'), 4096);
  t.equal(bad.status, 10003, 'NFS3ERR_BAD_COOKIE');
  const good = await c.readdir(big, cookie, first.verifier, 4096);
  t.equal(good.status, 0);
});

t.test('one port: PORTMAP GETPORT answers it for MOUNT and NFS', async (t) => {
  const c = await client();
  for (const prog of [MOUNT_PROG, NFS_PROG]) {
    const reply = await c.call(100000, 2, 3, new Args().u32(prog).u32(3).u32(6).u32(0).bytes());
    t.equal(reply.u32(), port(), `GETPORT ${prog}`);
  }
  const udp = await c.call(100000, 2, 3, new Args().u32(NFS_PROG).u32(3).u32(17).u32(0).bytes());
  t.equal(udp.u32(), 0, 'no UDP');
  await t.rejects(c.call(NFS_PROG, 4, 0, Buffer.alloc(0)), { code: 'RPC_NOT_SUCCESS', stat: 2 }, 'NFSv4: PROG_MISMATCH');
  await t.rejects(c.call(NFS_PROG, 3, 22, Buffer.alloc(0)), { code: 'RPC_NOT_SUCCESS', stat: 3 }, 'PROC_UNAVAIL');
  await t.rejects(c.call(NFS_PROG, 3, 1, Buffer.from([0, 0])), { code: 'RPC_NOT_SUCCESS', stat: 4 }, 'GARBAGE_ARGS');
  await t.rejects(c.call(100021, 4, 0, Buffer.alloc(0)), { code: 'RPC_NOT_SUCCESS', stat: 1 }, 'NLM: PROG_UNAVAIL');
  t.ok(RpcError);
});

t.test("another guest's share: not listed, not mountable, its handles refused", async (t) => {
  const c = await client();
  t.equal((await c.mount('/other')).status, 13, 'MNT3ERR_ACCES');
  const listed = (await c.exports()).map((e) => e.dir);
  t.same(listed, ['/demo'], 'EXPORT lists only this guest\'s share');
  // a handle of "other" minted for its own guest, presented over this connection
  const otherRoot = gateway.files.shares.get('other')!.handle;
  t.equal((await c.getattr(otherRoot)).status, 13, 'NFS3ERR_ACCES');
});

t.test('handles survive a gateway restart; the write verifier does not', async (t) => {
  writeFileSync(path.join(exportsDir, 'demo', 'keep.txt'), 'kept\n');
  let c = await client();
  const root = (await c.mount('/demo')).handle!;
  const file = (await c.lookup(root, 'keep.txt')).handle!;
  const writeArgs = new Args().opaque(file).u64(0n).u32(5).u32(0).opaque('kept\n').bytes();
  const before = await c.call(NFS_PROG, 3, 7, writeArgs);
  t.equal(before.u32(), 0);
  before.offset += before.u32() ? 24 : 0; // pre_op_attr
  before.postOpAttr();
  before.u32();
  before.u32();
  const verifier1 = Buffer.from(before.fixed(8));
  c.close();

  await gateway.stop();
  gateway = await startGateway(config(), { logger });
  c = await client();
  const attr = await c.getattr(file);
  t.equal(attr.status, 0, 'old handle works after restart');
  t.equal(attr.attr?.size, 5n);
  const again = await c.lookup(root, 'keep.txt');
  t.same(again.handle, file, 'the same object gets the same handle');
  const after = await c.call(NFS_PROG, 3, 7, writeArgs);
  t.equal(after.u32(), 0);
  after.offset += after.u32() ? 24 : 0;
  after.postOpAttr();
  after.u32();
  after.u32();
  t.not(Buffer.from(after.fixed(8)).toString('hex'), verifier1.toString('hex'), 'write verifier changed');
});

t.test('an oversized record closes only its own connection', async (t) => {
  const victim = await client();
  const bystander = await client();
  const root = (await bystander.mount('/demo')).handle!;
  const closed = new Promise<void>((resolve) => (victim as unknown as { socket: { once(e: string, f: () => void): void } }).socket.once('close', resolve));
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | (64 * 1024 * 1024)) >>> 0);
  (victim as unknown as { socket: { write(b: Buffer): void } }).socket.write(mark);
  await closed;
  t.pass('the oversized record closed its connection');
  t.equal((await bystander.getattr(root)).status, 0, 'another connection is unaffected');
});

t.test('a revoke applies to the next request; a guest left without grants is disconnected', async (t) => {
  const c = await client();
  const root = (await c.mount('/demo')).handle!;
  t.equal((await c.getattr(root)).status, 0);
  const grant = gateway.grants.get('g1')!;
  const closed = new Promise<void>((resolve) => (c as unknown as { socket: { once(e: string, f: () => void): void } }).socket.once('close', resolve));
  gateway.grants.revoke('g1');
  await closed;
  t.pass('the connection of a guest left without grants was closed');
  const again = await client();
  t.equal((await again.getattr(root)).status, 13, 'its handles get NFS3ERR_ACCES on the next request');
  t.equal((await again.mount('/demo')).status, 13, 'and MNT is refused');
  gateway.grants.upsert(grant);
  t.equal((await again.getattr(root)).status, 0, 'granted again, the same handle works');
});
