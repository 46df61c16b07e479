#!/usr/bin/env node
// Memory benchmark (performance issue targets: "1,000 idle connections under 300 MiB RSS; RSS flat
// over a 10-minute soak of mixed load"). Starts our daemon on 127.0.0.1 over a local backend (as
// bench/compare.mjs does) and reads its RSS from /proc/PID/status (VmRSS, VmHWM).
//
//   npm run bench:memory -- [--idle] [--soak]              (neither: both parts)
//     idle:  [--connections 1000] [--settle 10] [--open-concurrency 50] [--max-rss-mib 300]
//     soak:  [--soak-seconds 1800] [--chunk-seconds 20] [--warmup-seconds 300] [--sample-seconds 5]
//            [--qd 16] [--parallel 2] [--file-size 256M]
//            [--workloads getattr,lookup,randread,seqread,seqwrite,create-remove,readdirplus]
//            [--flat-slope 0.5] [--flat-pct 10] [--flat-mib 16] [--idle-after-soak]
//     both:  [--no-metrics] [--out DIR]
//
// Idle: after a first connection (NULL, MNT, GETATTR, closed) warms the daemon up, opens
// --connections TCP connections from this process, each making one NFS NULL call (AUTH_NONE), one
// MOUNT MNT of /bench and one NFS GETATTR of the returned root handle (AUTH_SYS uid 0), then leaves
// them all idle for --settle seconds (keep it under the daemon's idle timeout, 360 s by default)
// and reads the daemon's RSS, its open descriptors and its manila_gateway_connections{transport=
// "tcp"} metric; then checks every connection still answers a NULL call, closes them, and reads the
// RSS once more. Passes when the RSS with the connections open is under --max-rss-mib.
//
// Soak: a fresh daemon; --parallel streams of bench/nfsload runs, each stream cycling through
// --workloads in runs of --chunk-seconds (qd --qd, one connection) until --soak-seconds are over;
// the daemon's RSS every --sample-seconds. The defaults judge 25 minutes of load after a
// five-minute warm-up. The warm-up: the seven workloads take 140 s to come round, and in every run
// the RSS was still settling through the second rotation, which a 150 s warm-up judged as growth.
// The 25 minutes: with the workloads in flight the RSS swings 20-50 MiB between samples (residual
// standard deviation 10-14 MiB around the fitted line in every run), which puts the standard error
// of a slope over ten minutes at 0.33-0.43 MiB/min, too close to the 0.5 MiB/min bound to tell flat
// from growing: 900 s runs of one build gave 0.528 and 2.302 MiB/min. Over 25 minutes the standard
// error is about 0.09 (BENCHMARKS.md). Reports the RSS at the start of the load, after
// --warmup-seconds, the max, the last, and the least-squares slope (MiB/min, with its standard
// error) over the samples after the warm-up. Flat when the slope is under --flat-slope MiB/min and the last sample is within
// max(--flat-pct % of, --flat-mib MiB) of the post-warm-up median. The slope of each part of the
// memory is printed too, not judged: the JS heap, external Buffers, glibc's heap in use, kept free
// and mapped (manila_gateway_malloc_heap_bytes), the listing cache, and the pooled message buffers
// not yet collected (manila_gateway_message_buffers), to tell a leak from fragmentation and a pool
// that holds more from garbage that waits for the collector. Samples go to --out (default a
// new temporary directory) as JSON and CSV. --idle-after-soak: then the idle measurement again, on
// the soak's daemon once the load has stopped (the RSS a loaded daemon carries into idle time).
//
// Human lines on stderr, the results as a markdown table on stdout. Exit status: 0 pass, 1 a
// criterion failed or a run had errors, 2 the bench itself failed. Needs gcc and libnfs-dev for the
// soak (apt-get install -y --no-install-recommends gcc libc6-dev libnfs-dev).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildNfsload, childRegistry, fmt, median, metricValue, nfsload, openFds, openFileLimit, procStatus, root, running,
  scrapeMetrics, sleep, startGateway, stopChild,
} from './common.mjs';

