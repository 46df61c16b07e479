#!/usr/bin/env node
// NFSv3 data-path benchmark (issue 6): manila-gateway against NFS-Ganesha 4.3 (FSAL VFS) on the same
// local directory, both on 127.0.0.1, driven by bench/nfsload (a C load generator on libnfs's raw
// async RPC API, built here from bench/nfsload.c), plus the loopback TCP ceiling from iperf3.
//
//   npm run bench -- [--rounds 3] [--seconds 10] [--warmup 2] [--qd 32] [--conns 1]
//                    [--workloads seqread,randread,getattr,lookup,readdirplus,create-remove,seqwrite]
//                    [--file-size 1G] [--iperf-seconds 5] [--no-ganesha] [--no-iperf]
//
// Needs: gcc and libnfs-dev (to build nfsload), nfs-ganesha + nfs-ganesha-vfs and rpcbind (for the
// comparison), iperf3 (for the ceiling). On Debian 12:
//   apt-get install -y --no-install-recommends libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind iperf3
//
// Each workload runs against both servers in turn (ours, ganesha, ours, ganesha, ... --rounds times).
// One JSON line per run on stdout (nfsload's figures plus server_cpu: the cores the server used),
// then per workload the median ops/s and MiB/s, the median of the runs' p99, and ours/Ganesha, as a
// text table and as a markdown table. Figures are from this machine at this moment: compare ratios
// from the same run, not absolute numbers across machines.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildNfsload, childRegistry, fmt, freePort, median, nfsload, root, sleep, startGateway, stopChild, which } from './common.mjs';
const ALL = ['seqread', 'randread', 'getattr', 'lookup', 'readdirplus', 'create-remove', 'seqwrite'];
const INSTALL = 'apt-get install -y --no-install-recommends libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind iperf3';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    qd: { type: 'string', default: '32' },
    conns: { type: 'string', default: '1' },
    workloads: { type: 'string', default: ALL.join(',') },
    'file-size': { type: 'string', default: '1G' },
    'iperf-seconds': { type: 'string', default: '5' },
    'no-ganesha': { type: 'boolean', default: false },
    'no-iperf': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 20).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const ROUNDS = Number(opts.rounds);
const workloads = opts.workloads.split(',').map((w) => w.trim()).filter(Boolean);
for (const w of workloads) if (!ALL.includes(w)) fail(`unknown workload ${w} (known: ${ALL.join(', ')})`);

const say = (...a) => console.error('[bench]', ...a);
function fail(message) {
  console.error(`bench/compare.mjs: ${message}`);
  process.exit(2);
}

// ---- prerequisites and the load generator ---------------------------------------------------

try {
  buildNfsload(say);
} catch (err) {
  fail(err.message);
}
if (!existsSync(path.join(root, 'dist', 'cli.js'))) fail('dist/ is missing: build the daemon first (npm run build)');

let useGanesha = !opts['no-ganesha'];
const ganeshaBin = which('ganesha.nfsd');
const vfsFsal = ['/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so', '/usr/lib/ganesha/libfsalvfs.so', '/usr/lib64/ganesha/libfsalvfs.so'].find(existsSync);
const rpcbindBin = which('rpcbind');
if (useGanesha && (!ganeshaBin || !vfsFsal || !rpcbindBin)) {
  say(`NOT comparing with Ganesha: missing ${[!ganeshaBin && 'nfs-ganesha', !vfsFsal && 'nfs-ganesha-vfs', !rpcbindBin && 'rpcbind'].filter(Boolean).join(', ')}; install with\n  ${INSTALL}`);
  useGanesha = false;
}
const iperfBin = opts['no-iperf'] ? null : which('iperf3');
if (!opts['no-iperf'] && !iperfBin) say(`no iperf3: the loopback ceiling is skipped; install with\n  ${INSTALL}`);

// ---- processes -------------------------------------------------------------------------------

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-bench-compare-'));
const exportsDir = path.join(dir, 'exports');
const exportDir = path.join(exportsDir, 'bench');
mkdirSync(exportDir, { recursive: true });
const { track, killAll } = childRegistry();
let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  killAll();
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(130); });

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.setTimeout(1000, () => { s.destroy(); resolve(false); });
  });
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
function cpuSeconds(pid) { // utime + stime of the whole process (all threads)
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15
  } catch { return NaN; }
}

