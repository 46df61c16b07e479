// Test helper: runs the real daemon (`manila-gateway serve --config FILE`) on a temporary directory.
//
//   import t from 'tap';
//   import { startDaemon, nfsUrl, run } from '../helpers/daemon.js';
//
//   t.test('something over NFS', async (t) => {
//     const d = await startDaemon({ shares: [{ id: 'demo' }] });
//     t.teardown(() => d.stop());              // always: stops the daemon and removes its temp dir
//     const r = await run('nfs-ls', [nfsUrl(d.port, 'demo')], { timeoutMs: 30_000 });
//     t.equal(r.code, 0, r.stderr);
//   });
//
// The daemon must be built first (`npm run build`, which `npm install` runs through "prepare").
// Set KEEP_TEST_DIRS=1 to keep the temporary directories (their path is in the error or t.comment).
// Daemons still running when the test process exits are killed and their directories removed.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

/** The repository root (this file is test/helpers/daemon.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The daemon's entry point: the package's bin, or $MANILA_GATEWAY_CLI (e.g. an installed build). */
export const cliPath = process.env.MANILA_GATEWAY_CLI
  ? path.resolve(process.env.MANILA_GATEWAY_CLI)
  : path.join(repoRoot, 'bin', 'manila-gateway.cjs');

/** The V8 flags the daemon runs with, as the bin's first line and `npm start` give them (bin/node-flags.cjs). */
export const daemonNodeFlags: readonly string[] = createRequire(import.meta.url)(path.join(repoRoot, 'bin', 'node-flags.cjs')) as string[];

/**
 * The command that runs the daemon with `args` as an operator would (with the node flags of the
 * bin's first line). The test runner hands every child it spawns a NODE_OPTIONS with its own
 * loaders (even when given an explicit environment); `env -u` drops it, so the daemon does not
 * load them.
 */
export function daemonCommand(args: string[]): [string, string[]] {
  return ['/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, ...daemonNodeFlags, cliPath, ...args]];
}

/** A grant's guest identity, as in the config (DESIGN.md). */
export type GuestId = { tcp: string } | { cid: number } | { vm: string };

/**
 * A share to export: its directory exportsDir/<path ?? id> is created, and a grant for it is written.
 * Defaults: granted to { tcp: 127.0.0.1 }, rw, squash none, directory mode 0755 (root's).
 */
export interface ShareSpec {
  id: string;
  path?: string;
  guest?: GuestId;
  access?: 'rw' | 'ro';
  squash?: 'none' | 'root' | 'all';
  anon_uid?: number;
  anon_gid?: number;
  /** mode of the share's directory (default 0o755); e.g. 0o777 for a squashed share */
  mode?: number;
  grantId?: string;
}

/** A raw grant object, written to the config as it is (backend defaults to local1). */
export interface GrantSpec {
  id: string;
  share: string;
  backend?: string;
  path: string;
  guest: GuestId;
  access: 'rw' | 'ro';
  squash: 'none' | 'root' | 'all';
  anon_uid?: number;
  anon_gid?: number;
  [key: string]: unknown;
}

export interface StartOptions {
  /** shares to create and grant; default [{ id: 'demo' }] when neither shares nor grants is given */
  shares?: ShareSpec[];
  /** more grants, verbatim; their directories (under exportsDir) are created too */
  grants?: GrantSpec[];
  /** more backends, verbatim, after the generated local1 */
  backends?: Record<string, unknown>[];
  /** merged over the generated config's top level (e.g. { metrics: {...} } or a different listen) */
  extraConfig?: Record<string, unknown>;
  /** how long to wait for the "ready" line (default 20 s) */
  readyTimeoutMs?: number;
  /** extra environment for the daemon */
  env?: NodeJS.ProcessEnv;
}

export interface Listening {
  transport: string;
  host?: string;
  port?: number;
  [key: string]: unknown;
}

export interface Daemon {
  /** the first TCP port the daemon listens on (PORTMAP, MOUNT and NFS) */
  port: number;
  /** every "listening" line the daemon logged */
  listening: Listening[];
  dir: string;
  /** the local backend's path: a share `id` lives in exportsDir/<path> */
  exportsDir: string;
  stateDir: string;
  configPath: string;
  pid: number;
  /** SIGTERM, SIGKILL after 5 s; then removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** resolves with how the process ended (does not stop it) */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** everything the daemon wrote so far, one entry per line ("stderr: " prefixed for stderr) */
  logs(): string[];
  /** the parsed pino lines of stdout */
  jsonLogs(): Record<string, unknown>[];
}

const live = new Set<{ child: ChildProcess; dir: string }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const d of live) {
      try {
        d.child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
      if (!process.env.KEEP_TEST_DIRS) rmSync(d.dir, { recursive: true, force: true });
    }
  });
}

/**
 * A 'data' listener for a child's output: calls `onLine` once per complete line, with the line
 * parsed when it is a JSON object (pino's lines), undefined otherwise.
 */
export function outputLines(onLine: (line: string, record: Record<string, unknown> | undefined) => void): (chunk: Buffer) => void {
  let rest = '';
  return (chunk) => {
    rest += chunk.toString('utf8');
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        record = undefined;
      }
      onLine(line, record && typeof record === 'object' ? (record as Record<string, unknown>) : undefined);
    }
  };
}