const ALL = ['getattr', 'lookup', 'randread', 'seqread', 'seqwrite', 'create-remove', 'readdirplus'];
const { values: opts } = parseArgs({
  options: {
    idle: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    connections: { type: 'string', default: '1000' },
    settle: { type: 'string', default: '10' },
    'open-concurrency': { type: 'string', default: '50' },
    'max-rss-mib': { type: 'string', default: '300' },
    'soak-seconds': { type: 'string', default: '1800' },
    'chunk-seconds': { type: 'string', default: '20' },
    'warmup-seconds': { type: 'string', default: '300' },
    'sample-seconds': { type: 'string', default: '5' },
    qd: { type: 'string', default: '16' },
    parallel: { type: 'string', default: '2' },
    'file-size': { type: 'string', default: '256M' },
    workloads: { type: 'string', default: ALL.join(',') },
    'flat-slope': { type: 'string', default: '0.5' },
    'flat-pct': { type: 'string', default: '10' },
    'flat-mib': { type: 'string', default: '16' },
    'idle-after-soak': { type: 'boolean', default: false },
    'no-metrics': { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const say = (...a) => console.error('[memory]', ...a);
function fail(message) {
  console.error(`bench/memory.mjs: ${message}`);
  process.exit(2);
}
const num = (name, { min = 0, int = false } = {}) => {
  const v = Number(opts[name]);
  if (!Number.isFinite(v) || v < min || (int && !Number.isInteger(v))) fail(`--${name} must be ${int ? 'an integer' : 'a number'} >= ${min}, not ${opts[name]}`);
  return v;
};
const doIdle = opts.idle || !opts.soak;
const doSoak = opts.soak || !opts.idle;
const N = num('connections', { min: 1, int: true });
const SETTLE = num('settle');
const OPEN_CONC = num('open-concurrency', { min: 1, int: true });
const MAX_RSS_MIB = num('max-rss-mib', { min: 1 });
const SOAK_S = num('soak-seconds', { min: 1 });
const CHUNK_S = num('chunk-seconds', { min: 1 });
const WARMUP_S = num('warmup-seconds');
const SAMPLE_S = num('sample-seconds', { min: 0.2 });
const QD = num('qd', { min: 1, int: true });
const PARALLEL = num('parallel', { min: 1, int: true });
const FLAT_SLOPE = num('flat-slope');
const FLAT_PCT = num('flat-pct');
const FLAT_MIB = num('flat-mib');
const METRICS = !opts['no-metrics'];
const workloads = opts.workloads.split(',').map((w) => w.trim()).filter(Boolean);
for (const w of workloads) if (!ALL.includes(w)) fail(`unknown workload ${w} (known: ${ALL.join(', ')})`);
if (doSoak && !workloads.length) fail('--workloads is empty');
if (doIdle && SETTLE >= 300) say(`WARNING: --settle ${SETTLE} s is close to or over the daemon's idle timeout (360 s by default): connections may be reaped`);

// the command line, for the record: every figure comes with the command that produced it
const command = `node bench/memory.mjs ${process.argv.slice(2).join(' ')}`.trim();
const MiB = (kib) => kib / 1024;

// ---- processes and cleanup -------------------------------------------------------------------------

const registry = childRegistry();
const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-bench-memory-'));
const exportsDir = path.join(dir, 'exports');
const exportDir = path.join(exportsDir, 'bench');
mkdirSync(exportDir, { recursive: true });
const outDir = opts.out ? path.resolve(opts.out) : mkdtempSync(path.join(os.tmpdir(), 'mg-bench-memory-results-'));
mkdirSync(outDir, { recursive: true });
const sockets = new Set();
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const s of sockets) s.destroy();
  registry.killAll();
  rmSync(dir, { recursive: true, force: true });
  if (!opts.out) try { rmdirSync(outDir); } catch { /* not empty: results */ }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { say(`${sig}: stopping`); cleanup(); process.exit(130); });

// ---- a tiny ONC RPC client (RFC 5531, record marking over TCP) ----------------------------------

const NFS_PROG = 100003;
const MOUNT_PROG = 100005;
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
const pad = (len) => Buffer.alloc((4 - (len % 4)) % 4);
const xdrOpaque = (buf) => Buffer.concat([u32(buf.length), buf, pad(buf.length)]);
const xdrString = (s) => xdrOpaque(Buffer.from(s, 'utf8'));
const AUTH_NONE = Buffer.concat([u32(0), u32(0)]);
const authSys = (uid = 0, gid = 0) =>
  Buffer.concat([u32(1), xdrOpaque(Buffer.concat([u32(Math.floor(Date.now() / 1000)), xdrString('mg-bench-memory'), u32(uid), u32(gid), u32(0)]))]);
let nextXid = (Math.random() * 0x7fffffff) >>> 0;

class RpcConn {
  constructor(socket) {
    this.socket = socket;
    this.pending = new Map();
    this.buf = Buffer.alloc(0);
    this.frags = [];
    this.closed = false;
    this.error = null;
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => { this.error ??= err; });
    socket.on('close', () => {
      this.closed = true;
      for (const p of this.pending.values()) p.reject(new Error(`connection closed${this.error ? `: ${this.error.message}` : ''}`));
      this.pending.clear();
    });
  }

  call(prog, vers, proc, cred, args = Buffer.alloc(0), timeoutMs = 15_000) {
    const xid = nextXid = (nextXid + 1) >>> 0;
    const msg = Buffer.concat([u32(xid), u32(0), u32(2), u32(prog), u32(vers), u32(proc), cred, AUTH_NONE, args]);
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      const timer = setTimeout(() => { this.pending.delete(xid); reject(new Error(`no reply to xid ${xid} (prog ${prog} proc ${proc}) in ${timeoutMs} ms`)); }, timeoutMs);
      this.pending.set(xid, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.socket.write(Buffer.concat([u32(0x80000000 | msg.length), msg]));
    });
  }

  onData(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const header = this.buf.readUInt32BE(0);
      const len = header & 0x7fffffff;
      if (this.buf.length < 4 + len) break;
      this.frags.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
      if (header >>> 31) {
        const record = this.frags.length === 1 ? this.frags[0] : Buffer.concat(this.frags);
        this.frags = [];
        this.onRecord(record);
      }
    }
  }

  onRecord(r) {
    if (r.length < 12) return this.protocolError(`reply of ${r.length} bytes`);
    const xid = r.readUInt32BE(0);
    const p = this.pending.get(xid);
    if (!p) return this.protocolError(`reply with unknown xid ${xid}`);
    this.pending.delete(xid);
    if (r.readUInt32BE(4) !== 1) return p.reject(new Error(`xid ${xid}: message type ${r.readUInt32BE(4)}, not REPLY`));
    const replyStat = r.readUInt32BE(8);
    if (replyStat !== 0) return p.reject(new Error(`xid ${xid}: MSG_DENIED (reject_stat ${r.length >= 16 ? r.readUInt32BE(12) : '?'})`));
    const verfLen = r.readUInt32BE(16);
    let off = 20 + verfLen + ((4 - (verfLen % 4)) % 4);
    const acceptStat = r.readUInt32BE(off);
    off += 4;
    if (acceptStat !== 0) return p.reject(new Error(`xid ${xid}: accept_stat ${acceptStat}, not SUCCESS`));
    p.resolve({ xid, body: r.subarray(off) });
  }

  protocolError(what) {
    this.error ??= new Error(what);
    this.socket.destroy();
  }
}

