// The addon's worker pool (native-bridges/src/pool.cc): threads on demand up to MANILA_POOL_THREADS,
// idle ones exiting after MANILA_POOL_IDLE_MS down to four,
// and a thread that keeps the last caller's identity between operations must never let it reach
// another caller, the daemon, or a thread it creates. Each case runs in a child process so the
// pool size (the env var is read once per process) can be forced to one or two threads.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const addon = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native-bridges/build/Release/manila_native.node');
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'manila-pool-'));
fs.chmodSync(base, 0o755);
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

/** Runs `body` (CommonJS, `nb` is the addon, `c(...)` makes creds) in a child; its stdout JSON. */
function run(threads: number, body: string, env: Record<string, string> = {}): Record<string, unknown> {
  const script = `
    const nb = require(${JSON.stringify(addon)});
    const c = (...a) => Uint32Array.from(a);
    const b = (s) => Buffer.from(s);
    (async () => { ${body} })().then((out) => process.stdout.write(JSON.stringify(out)), (e) => { console.error(e); process.exit(3); });
  `;
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, MANILA_POOL_THREADS: String(threads), ...env }, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child exited ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

// A file only uid 1000 may read, and a directory only uid 1000 may write.
const secret = path.join(base, 'mine');
fs.writeFileSync(secret, 'for 1000 only');
fs.chownSync(secret, 1000, 1000);
fs.chmodSync(secret, 0o600);
const privateDir = path.join(base, 'private');
fs.mkdirSync(privateDir);
fs.chownSync(privateDir, 1000, 1000);
fs.chmodSync(privateDir, 0o700);

t.test('one thread: the next caller never inherits the previous caller\'s rights', async (t) => {
  const out = run(1, `
    const f = (await nb.openPath(${JSON.stringify(secret)}, 0)).fd;
    const d = (await nb.openPath(${JSON.stringify(privateDir)}, 0)).fd;
    const r = [];
    for (const who of [[1000, 1000], [1001, 1000], [1000, 1000], [1000, 1000, 5], [1000, 1001], [1000, 1000]]) {
      r.push((await nb.read(c(...who), f, Buffer.alloc(4), 0, 4, 0n)).err);
    }
    const mk = [];
    for (const who of [[1000, 1000], [1002, 1002], [1000, 1000]]) mk.push((await nb.mkdir(c(...who), d, b('d' + mk.length), 0o755)).err);
    const caps = (await nb.effectiveCaps(null)).effective.toString();
    const rootRead = (await nb.read(null, f, Buffer.alloc(4), 0, 4, 0n)).err;
    const asRoot = (await nb.read(c(0, 0), f, Buffer.alloc(4), 0, 4, 0n)).err;
    const after = (await nb.read(c(1001, 1001), f, Buffer.alloc(4), 0, 4, 0n)).err;
    return { r, mk, caps, rootRead, asRoot, after, stats: nb.poolStats() };
  `);
  const EACCES = os.constants.errno.EACCES;
  // uid 1000 reads its 0600 file; 1001 does not; group changes alone do not matter for the owner
  t.same(out.r, [0, EACCES, 0, 0, 0, 0]);
  t.same(out.mk, [0, EACCES, 0], 'uid 1002 cannot create in 1000\'s 0700 directory right after 1000 did');
  t.equal(out.rootRead, 0, 'the daemon (no creds) reads a 0600 file of another uid: full rights back');
  t.equal(out.asRoot, 0, 'a root caller without squash keeps CAP_DAC_OVERRIDE');
  t.equal(out.after, EACCES, 'and the next caller is limited again');
  t.same(out.stats, { threads: 1, maxThreads: 1 });
  t.not(out.caps, '0', 'the daemon thread has its capabilities');
});

t.test('threads start on demand, bounded; one started while another is a guest starts as the daemon', async (t) => {
  const out = run(2, `
    const before = nb.poolStats().threads;
    const f = (await nb.openPath(${JSON.stringify(secret)}, 0)).fd;
    // guests on both threads, then work that needs more threads than the bound
    const guests = await Promise.all(Array.from({ length: 16 }, (_, i) => nb.read(c(1000 + (i % 3), 1000), f, Buffer.alloc(4), 0, 4, 0n)));
    const daemon = await Promise.all(Array.from({ length: 16 }, () => nb.read(null, f, Buffer.alloc(4), 0, 4, 0n)));
    return { before, guests: guests.map((g) => g.err), daemon: daemon.map((d) => d.err), stats: nb.poolStats() };
  `);
  const EACCES = os.constants.errno.EACCES;
  t.equal(out.before, 0, 'no thread before the first operation');
  t.same(out.guests, Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? 0 : EACCES)));
  t.same(out.daemon, Array(16).fill(0), 'every daemon read succeeds, whichever thread ran it');
  t.ok((out.stats as { threads: number }).threads <= 2, `threads ${JSON.stringify(out.stats)}`);
});