export async function startDaemon(opts: StartOptions = {}): Promise<Daemon> {
  if (!existsSync(cliPath)) {
    throw new Error(`${cliPath} is missing: build the daemon first (npm run build)`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'manila-gw-test-'));
  const exportsDir = path.join(dir, 'exports');
  const stateDir = path.join(dir, 'state');
  const configPath = path.join(dir, 'config.yaml');
  mkdirSync(exportsDir, { mode: 0o755 });
  chmodSync(exportsDir, 0o755);
  mkdirSync(stateDir, { mode: 0o700 });

  const shares = opts.shares ?? (opts.grants ? [] : [{ id: 'demo' }]);
  const grants: GrantSpec[] = [];
  for (const s of shares) {
    const g: GrantSpec = {
      id: s.grantId ?? `g-${s.id}`,
      share: s.id,
      backend: 'local1',
      path: s.path ?? s.id,
      guest: s.guest ?? { tcp: '127.0.0.1' },
      access: s.access ?? 'rw',
      squash: s.squash ?? 'none',
    };
    if (s.anon_uid !== undefined) g.anon_uid = s.anon_uid;
    if (s.anon_gid !== undefined) g.anon_gid = s.anon_gid;
    grants.push(g);
    makeShareDir(exportsDir, g.path, s.mode ?? 0o755);
  }
  for (const g of opts.grants ?? []) {
    grants.push({ backend: 'local1', ...g });
    makeShareDir(exportsDir, g.path, 0o755);
  }
  const config: Record<string, unknown> = {
    node_id: 'test',
    state_dir: stateDir,
    listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
    backends: [{ id: 'local1', type: 'local', path: exportsDir }, ...(opts.backends ?? [])],
    grants,
    ...(opts.extraConfig ?? {}),
  };
  writeFileSync(configPath, YAML.stringify(config));

  const child = spawn(...daemonCommand(['serve', '--config', configPath]), {
    cwd: repoRoot,
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const entry = { child, dir };
  live.add(entry);
  installExitHook();

  const lines: string[] = [];
  const json: Record<string, unknown>[] = [];
  const listening: Listening[] = [];
  let onLine: ((rec: Record<string, unknown>) => void) | undefined;
  const splitter = (prefix: string, parse: boolean) =>
    outputLines((line, record) => {
      lines.push(prefix + line);
      if (!parse || !record) return;
      json.push(record);
      onLine?.(record);
    });
  child.stdout!.on('data', splitter('', true));
  child.stderr!.on('data', splitter('stderr: ', false));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(entry);
      resolve({ code, signal });
    });
  });
  // a spawn failure (no node?) is reported through 'error' and then 'exit' (or not at all)
  const spawnError = new Promise<Error>((resolve) => child.on('error', resolve));

  let stopped: Promise<void> | undefined;
  const removeDir = () => {
    if (!process.env.KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  };
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await Promise.race([exited, spawnError]);
        clearTimeout(timer);
      }
      removeDir();
    })();
    return stopped;
  };
  const output = () => `config ${configPath}:\n${YAML.stringify(config)}\noutput:\n${lines.join('\n')}`;

  const timeoutMs = opts.readyTimeoutMs ?? 20_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`daemon not ready after ${timeoutMs} ms\n${output()}`)),
        timeoutMs,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        onLine = undefined;
        if (err) reject(err);
        else resolve();
      };
      onLine = (rec) => {
        if (rec.msg === 'listening') listening.push(rec as Listening);
        if (rec.msg === 'ready') {
          if (!listening.some((l) => l.transport === 'tcp' && typeof l.port === 'number')) {
            done(new Error(`daemon ready without a "listening" tcp line with a port\n${output()}`));
          } else done();
        }
      };
      void exited.then(({ code, signal }) =>
        // let the pipes drain so that the output holds the daemon's last words
        setTimeout(() => done(new Error(`daemon exited (code ${code}, signal ${signal}) before ready\n${output()}`)), 50),
      );
      void spawnError.then((e) => done(new Error(`cannot start the daemon: ${e.message}\n${output()}`)));
    });
  } catch (e) {
    await stop();
    throw e;
  }
  const tcp = listening.find((l) => l.transport === 'tcp' && typeof l.port === 'number')!;
  return {
    port: tcp.port as number,
    listening,
    dir,
    exportsDir,
    stateDir,
    configPath,
    pid: child.pid!,
    stop,
    exited,
    logs: () => [...lines],
    jsonLogs: () => [...json],
  };
}

function makeShareDir(exportsDir: string, rel: string, mode: number): void {
  const p = path.resolve(exportsDir, rel);
  if (p !== exportsDir && !p.startsWith(exportsDir + path.sep)) return; // a test of a bad path: leave it
  mkdirSync(p, { recursive: true });
  chmodSync(p, mode);
}

/**
 * A libnfs URL for a share served on one port: nfs://127.0.0.1/<share>[/<path>]?version=3&nfsport=P&mountport=P
 * libnfs 4/5 mount the URL's directory part as the export: nfs-ls mounts the whole path, nfs-cat and
 * nfs-cp all but the last component. `params` adds URL arguments (uid, gid, ...).
 */
export function nfsUrl(port: number, share: string, p?: string, params: Record<string, string | number> = {}): string {
  const where = [share, p ?? ''].map((x) => x.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/');
  const q = new URLSearchParams({ version: '3', nfsport: String(port), mountport: String(port) });
  for (const [k, v] of Object.entries(params)) q.set(k, String(v));
  const slash = where && (p || share).endsWith('/') ? '/' : ''; // kept: nfs://H/demo/../ is a test case
  return `nfs://127.0.0.1/${where}${slash}?${q.toString()}`;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a program (never through a shell) and collects its output. Resolves on exit, also on a non-zero
 * code; a program that outlives timeoutMs (default 60 s) is killed with SIGKILL (timedOut: true).
 * Rejects only when the program cannot be started (e.g. ENOENT), naming it.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}