function connectTcp(port, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`connect timed out after ${timeoutMs} ms`)); }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); s.off('error', reject); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A connection that has made a NULL call, mounted /bench and read the root's attributes. */
async function openTouched(port) {
  const conn = new RpcConn(await connectTcp(port));
  try {
    const nul = await conn.call(NFS_PROG, 3, 0, AUTH_NONE);
    if (nul.body.length !== 0) throw new Error(`NULL: ${nul.body.length} bytes of results`);
    const mnt = await conn.call(MOUNT_PROG, 3, 1, authSys(), xdrString('/bench'));
    const mntStat = mnt.body.readUInt32BE(0);
    if (mntStat !== 0) throw new Error(`MNT /bench: mountstat3 ${mntStat}`);
    const fhLen = mnt.body.readUInt32BE(4);
    const fh = mnt.body.subarray(8, 8 + fhLen);
    const ga = await conn.call(NFS_PROG, 3, 1, authSys(), xdrOpaque(fh));
    const st = ga.body.readUInt32BE(0);
    if (st !== 0) throw new Error(`GETATTR of the root: nfsstat3 ${st}`);
    if (ga.body.readUInt32BE(4) !== 2) throw new Error(`GETATTR of the root: ftype3 ${ga.body.readUInt32BE(4)}, not NF3DIR`);
    return conn;
  } catch (e) {
    conn.socket.destroy();
    throw e;
  }
}

async function pool(n, concurrency, fn) {
  let next = 0;
  const results = new Array(n);
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      try { results[i] = { ok: true, value: await fn(i) }; } catch (e) { results[i] = { ok: false, error: e }; }
    }
  }));
  return results;
}

// ---- helpers ----------------------------------------------------------------------------------------

async function connectionsMetric(server) {
  if (!server.metricsPort) return NaN;
  try {
    return metricValue(await scrapeMetrics(server.metricsPort), 'manila_gateway_connections', '{transport="tcp"}');
  } catch (e) {
    say(`metrics scrape failed: ${e.message}`);
    return NaN;
  }
}
const rssLine = (s) => (s ? `VmRSS ${fmt(MiB(s.VmRSS), 1)} MiB, VmHWM ${fmt(MiB(s.VmHWM), 1)} MiB, RssAnon ${fmt(MiB(s.RssAnon), 1)} MiB, ${s.Threads} threads` : 'process gone');

/** [[x, y]] -> the least-squares slope and its standard error (from the residuals; NaN below 3 points). */
function leastSquares(points) {
  const n = points.length;
  if (n < 2) return { slope: NaN, stderr: NaN };
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) { sxy += (x - mx) * (y - my); sxx += (x - mx) ** 2; }
  if (!(sxx > 0)) return { slope: NaN, stderr: NaN };
  const slope = sxy / sxx;
  let squares = 0;
  for (const [x, y] of points) squares += (y - my - slope * (x - mx)) ** 2;
  return { slope, stderr: n > 2 ? Math.sqrt(squares / (n - 2) / sxx) : NaN };
}

