// Pieces shared by the bench scripts that start our daemon on 127.0.0.1 and drive it with
// bench/nfsload: building nfsload, a child-process registry that is emptied on exit, starting the
// daemon over a local backend, and reading a process's memory from /proc. Importing this module has
// no side effects; bench/compare.mjs and bench/memory.mjs both use it.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { outputLines } from './lines.mjs';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..');
export const cli = path.join(root, 'bin', 'manila-gateway.cjs');
export const nfsload = path.join(here, 'build', 'nfsload');
/** The V8 flags the daemon runs with (bin/node-flags.cjs). */
export const daemonNodeFlags = createRequire(import.meta.url)(path.join(root, 'bin', 'node-flags.cjs'));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || null;

/** Builds bench/build/nfsload from bench/nfsload.c unless it is up to date; throws why not. */
export function buildNfsload(say = () => {}) {
  const src = path.join(here, 'nfsload.c');
  if (existsSync(nfsload) && statSync(nfsload).mtimeMs >= statSync(src).mtimeMs) return nfsload;
  const cc = which('cc') ?? which('gcc');
  if (!cc) throw new Error('no C compiler (cc/gcc) to build bench/nfsload.c: install it with\n  apt-get install -y --no-install-recommends gcc libc6-dev libnfs-dev');
  if (!existsSync('/usr/include/nfsc/libnfs-raw.h')) throw new Error('libnfs-dev is missing (no /usr/include/nfsc/libnfs-raw.h): install it with\n  apt-get install -y --no-install-recommends libnfs-dev');
  mkdirSync(path.dirname(nfsload), { recursive: true });
  const r = spawnSync(cc, ['-O2', '-Wall', '-o', nfsload, src, '-lnfs'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building nfsload failed:\n${r.stderr}`);
  say(`built ${path.relative(root, nfsload)}`);
  return nfsload;
}

/** Children started through track() are SIGKILLed by killAll() (call it from 'exit' and signal handlers). */
export function childRegistry() {
  const children = new Set();
  return {
    children,
    track(child) {
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
    killAll() {
      for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
    },
  };
}

export const running = (child) => child.exitCode === null && child.signalCode === null;

/** SIGTERM, then SIGKILL after timeoutMs; resolves once the child has exited. */
export function stopChild(child, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    if (!running(child)) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/**
 * Starts `manila-gateway serve` on 127.0.0.1 (TCP port 0) with a local backend over exportsDir and
 * one share `bench` (exportsDir/bench) granted rw, squash none, to guest tcp 127.0.0.1; config and
 * state go under dir. metrics: also serve the metrics endpoint on 127.0.0.1 port 0. Resolves once
 * the daemon logs 'ready', with { child, pid, port, metricsPort, url, output, problems }: output
 * keeps the first 200 lines, problems every warn-or-worse line (up to 1000).
 */
export async function startGateway({ dir, exportsDir, track, metrics = false, logLevel = 'info', extraConfig = [] }) {
  const stateDir = path.join(dir, 'state');
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const config = path.join(dir, 'gateway.yaml');
  writeFileSync(config, [
    'node_id: bench',
    `state_dir: ${stateDir}`,
    `log_level: ${logLevel}`,
    'listen: { tcp: [{ host: 127.0.0.1, port: 0 }] }',
    ...(metrics ? ['metrics: { host: 127.0.0.1, port: 0 }'] : []),
    `backends: [{ id: local1, type: local, path: ${exportsDir} }]`,
    'grants: [{ id: g1, share: bench, backend: local1, path: bench, guest: { tcp: 127.0.0.1 }, access: rw, squash: none }]',
    ...extraConfig,
    '',
  ].join('\n'));
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // MANILA_BENCH_NODE_FLAGS: more V8/Node flags for our daemon, to compare settings (A/B runs)
  const extraFlags = (process.env.MANILA_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const child = track(spawn(process.execPath, [...daemonNodeFlags, ...extraFlags, cli, 'serve', '--config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const output = [];
  const problems = [];
  return await new Promise((resolve, reject) => {
    let port;
    let metricsPort;
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`our daemon is not ready after 60 s:\n${output.join('\n')}`)), 60_000);
    child.stderr.on('data', (c) => { const l = `stderr: ${String(c).trimEnd()}`; if (output.length < 200) output.push(l); if (problems.length < 1000) problems.push(l); });
    child.stdout.on('data', outputLines((line, rec) => {
      if (output.length < 200) output.push(line);
      if (!rec) return;
      if (rec.level >= 40 && problems.length < 1000) problems.push(line);
      if (rec.msg === 'listening' && rec.transport === 'tcp') port = rec.port;
      if (rec.msg === 'metrics endpoint listening') metricsPort = rec.port;
      if (rec.msg === 'ready' && !ready) {
        ready = true;
        clearTimeout(timer);
        resolve({ child, pid: child.pid, port, metricsPort, config, output, problems, url: `nfs://127.0.0.1/bench?version=3&nfsport=${port}&mountport=${port}` });
      }
    }));
    child.once('exit', (code, signal) => { clearTimeout(timer); if (!ready) reject(new Error(`our daemon exited (${code ?? signal}) before ready:\n${output.join('\n')}`)); });
  });
}

/** /proc/PID/status memory fields in KiB (VmRSS, VmHWM, RssAnon, RssFile, RssShmem, VmSize) and Threads; null when gone. */
export function procStatus(pid) {
  let text;
  try { text = readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { return null; }
  const out = {};
  for (const key of ['VmRSS', 'VmHWM', 'RssAnon', 'RssFile', 'RssShmem', 'VmSize', 'Threads']) {
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+)`, 'm'));
    out[key] = m ? Number(m[1]) : NaN;
  }
  return out;
}

/** The soft and hard "Max open files" of a process (from /proc/PID/limits). */
export function openFileLimit(pid = 'self') {
  try {
    const m = readFileSync(`/proc/${pid}/limits`, 'utf8').match(/^Max open files\s+(\S+)\s+(\S+)/m);
    const n = (s) => (s === 'unlimited' ? Infinity : Number(s));
    return m ? { soft: n(m[1]), hard: n(m[2]) } : null;
  } catch { return null; }
}

export function openFds(pid = 'self') {
  try { return readdirSync(`/proc/${pid}/fd`).length; } catch { return NaN; }
}

/** GET http://127.0.0.1:port/metrics and return the Prometheus text (rejects after 10 s). */
export async function scrapeMetrics(port) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`metrics: HTTP ${res.status}`);
  return await res.text();
}

/** One sample's value from Prometheus text: name plus exact label text, e.g. ('x', '{transport="tcp"}'). */
export function metricValue(text, name, labels = '') {
  const want = `${name}${labels} `;
  for (const line of text.split('\n')) if (line.startsWith(want)) return Number(line.slice(want.length).trim().split(' ')[0]);
  return NaN;
}

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
export const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