let startedRpcbind = null;
async function ensureRpcbind() {
  if (await canConnect(111)) { say('rpcbind is already running: using it'); return; }
  // note: `rpcbind -h 127.0.0.1` crashes here (glibc "double free detected") in Debian 12's rpcbind 1.2.6
  startedRpcbind = track(spawn(rpcbindBin, ['-f', '-w'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  startedRpcbind.stderr.on('data', (c) => { err += c; });
  for (let i = 0; i < 50; i++) {
    if (await canConnect(111)) { say(`started rpcbind -f -w (pid ${startedRpcbind.pid})`); return; }
    if (startedRpcbind.exitCode !== null || startedRpcbind.signalCode !== null) break;
    await sleep(100);
  }
  throw new Error(`rpcbind did not start: ${err.trim() || 'no output'}`);
}

async function startGanesha() {
  await ensureRpcbind();
  const gdir = path.join(dir, 'ganesha');
  mkdirSync(gdir, { recursive: true });
  const nfsPort = await freePort();
  let mntPort = await freePort();
  while (mntPort === nfsPort) mntPort = await freePort();
  const conf = path.join(gdir, 'ganesha.conf');
  const log = path.join(gdir, 'ganesha.log');
  writeFileSync(conf, `
NFS_CORE_PARAM {
  Bind_addr = 127.0.0.1;
  Protocols = 3;
  NFS_Port = ${nfsPort};
  MNT_Port = ${mntPort};
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}
NFSV4 { Graceless = true; }
NFS_KRB5 { Active_krb5 = false; }
LOG { Default_Log_Level = EVENT; }
EXPORT {
  Export_Id = 1;
  Path = ${exportDir};
  Pseudo = /bench;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 3;
  Transports = TCP;
  SecType = sys;
  FSAL { Name = VFS; }
}
`);
  const child = track(spawn(ganeshaBin, ['-F', '-f', conf, '-L', log, '-p', path.join(gdir, 'ganesha.pid')], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { out += c; });
  const logText = () => (existsSync(log) ? readFileSync(log, 'utf8') : '(no log)') + (out ? `\noutput: ${out}` : '');
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`ganesha.nfsd exited (${child.exitCode ?? child.signalCode}):\n${logText()}`);
    if (existsSync(log) && readFileSync(log, 'utf8').includes('NFS SERVER INITIALIZED') && (await canConnect(nfsPort)) && (await canConnect(mntPort))) {
      return { name: 'ganesha', child, pid: child.pid, nfsPort, mntPort, log, url: `nfs://127.0.0.1${exportDir}?version=3&nfsport=${nfsPort}&mountport=${mntPort}` };
    }
    await sleep(100);
  }
  await stopChild(child);
  throw new Error(`ganesha.nfsd not serving after 30 s:\n${logText()}`);
}

async function iperfCeiling() {
  const port = await freePort();
  const server = track(spawn(iperfBin, ['-s', '-B', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' }));
  try {
    let last = '';
    for (let attempt = 0; attempt < 10; attempt++) {
      await sleep(300);
      const r = spawnSync(iperfBin, ['-c', '127.0.0.1', '-p', String(port), '-t', String(opts['iperf-seconds']), '-J'], { encoding: 'utf8', timeout: 60_000 });
      let j;
      try { j = JSON.parse(r.stdout); } catch { last = r.stderr || r.stdout; continue; }
      if (j.error) { last = j.error; continue; }
      return j.end.sum_received.bits_per_second / 8 / 1048576;
    }
    throw new Error(last);
  } finally {
    await stopChild(server, 2000);
  }
}

// ---- running nfsload ---------------------------------------------------------------------------

// Workloads that read nfsload's --file (bigfile). Its pages must be in the page cache before each
// run: on a VM that reclaims idle page cache (here DAMON evicts pages unused for a minute), the file
// written by `prepare` is mostly gone by the time the read workloads come, and the first server to
// run would pay the disk reads and warm the file for the second (randread p99 about 2x).
const READS_BIGFILE = new Set(['seqread', 'randread']);
const warmBuf = Buffer.allocUnsafe(1 << 20);
function warmBigfile() {
  const t0 = performance.now();
  const fd = openSync(path.join(exportDir, 'bigfile'), 'r');
  let total = 0;
  try {
    for (let n; (n = readSync(fd, warmBuf, 0, warmBuf.length, total)) > 0;) total += n;
  } finally {
    closeSync(fd);
  }
  return { MiB: total / 1048576, seconds: (performance.now() - t0) / 1000 };
}

function runLoad(server, workload, round) {
  const args = ['run', '--url', server.url, '--workload', workload, '--seconds', opts.seconds, '--warmup', opts.warmup,
    '--qd', opts.qd, '--conns', opts.conns, '--label', server.name, '--wfile', `seqwrite-${server.name}.dat`];
  return new Promise((resolve) => {
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    const child = track(spawn(nfsload, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { err += c; });
    const limit = setTimeout(() => child.kill('SIGKILL'), (Number(opts.seconds) + Number(opts.warmup) + 120) * 1000);
    // 'close', not 'exit': the result line may still sit in the stdout pipe when the process has
    // exited (a soak lost one run's output that way).
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      const wall = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(server.pid) - cpu0;
      let rec;
      try { rec = JSON.parse(out.trim().split('\n').pop()); } catch { rec = { workload, label: server.name, ops: 0, ops_per_s: 0, MiB_per_s: 0, errors: 1, first_error: `nfsload ${code ?? signal}: ${err.trim() || out.trim()}` }; }
      rec.round = round;
      // cores the server used over nfsload's whole life (setup + warm-up + run + drain)
      rec.server_cpu = Number((cpu / wall).toFixed(2));
      if (err.trim() && !rec.first_error) rec.stderr = err.trim();
      if (workload === 'seqwrite' && rec.seed && rec.written_extent) {
        const file = path.join(exportDir, `seqwrite-${server.name}.dat`);
        const c = spawnSync(nfsload, ['check-file', '--path', file, '--seed', rec.seed, '--length', String(rec.written_extent)], { encoding: 'utf8' });
        rec.on_disk_ok = c.status === 0;
        if (c.status !== 0) { rec.errors = (rec.errors ?? 0) + 1; rec.first_error ??= `file on disk: ${c.stdout.trim()} ${c.stderr.trim()}`; }
      }
      resolve(rec);
    });
  });
}

// ---- main ----------------------------------------------------------------------------------------

const servers = [];
let ceiling = NaN;
try {
  say(`preparing ${exportDir}: ${opts['file-size']} file, a 10,000-entry directory, an empty directory`);
  execFileSync(nfsload, ['prepare', '--root', exportDir, '--file-size', opts['file-size'], '--dir-entries', '10000'], { stdio: ['ignore', 'ignore', 'inherit'] });
  // the Ganesha export is the directory itself: it must be readable by the squashed/anonymous user too
  execFileSync('chmod', ['0755', dir, exportsDir, exportDir]);

  if (iperfBin) {
    try {
      ceiling = await iperfCeiling();
      say(`loopback TCP ceiling (iperf3, 1 stream, ${opts['iperf-seconds']} s): ${fmt(ceiling)} MiB/s`);
      console.log(JSON.stringify({ bench: 'iperf3', streams: 1, seconds: Number(opts['iperf-seconds']), MiB_per_s: Number(ceiling.toFixed(1)) }));
    } catch (e) {
      say(`iperf3 failed: ${e.message}`);
    }
  }

  servers.push({ name: 'ours', ...(await startGateway({ dir, exportsDir, track })) });
  say(`our daemon: pid ${servers[0].pid}, port ${servers[0].port}`);
  if (useGanesha) {
    try {
      const g = await startGanesha();
      servers.push(g);
      say(`ganesha: pid ${g.pid}, NFS port ${g.nfsPort}, MOUNT port ${g.mntPort}`);
    } catch (e) {
      say(`GANESHA CANNOT RUN HERE, comparing nothing: ${e.message}`);
    }
  }

  const results = [];
  for (const w of workloads) {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of servers) {
        if (s.child.exitCode !== null || s.child.signalCode !== null) {
          results.push({ workload: w, label: s.name, round, errors: 1, first_error: `${s.name} is not running (exited ${s.child.exitCode ?? s.child.signalCode})` });
          continue;
        }
        if (READS_BIGFILE.has(w)) {
          const warm = warmBigfile();
          say(`read bigfile through before ${w} (${fmt(warm.MiB)} MiB in ${fmt(warm.seconds, 2)} s)`);
        }
        const rec = await runLoad(s, w, round);
        results.push(rec);
        console.log(JSON.stringify(rec));
        say(`${w} round ${round} ${s.name}: ${fmt(rec.ops_per_s)} ops/s ${fmt(rec.MiB_per_s, 1)} MiB/s p50/p90/p99/p99.9 ${rec.p50_us}/${rec.p90_us}/${rec.p99_us}/${rec.p999_us} us server_cpu ${rec.server_cpu}${rec.errors ? ` ERRORS ${rec.errors}: ${rec.first_error}` : ''}`);
        await sleep(500);
      }
    }
  }

  // ---- summary ----
  const rows = [];
  for (const w of workloads) {
    const pick = (name) => results.filter((r) => r.workload === w && r.label === name);
    const sum = (name) => {
      const rs = pick(name);
      return {
        ops: median(rs.map((r) => r.ops_per_s)), mib: median(rs.map((r) => r.MiB_per_s)), p50: median(rs.map((r) => r.p50_us)),
        p99: median(rs.map((r) => r.p99_us)), cpu: median(rs.map((r) => r.server_cpu)), errors: rs.reduce((a, r) => a + (r.errors ?? 0), 0),
        listings: median(rs.map((r) => r.listings_per_s)), n: rs.length,
      };
    };
    const o = sum('ours');
    const g = useGanesha && servers.length > 1 ? sum('ganesha') : null;
    // readdirplus: servers put different numbers of entries in a reply, so compare entries per second
    rows.push({ w, o, g, ratio: !g ? NaN : w === 'readdirplus' ? o.listings / g.listings : o.ops / g.ops });
  }
  const bytesWl = new Set(['seqread', 'seqwrite', 'randread']);
  const mibCell = (r, s) => (bytesWl.has(r.w) ? fmt(s.mib, 1) : r.w === 'readdirplus' ? `${fmt(s.listings, 1)} lst/s` : '-');
  // readdirplus: "lst/s" is listings' worth of entries per second (entries_per_s / 10,000); the ratio uses it
  const header = ['workload', 'ours ops/s', 'ours MiB/s', 'ours p99 us', 'ours cpu', 'ganesha ops/s', 'ganesha MiB/s', 'ganesha p99 us', 'ganesha cpu', 'ours/ganesha', 'errors o/g'];
  const body = rows.map((r) => [r.w, fmt(r.o.ops), mibCell(r, r.o), fmt(r.o.p99), fmt(r.o.cpu, 2),
    r.g ? fmt(r.g.ops) : 'n/a', r.g ? mibCell(r, r.g) : 'n/a', r.g ? fmt(r.g.p99) : 'n/a', r.g ? fmt(r.g.cpu, 2) : 'n/a',
    r.g ? fmt(r.ratio, 2) : 'n/a', `${r.o.errors}/${r.g ? r.g.errors : '-'}`]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => String(b[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padStart(widths[i])).join('  ');
  console.log(`\nmedians of ${ROUNDS} round(s), ${opts.seconds} s each after ${opts.warmup} s warm-up, qd ${opts.qd} x ${opts.conns} connection(s); cpu = server cores used`);
  console.log(line(header));
  for (const b of body) console.log(line(b));
  const sr = rows.find((r) => r.w === 'seqread');
  if (Number.isFinite(ceiling)) {
    console.log(`\nloopback TCP ceiling (iperf3, 1 stream): ${fmt(ceiling)} MiB/s`);
    if (sr) console.log(`seqread as % of it: ours ${fmt((100 * sr.o.mib) / ceiling, 1)}%${sr.g ? `, ganesha ${fmt((100 * sr.g.mib) / ceiling, 1)}%` : ''}`);
  }
  console.log(`\n| workload | ours ops/s | ours MiB/s | ours p99 µs | ours CPU | Ganesha ops/s | Ganesha MiB/s | Ganesha p99 µs | Ganesha CPU | ours/Ganesha |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|`);
  for (const b of body) console.log(`| ${b.slice(0, 10).join(' | ')} |`);
  if (Number.isFinite(ceiling)) {
    console.log(`| loopback TCP (iperf3, 1 stream) | | ${fmt(ceiling)} | | | | ${fmt(ceiling)} | | | |`);
    if (sr) console.log(`| seqread % of loopback | | ${fmt((100 * sr.o.mib) / ceiling, 1)}% | | | | ${sr.g ? `${fmt((100 * sr.g.mib) / ceiling, 1)}%` : 'n/a'} | | | |`);
  }
  console.log('\nops = RPCs (create-remove: CREATE and REMOVE each count); p99 = median of the rounds\' p99; CPU = server cores used;'
    + '\nreaddirplus: the MiB/s column is listings\' worth of entries per second (entries/s / 10,000), and the ratio uses it.');
  const errs = results.filter((r) => r.errors);
  if (errs.length) {
    console.log(`\n${errs.length} run(s) had errors:`);
    for (const r of errs) console.log(`  ${r.workload} ${r.label} round ${r.round}: ${r.errors} error(s), first: ${r.first_error}`);
    process.exitCode = 1;
  }
} catch (e) {
  console.error(`bench/compare.mjs: ${e.stack ?? e}`);
  process.exitCode = 2;
} finally {
  for (const s of [...servers].reverse()) await stopChild(s.child);
  if (startedRpcbind) {
    await stopChild(startedRpcbind, 5000);
    say('stopped the rpcbind this script started');
  }
  cleanup();
}