const rows = []; // markdown: [part, figure, value, criterion, verdict]
let exitCode = 0;
const problemsSeen = [];

async function withGateway(label, fn) {
  const server = await startGateway({ dir: path.join(dir, label), exportsDir, track: registry.track, metrics: METRICS });
  say(`${label}: daemon pid ${server.pid}, NFS/MOUNT port ${server.port}${server.metricsPort ? `, metrics port ${server.metricsPort}` : ''}`);
  try {
    return await fn(server);
  } finally {
    const alive = running(server.child);
    await stopChild(server.child);
    if (!alive) {
      rows.push([label, 'daemon', `exited early (${server.child.exitCode ?? server.child.signalCode})`, 'stays up', 'FAIL']);
      exitCode = Math.max(exitCode, 1);
    }
    if (server.problems.length) {
      say(`${label}: the daemon logged ${server.problems.length} warning/error line(s); first: ${server.problems[0]}`);
      problemsSeen.push(`${label}: ${server.problems.length} warn/error log line(s), first: ${server.problems[0].slice(0, 300)}`);
    }
  }
}

// ---- part 1: idle connections ---------------------------------------------------------------------------

function checkOwnFdLimit() {
  const own = openFileLimit('self');
  if (own && own.soft < N + 64) {
    fail(`this process may open ${own.soft} files (RLIMIT_NOFILE soft ${own.soft}, hard ${own.hard}), too few for ${N} connections: `
      + `run it under a higher limit, e.g. \`prlimit --nofile=${N + 256} npm run bench:memory -- ...\` or \`ulimit -n ${N + 256}\` first (within the hard limit)`);
  }
  return own;
}

async function idlePart() {
  checkOwnFdLimit();
  await withGateway('idle', (server) => idleMeasure(server, 'idle'));
}

