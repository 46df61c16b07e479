// Large READs leave through a pipe spliced into the socket (native-bridges/src/splice.cc): the
// bytes on the wire must be exactly those of the file, framed as one RPC record with XDR padding,
// in order with the small replies around them, and nothing may leak when a client goes away
// in the middle. Checked with our own client (exact bytes, eof, framing) and libnfs's nfs-cp.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nfsUrl, run, startDaemon } from '../helpers/daemon.js';
import { Args, NFS_PROG, RpcClient } from '../helpers/nfs-client.js';

const daemon = await startDaemon({ shares: [{ id: 'data' }] });
t.teardown(() => daemon.stop());
const dir = path.join(daemon.exportsDir, 'data');
// sizes around the splice threshold (64 KiB), the padding (not a multiple of 4) and 1 MiB
const big = randomBytes(3 * 1024 * 1024 + 3);
writeFileSync(path.join(dir, 'big.bin'), big);
const fdCount = (): number => readdirSync(`/proc/${daemon.pid}/fd`).length;

async function readAt(c: RpcClient, fh: Buffer, offset: number, count: number) {
  const reply = await c.call(NFS_PROG, 3, 6, new Args().opaque(fh).u64(BigInt(offset)).u32(count).bytes());
  const status = reply.u32();
  if (status !== 0) return { status };
  reply.postOpAttr();
  const n = reply.u32();
  const eof = reply.u32() === 1;
  const data = Buffer.from(reply.opaque());
  // the record ends right after the data's padding
  return { status, n, eof, data, trailing: reply.buffer.length - reply.offset };
}

t.test('exact bytes, counts, eof and padding for reads across the threshold', async (t) => {
  const c = await RpcClient.connect(daemon.port);
  t.teardown(() => c.close());
  const root = (await c.mount('/data')).handle!;
  const fh = (await c.lookup(root, 'big.bin')).handle!;
  const cases: [number, number][] = [
    [0, 1024 * 1024], [1, 1024 * 1024], [12345, 65536], [7, 65537], [100, 65535], [3, 4096],
    [big.length - 70000, 1024 * 1024], // short at the end: eof, odd length
    [big.length - 1, 65536], [big.length, 65536], [big.length + 10, 1024 * 1024],
  ];
  for (const [offset, count] of cases) {
    const r = await readAt(c, fh, offset, count);
    const full = big.subarray(Math.min(offset, big.length), Math.min(offset + count, big.length));
    t.equal(r.status, 0, `READ ${offset}+${count}`);
    // A 1 MiB read not aligned to a page may come back short by less than a page (a 1 MiB pipe
    // holds 256 whole pages; RFC 1813 section 3.3.6 allows short reads). Aligned ones never do.
    const short = full.length - r.n!;
    t.ok(short === 0 || (offset % 4096 !== 0 && count === 1024 * 1024 && short < 4096), `count ${r.n} of ${full.length}`);
    t.ok(r.data!.equals(full.subarray(0, r.n)), 'the file\'s bytes');
    t.equal(r.eof, offset + r.n! >= big.length, 'eof exactly when the end was reached');
    t.equal(r.trailing, 0, 'nothing after the padding');
  }
});

t.test('many large and small replies in flight on one connection stay framed and in their own records', async (t) => {
  const c = await RpcClient.connect(daemon.port);
  t.teardown(() => c.close());
  const root = (await c.mount('/data')).handle!;
  const fh = (await c.lookup(root, 'big.bin')).handle!;
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < 96; i++) {
    if (i % 3 === 2) {
      jobs.push(c.getattr(fh).then((g) => void t.equal(g.status, 0)));
      continue;
    }
    const offset = (i * 977_131) % big.length;
    const count = i % 2 === 0 ? 1024 * 1024 : 70_001;
    jobs.push(
      readAt(c, fh, offset, count).then((r) => {
        const want = big.subarray(offset, Math.min(offset + count, big.length));
        if (!r.data || r.data.length < want.length - 4095 || !r.data.equals(want.subarray(0, r.data.length))) t.fail(`read ${i} at ${offset}: wrong bytes`);
      }),
    );
  }
  await Promise.all(jobs);
  t.pass('all 96 answered with the right bytes');
});

t.test('libnfs nfs-cp copies a 3 MiB file byte for byte', async (t) => {
  const out = path.join(daemon.dir, 'copy.bin');
  const cp = await run('nfs-cp', [nfsUrl(daemon.port, 'data', 'big.bin'), out], { timeoutMs: 60_000 });
  t.equal(cp.code, 0, cp.stderr);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  t.equal(sha(readFileSync(out)), sha(big));
});

t.test('a client that asks for many large reads and leaves without reading leaks no pipe', async (t) => {
  const c = await RpcClient.connect(daemon.port);
  const root = (await c.mount('/data')).handle!;
  const fh = (await c.lookup(root, 'big.bin')).handle!;
  c.close();
  await sleep(200);
  const before = fdCount();
  for (let round = 0; round < 3; round++) {
    const socket = net.connect({ port: daemon.port, host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause(); // never reads: the replies back up into the socket
    for (let i = 0; i < 40; i++) {
      const body = new Args()
        .u32(9000 + i).u32(0).u32(2).u32(NFS_PROG).u32(3).u32(6)
        .u32(1).opaque(new Args().u32(0).opaque('t').u32(0).u32(0).u32(0).bytes()) // AUTH_SYS root
        .u32(0).u32(0)
        .opaque(fh).u64(BigInt(i * 65536)).u32(1024 * 1024)
        .bytes();
      const mark = Buffer.alloc(4);
      mark.writeUInt32BE((0x80000000 | body.length) >>> 0);
      socket.write(Buffer.concat([mark, body]));
    }
    // rounds 0 and 1: replies back up, then the client leaves; round 2: it leaves at once, while
    // the pipes are still being filled (replies finished after the close)
    if (round < 2) await sleep(500);
    socket.destroy();
  }
  // the daemon notices the resets, cancels the sends and closes their pipes
  let after = fdCount();
  for (let i = 0; i < 50 && after > before; i++) {
    await sleep(100);
    after = fdCount();
  }
  t.ok(after <= before, `descriptors ${before} before, ${after} after`);
  const again = await RpcClient.connect(daemon.port);
  t.teardown(() => again.close());
  const r = await readAt(again, fh, 0, 1024 * 1024);
  t.ok(r.data?.equals(big.subarray(0, 1024 * 1024)), 'and serves the next client');
});