/**
 * Child code defining `f` (a new file named `name`) and `burst()`: 12 FILE_SYNC writes of 2 MiB at
 * once (an fsync each keeps its thread busy long enough for the queue to start more); their errs.
 */
function burstOfSyncedWrites(name: string): string {
  const data = path.join(base, name);
  fs.writeFileSync(data, '');
  return `
    const f = (await nb.openPath(${JSON.stringify(data)}, 0)).fd;
    const chunk = Buffer.alloc(2 << 20, 7);
    const burst = async () => (await Promise.all(Array.from({ length: 12 }, (_, i) => nb.write(null, f, chunk, BigInt(i) * 2097152n, 2)))).map((w) => w.err);
  `;
}

t.test('threads idle past MANILA_POOL_IDLE_MS exit, down to four; the pool goes on working', async (t) => {
  const out = run(64, `
    ${burstOfSyncedWrites('synced')}
    const errs = await burst();
    const busy = nb.poolStats().threads;
    await new Promise((r) => setTimeout(r, 1500));
    const idle = nb.poolStats().threads;
    const guest = (await nb.read(c(1000, 1000), (await nb.openPath(${JSON.stringify(secret)}, 0)).fd, Buffer.alloc(4), 0, 4, 0n)).err;
    const again = await burst();
    return { errs, busy, idle, guest, again, after: nb.poolStats().threads };
  `, { MANILA_POOL_IDLE_MS: '300' });
  t.same(out.errs, Array(12).fill(0), 'the writes succeed');
  t.ok((out.busy as number) > 4, `${out.busy} threads during the burst`);
  t.equal(out.idle, 4, 'four left after 1.5 s without work');
  t.equal(out.guest, 0, 'a guest\'s read on a remaining thread');
  t.same(out.again, Array(12).fill(0), 'a second burst is served');
  t.ok((out.after as number) >= 4, `${out.after} threads after it`);
});

t.test('under a steady trickle of work the threads a burst started still exit (LIFO wake-ups)', async (t) => {
  const out = run(64, `
    ${burstOfSyncedWrites('trickle')}
    await burst();
    const busy = nb.poolStats().threads;
    // one operation at a time, never a pause as long as the idle limit: a wake-up per operation
    // handed round every sleeper (as one shared condition variable did) would keep them all
    const until = Date.now() + 2000;
    let reads = 0;
    const small = Buffer.alloc(4);
    while (Date.now() < until) {
      if ((await nb.read(null, f, small, 0, 4, 0n)).err !== 0) throw new Error('read failed');
      reads++;
      if (reads % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    return { busy, reads, after: nb.poolStats().threads };
  `, { MANILA_POOL_IDLE_MS: '300' });
  t.ok((out.busy as number) > 4, `${out.busy} threads during the burst`);
  t.ok((out.reads as number) > 100, `${out.reads} reads in the trickle`);
  t.equal(out.after, 4, 'the surplus threads timed out while the trickle went on');
});

t.test('workers are named manila-pool and run SCHED_BATCH; the event loop stays SCHED_OTHER', async (t) => {
  const out = run(8, `
    const fs = require('node:fs');
    const f = (await nb.openPath(${JSON.stringify(secret)}, 0)).fd;
    await Promise.all(Array.from({ length: 16 }, () => nb.read(null, f, Buffer.alloc(4), 0, 4, 0n)));
    // /proc/self/task/TID/stat: "tid (comm) state ...", the policy is field 41
    const policy = (tid) => {
      const stat = fs.readFileSync('/proc/self/task/' + tid + '/stat', 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
    };
    const threads = fs.readdirSync('/proc/self/task').map((tid) => ({
      tid: Number(tid), comm: fs.readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim(), policy: policy(tid),
    }));
    return { threads, main: policy(process.pid), stats: nb.poolStats() };
  `);
  const SCHED_OTHER = 0;
  const SCHED_BATCH = 3;
  const workers = (out.threads as { comm: string; policy: number }[]).filter((th) => th.comm === 'manila-pool');
  t.equal(workers.length, (out.stats as { threads: number }).threads, 'every pool thread carries the name');
  t.ok(workers.length > 0);
  t.ok(workers.every((th) => th.policy === SCHED_BATCH), `policies ${JSON.stringify(workers.map((th) => th.policy))}`);
  t.equal(out.main, SCHED_OTHER, 'the main thread is left as it was');
});

t.test('the pool does not keep a process alive once its work is done', async (t) => {
  const r = spawnSync(process.execPath, ['-e', `const nb = require(${JSON.stringify(addon)}); nb.fstat(0).then(() => console.log('done'));`], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), 'done');
});