/** tag 'idle': a fresh daemon; 'idle-after-soak': the soak's daemon once its load is over. */
async function idleMeasure(server, tag) {
  const own = openFileLimit('self');
  const lim = openFileLimit(server.pid);
  say(`${tag}: open-file limits: this process soft ${own?.soft} hard ${own?.hard}; the daemon soft ${lim?.soft} hard ${lim?.hard}`);
  if (lim && lim.soft < N + 64) say(`WARNING: the daemon may open only ${lim.soft} files: ${N} connections will not fit (accept fails with EMFILE)`);
  await sleep(2000);
  const atStart = procStatus(server.pid);
  say(`${tag}: ${tag === 'idle' ? 'after start' : 'after the load'}: ${rssLine(atStart)}`);

  // one connection first, so code paths and caches every connection shares are not counted per connection
  const warm = await openTouched(server.port);
  warm.socket.destroy();
  await sleep(2000);
  const baseline = procStatus(server.pid);
  const fds0 = openFds(server.pid);
  say(`${tag}: baseline (after one warm-up connection, closed): ${rssLine(baseline)}, ${fds0} fds`);

  say(`${tag}: opening ${N} connections (${OPEN_CONC} at a time), each NULL + MNT /bench + GETATTR of the root`);
  const t0 = performance.now();
  const results = await pool(N, OPEN_CONC, () => openTouched(server.port));
  const openSecs = (performance.now() - t0) / 1000;
  const conns = results.filter((r) => r.ok).map((r) => r.value);
  const failures = results.filter((r) => !r.ok);
  say(`${tag}: ${conns.length}/${N} connections made in ${fmt(openSecs, 1)} s${failures.length ? `; ${failures.length} failed, first: ${failures[0].error.message}` : ''}`);
  const afterOpen = procStatus(server.pid);
  say(`${tag}: right after opening: ${rssLine(afterOpen)}`);

  const settleSeries = [];
  const tSettle = performance.now();
  while ((performance.now() - tSettle) / 1000 < SETTLE) {
    await sleep(Math.min(1000, Math.max(0, SETTLE * 1000 - (performance.now() - tSettle))));
    const s = procStatus(server.pid);
    settleSeries.push({ t_s: Number(((performance.now() - tSettle) / 1000).toFixed(1)), rss_kib: s?.VmRSS, hwm_kib: s?.VmHWM });
  }
  const idle = procStatus(server.pid);
  const fdsIdle = openFds(server.pid);
  const closedEarly = conns.filter((c) => c.closed).length;
  const metricOpen = await connectionsMetric(server);
  say(`${tag}: with ${conns.length} idle connections after ${SETTLE} s: ${rssLine(idle)}, ${fdsIdle} fds (+${fdsIdle - fds0}), `
    + `closed by the daemon meanwhile: ${closedEarly}, metric connections{tcp}: ${fmt(metricOpen)}`);

  // still open at the daemon? one more NULL call on each (after the RSS reading)
  const pings = await pool(conns.length, 200, async (i) => {
    const r = await conns[i].call(NFS_PROG, 3, 0, AUTH_NONE);
    if (r.body.length !== 0) throw new Error('NULL: unexpected results');
  });
  const alive = pings.filter((p) => p.ok).length;
  const pingFail = pings.find((p) => !p.ok);
  say(`${tag}: ${alive}/${conns.length} connections answered a NULL call after the settle${pingFail ? `; first failure: ${pingFail.error.message}` : ''}`);

  for (const c of conns) c.socket.destroy();
  await sleep(3000);
  const afterClose = procStatus(server.pid);
  const metricClosed = await connectionsMetric(server);
  say(`${tag}: 3 s after closing them: ${rssLine(afterClose)}, ${openFds(server.pid)} fds, metric connections{tcp}: ${fmt(metricClosed)}`);

  const deltaKiB = idle.VmRSS - baseline.VmRSS;
  const perConn = deltaKiB / Math.max(1, conns.length);
  const rssMiB = MiB(idle.VmRSS);
  const allUp = conns.length === N && closedEarly === 0 && alive === N;
  const pass = rssMiB < MAX_RSS_MIB;
  const verdict = !allUp ? 'INVALID (not all connections held)' : pass ? 'PASS' : 'FAIL';
  if (!allUp || !pass) exitCode = Math.max(exitCode, 1);
  say(`${tag}: RSS with ${N} idle connections ${fmt(rssMiB, 1)} MiB < ${MAX_RSS_MIB} MiB: ${verdict}`);

  const file = path.join(outDir, `${tag}.json`);
  writeFileSync(file, `${JSON.stringify({
    command, connections: N, settle_s: SETTLE, daemon_pid: server.pid, open_seconds: openSecs, failures: failures.map((f) => f.error.message).slice(0, 20),
    at_start: atStart, baseline, after_open: afterOpen, idle, after_close: afterClose, settle_series: settleSeries,
    fds_baseline: fds0, fds_idle: fdsIdle, metric_connections_idle: metricOpen, metric_connections_after_close: metricClosed,
    closed_early: closedEarly, answered_after_settle: alive, delta_kib: deltaKiB, per_connection_kib: perConn,
  }, null, 2)}\n`);
  say(`${tag}: figures written to ${file}`);

  const P = `${tag === 'idle' ? 'idle' : 'idle after soak'} (${N} conns)`;
  rows.push(
    [P, tag === 'idle' ? 'RSS after start (VmRSS)' : 'RSS 2 s after the load', `${fmt(MiB(atStart.VmRSS), 1)} MiB`, '', ''],
    [P, 'RSS baseline, after 1 warm-up connection', `${fmt(MiB(baseline.VmRSS), 1)} MiB`, '', ''],
    [P, `connections made (NULL + MNT + GETATTR each)`, `${conns.length}/${N} in ${fmt(openSecs, 1)} s`, `all ${N}`, conns.length === N ? 'ok' : 'FAIL'],
    [P, `RSS with ${N} idle connections, after ${SETTLE} s`, `${fmt(rssMiB, 1)} MiB`, `< ${MAX_RSS_MIB} MiB`, verdict],
    [P, 'RSS delta per connection', `${fmt(perConn, 1)} KiB (${fmt(MiB(deltaKiB), 1)} MiB total)`, '', ''],
    [P, 'peak RSS (VmHWM) so far', `${fmt(MiB(idle.VmHWM), 1)} MiB`, '', ''],
    [P, 'daemon fds with connections open', `${fdsIdle} (+${fdsIdle - fds0})`, `+${N}`, fdsIdle - fds0 >= N ? 'ok' : 'FAIL'],
    [P, 'metric manila_gateway_connections{transport="tcp"}', fmt(metricOpen), String(N), !METRICS ? 'n/a' : metricOpen === N ? 'ok' : 'FAIL'],
    [P, 'still open after the settle (NULL answered)', `${alive}/${N}`, `all ${N}`, alive === N && closedEarly === 0 ? 'ok' : 'FAIL'],
    [P, 'RSS 3 s after closing them all', `${fmt(MiB(afterClose.VmRSS), 1)} MiB (metric ${fmt(metricClosed)})`, '', ''],
  );
}

// ---- part 2: soak ---------------------------------------------------------------------------------------

function runLoad(server, workload, seconds, stream) {
  const args = ['run', '--url', server.url, '--workload', workload, '--seconds', String(seconds), '--warmup', '0',
    '--qd', String(QD), '--conns', '1', '--label', `soak${stream}`, '--wfile', `seqwrite-soak${stream}.dat`,
    '--wfile-size', '256M', '--commit-mb', '64'];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = registry.track(spawn(nfsload, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { err += c; });
    const limit = setTimeout(() => child.kill('SIGKILL'), (seconds + 120) * 1000);
    // 'close', not 'exit': the result line may still sit in the stdout pipe when the process has
    // exited (a soak lost one run's output that way).
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      let rec;
      try { rec = JSON.parse(out.trim().split('\n').pop()); } catch {
        rec = { workload, ops: 0, errors: 1, first_error: `nfsload exited ${code ?? signal}: ${err.trim() || out.trim() || 'no output'}` };
      }
      rec.stream = stream;
      rec.wall_s = Number(((performance.now() - t0) / 1000).toFixed(2));
      if (err.trim() && !rec.first_error) rec.stderr = err.trim();
      resolve(rec);
    });
  });
}

async function soakPart() {
  if (opts['idle-after-soak']) checkOwnFdLimit();
  buildNfsload(say);
  say(`soak: preparing ${exportDir}: a ${opts['file-size']} file, a 10,000-entry directory, an empty directory`);
  execFileSync(nfsload, ['prepare', '--root', exportDir, '--file-size', opts['file-size'], '--dir-entries', '10000'], { stdio: ['ignore', 'ignore', 'inherit'] });
  await withGateway('soak', async (server) => {
    await sleep(2000);
    const samples = [];
    const runs = [];
    const active = new Map(); // stream -> workload
    let t0 = performance.now();
    const sample = () => {
      const s = procStatus(server.pid);
      if (!s) return null;
      const rec = {
        t_s: Number(((performance.now() - t0) / 1000).toFixed(1)), rss_kib: s.VmRSS, hwm_kib: s.VmHWM, anon_kib: s.RssAnon,
        file_kib: s.RssFile, threads: s.Threads, fds: openFds(server.pid), workloads: [...active.values()].join('+') || '-',
      };
      samples.push(rec);
      if (server.metricsPort) {
        scrapeMetrics(server.metricsPort).then((text) => {
          rec.heap_used_kib = Math.round(metricValue(text, 'manila_gateway_nodejs_heap_size_used_bytes') / 1024);
          rec.heap_total_kib = Math.round(metricValue(text, 'manila_gateway_nodejs_heap_size_total_bytes') / 1024);
          rec.external_kib = Math.round(metricValue(text, 'manila_gateway_nodejs_external_memory_bytes') / 1024);
          rec.connections = metricValue(text, 'manila_gateway_connections', '{transport="tcp"}');
          for (const state of ['in_use', 'free', 'mmapped']) {
            rec[`malloc_${state}_kib`] = Math.round(metricValue(text, 'manila_gateway_malloc_heap_bytes', `{state="${state}"}`) / 1024);
          }
          rec.listing_cache_kib = Math.round(metricValue(text, 'manila_gateway_listing_cache_bytes') / 1024);
          rec.worker_threads = metricValue(text, 'manila_gateway_worker_threads');
          // The message buffer pool: live (not yet collected) against free tells garbage waiting
          // for a mark-compact from a pool that holds more.
          let pooledLive = 0;
          for (const [sizeClass, bytes] of [['medium', MEDIUM_BUFFER_BYTES], ['large', LARGE_BUFFER_BYTES]]) {
            for (const state of ['live', 'free']) {
              rec[`${sizeClass}_${state}`] = metricValue(text, 'manila_gateway_message_buffers', `{size_class="${sizeClass}",state="${state}"}`);
            }
            pooledLive += rec[`${sizeClass}_live`] * bytes;
          }
          rec.pooled_live_kib = Math.round(pooledLive / 1024);
        }, () => {});
      }
      return rec;
    };
    const rotation = (workloads.length * CHUNK_S) / PARALLEL;
    if (WARMUP_S < rotation) {
      say(`soak: note: every workload has run once only after ~${fmt(rotation)} s (${workloads.length} x ${CHUNK_S} s / ${PARALLEL} streams); `
        + `a --warmup-seconds ${WARMUP_S} shorter than that counts first-time growth (pools, caches, heap sizing) in the slope`);
    }
    say(`soak: before load: ${rssLine(procStatus(server.pid))}`);
    say(`soak: ${SOAK_S} s of ${PARALLEL} parallel stream(s) cycling ${workloads.join(', ')} in ${CHUNK_S} s nfsload runs (qd ${QD}, 1 connection each); RSS every ${SAMPLE_S} s`);
    t0 = performance.now();
    const deadline = t0 + SOAK_S * 1000;
    sample();
    let lastReport = 0;
    const timer = setInterval(() => {
      const rec = sample();
      if (rec && rec.t_s - lastReport >= 30) {
        lastReport = rec.t_s;
        const prev = samples[samples.length - 2];
        say(`soak: t=${fmt(rec.t_s)} s RSS ${fmt(MiB(rec.rss_kib), 1)} MiB (HWM ${fmt(MiB(rec.hwm_kib), 1)})`
          + `${prev?.heap_used_kib ? `, JS heap used ${fmt(MiB(prev.heap_used_kib), 1)} MiB` : ''}, running ${rec.workloads}`);
      }
    }, SAMPLE_S * 1000);
    const stream = async (k) => {
      let i = Math.floor((k * workloads.length) / PARALLEL);
      for (;;) {
        const remaining = (deadline - performance.now()) / 1000;
        if (remaining < 2 || !running(server.child)) return;
        const w = workloads[i++ % workloads.length];
        const secs = Number(Math.min(CHUNK_S, remaining).toFixed(1));
        active.set(k, w);
        const rec = await runLoad(server, w, secs, k);
        active.delete(k);
        runs.push(rec);
        say(`soak: stream ${k} ${w} ${secs} s: ${fmt(rec.ops)} ops, ${fmt(rec.ops_per_s)} ops/s${rec.errors ? `, ERRORS ${rec.errors}: ${rec.first_error}` : ''}`);
      }
    };
    try {
      await Promise.all(Array.from({ length: PARALLEL }, (_, k) => stream(k)));
    } finally {
      clearInterval(timer);
    }
    sample();
    await sleep(500); // the last scrape
    const loadSecs = (performance.now() - t0) / 1000;

    // ---- figures ----
    const rssM = (s) => MiB(s.rss_kib);
    const first = samples[0];
    const post = samples.filter((s) => s.t_s >= WARMUP_S);
    const atWarm = post[0];
    const last = samples[samples.length - 1];
    const max = samples.reduce((m, s) => (s.rss_kib > m.rss_kib ? s : m), first);
    const { slope, stderr } = leastSquares(post.map((s) => [s.t_s / 60, rssM(s)]));
    const postMedian = median(post.map(rssM));
    const tol = Math.max((FLAT_PCT / 100) * postMedian, FLAT_MIB);
    const lastDev = rssM(last) - postMedian;
    const enough = post.length >= 3;
    const slopeOk = enough && slope < FLAT_SLOPE; // shrinking is not growth: the last-sample check bounds both ways
    const lastOk = enough && Math.abs(lastDev) <= tol;
    const flat = !enough ? 'n/a (too few samples after the warm-up)' : slopeOk && lastOk ? 'FLAT (PASS)' : 'NOT FLAT (FAIL)';
    if (!enough || !slopeOk || !lastOk) exitCode = Math.max(exitCode, 1);

    const byWl = new Map();
    for (const r of runs) {
      const a = byWl.get(r.workload) ?? { runs: 0, ops: 0, errors: 0, seconds: 0, first_error: null };
      a.runs++;
      a.ops += r.ops ?? 0;
      a.errors += r.errors ?? 0;
      a.seconds += r.seconds ?? 0;
      a.first_error ??= r.first_error ?? null;
      byWl.set(r.workload, a);
    }
    const totalErrors = runs.reduce((a, r) => a + (r.errors ?? 0), 0);
    if (totalErrors) exitCode = Math.max(exitCode, 1);

    const base = path.join(outDir, 'soak');
    writeFileSync(`${base}.json`, `${JSON.stringify({ command, daemon_pid: server.pid, soak_seconds: SOAK_S, load_seconds: loadSecs, samples, runs }, null, 1)}\n`);
    const cols = ['t_s', 'rss_kib', 'hwm_kib', 'anon_kib', 'file_kib', 'threads', 'fds', 'heap_used_kib', 'heap_total_kib', 'external_kib',
      'malloc_in_use_kib', 'malloc_free_kib', 'malloc_mmapped_kib', 'listing_cache_kib', 'worker_threads',
      'medium_live', 'medium_free', 'large_live', 'large_free', 'pooled_live_kib', 'connections', 'workloads'];
    writeFileSync(`${base}.csv`, `${cols.join(',')}\n${samples.map((s) => cols.map((c) => s[c] ?? '').join(',')).join('\n')}\n`);
    say(`soak: ${samples.length} samples and ${runs.length} nfsload runs written to ${base}.json and ${base}.csv`);
    say(`soak: RSS start ${fmt(rssM(first), 1)} MiB, after warm-up ${atWarm ? fmt(rssM(atWarm), 1) : 'n/a'} MiB, max ${fmt(rssM(max), 1)} MiB (t=${max.t_s} s), last ${fmt(rssM(last), 1)} MiB; `
      + `slope after ${WARMUP_S} s ${fmt(slope, 3)} ± ${fmt(stderr, 3)} MiB/min (standard error) over ${post.length} samples; post-warm-up median ${fmt(postMedian, 1)} MiB: ${flat}`);

    const P = `soak (${fmt(loadSecs)} s)`;
    rows.push(
      [P, 'RSS at start of load', `${fmt(rssM(first), 1)} MiB`, '', ''],
      [P, `RSS after warm-up (t=${atWarm ? fmt(atWarm.t_s) : '?'} s)`, atWarm ? `${fmt(rssM(atWarm), 1)} MiB` : 'n/a', '', ''],
      [P, 'RSS max', `${fmt(rssM(max), 1)} MiB at t=${fmt(max.t_s)} s (VmHWM ${fmt(MiB(last.hwm_kib), 1)} MiB)`, '', ''],
      [P, 'RSS last', `${fmt(rssM(last), 1)} MiB at t=${fmt(last.t_s)} s`, `within ±${fmt(tol, 1)} MiB of post-warm-up median ${fmt(postMedian, 1)} MiB`, !enough ? 'n/a' : lastOk ? `ok (${lastDev >= 0 ? '+' : ''}${fmt(lastDev, 1)})` : `FAIL (${lastDev >= 0 ? '+' : ''}${fmt(lastDev, 1)})`],
      [P, `RSS slope after ${WARMUP_S} s (least squares, ${post.length} samples)`, `${fmt(slope, 3)} MiB/min (standard error ${fmt(stderr, 3)})`, `slope < ${FLAT_SLOPE} MiB/min`, !enough ? 'n/a' : slopeOk ? 'ok' : 'FAIL'],
      [P, 'RSS flat', '', `slope and last-sample criteria`, flat],
    );
    // Which part moved, fitted over the same samples: the V8 heap, glibc's heap (allocated, kept
    // free, mapped on its own), the listing cache, the pooled buffers alive. For reading a failed
    // verdict, not judged.
    const parts = [['JS heap total', 'heap_total_kib'], ['external (Buffers)', 'external_kib'], ['malloc in use', 'malloc_in_use_kib'],
      ['malloc free (kept)', 'malloc_free_kib'], ['malloc mmapped', 'malloc_mmapped_kib'], ['listing cache', 'listing_cache_kib'],
      ['pooled buffers live', 'pooled_live_kib']];
    const partSlopes = [];
    for (const [label, col] of parts) {
      const points = post.filter((s) => Number.isFinite(s[col])).map((s) => [s.t_s / 60, MiB(s[col])]);
      if (points.length < 3) continue;
      const fit = leastSquares(points);
      const at = median(points.map(([, v]) => v));
      partSlopes.push(`${label} ${fmt(fit.slope, 3)}`);
      rows.push([P, `${label}: slope after ${WARMUP_S} s (median ${fmt(at, 1)} MiB)`, `${fmt(fit.slope, 3)} MiB/min (standard error ${fmt(fit.stderr, 3)})`, '', '']);
    }
    if (partSlopes.length) say(`soak: slopes by part (MiB/min): ${partSlopes.join(', ')}`);
    for (const w of workloads) {
      const a = byWl.get(w);
      if (!a) { rows.push([P, `${w}`, 'not run', '', '']); continue; }
      rows.push([P, `${w}: runs / ops / errors`, `${a.runs} / ${a.ops} (${fmt(a.ops / Math.max(a.seconds, 1e-9))} ops/s) / ${a.errors}`, '0 errors',
        a.errors ? `FAIL: ${String(a.first_error).slice(0, 120)}` : 'ok']);
    }
    if (opts['idle-after-soak'] && running(server.child)) await idleMeasure(server, 'idle-after-soak');
  });
}

// ---- main ----------------------------------------------------------------------------------------------

if (!existsSync(path.join(root, 'dist', 'cli.js'))) fail('dist/ is missing: build the daemon first (npm run build)');
// The pool's size classes, to turn its buffer counts into bytes.
const { MEDIUM_BUFFER_SIZE: MEDIUM_BUFFER_BYTES, LARGE_BUFFER_SIZE: LARGE_BUFFER_BYTES } = await import('../dist/rpc/buffers.js');
say(`command: ${command}`);
say(`host: ${os.cpus().length} cpu(s), ${fmt(os.totalmem() / 1048576)} MiB RAM, node ${process.version}; work dir ${dir}; results in ${outDir}`);
try {
  if (doIdle) await idlePart();
  if (doSoak) await soakPart();
} catch (e) {
  console.error(`bench/memory.mjs: ${e.stack ?? e}`);
  exitCode = 2;
} finally {
  cleanup();
}

console.log(`\nmanila-gateway memory benchmark: \`${command}\` (results in ${outDir})\n`);
console.log('| part | figure | value | criterion | verdict |\n|---|---|--:|---|---|');
for (const r of rows) console.log(`| ${r.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`);
console.log('\nRSS = VmRSS of the daemon process from /proc/PID/status (MiB = 1024 KiB pages); VmHWM = its peak.');
if (problemsSeen.length) console.log(`\ndaemon log: ${problemsSeen.join('; ')}`);
process.exitCode = exitCode;
