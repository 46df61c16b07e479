// Test helper: the Linux kernel NFS client in a QEMU guest (../shared/vm/run-guest.sh, see its README).
//
//   import { guestAvailable, guestSkipReason, runGuest, guestChecks } from '../helpers/guest.js';
//   t.test('battery', { skip: guestSkipReason() }, async (t) => {
//     const d = await startDaemon({ shares: [{ id: 'demo' }] });
//     t.teardown(() => d.stop());
//     const g = await runGuest({ port: d.port, export: '/demo', script: 'test/vm/battery.sh' });
//     t.equal(g.code, 0, g.output);
//   });
//
// A guest run boots, mounts 10.0.2.2:<export> (the host's 127.0.0.1), runs the script as root under
// busybox sh and powers off: about 10-60 s under TCG. The one-time guest build (build-guest.sh, which
// apt-gets qemu-system-x86, cpio and kmod and downloads a kernel package) needs root and the network.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './daemon.js';

export const runGuestPath = path.resolve(repoRoot, '../shared/vm/run-guest.sh');

/** Whether ../shared/vm/run-guest.sh exists next to the repository. */
export function guestAvailable(): boolean {
  return existsSync(runGuestPath);
}

/** false when the guest is available, else the reason to skip (for tap's { skip } option). */
export function guestSkipReason(): string | false {
  return guestAvailable() ? false : `no guest runner: ${runGuestPath} is absent (the kernel-client tests need ../shared/vm)`;
}

export interface GuestOptions {
  /** NFS port on the host (also the MOUNT port unless mountport is given) */
  port: number;
  mountport?: number;
  /** the export path to mount, e.g. "/demo" (default "/"; ignored with noMount) */
  export?: string;
  /** the script to run in the guest, relative to the repository root or absolute */
  script: string;
  /** arguments after the mount point: the script runs as `sh SCRIPT MOUNTPOINT ARGS...` */
  args?: string[];
  /** extra mount options, e.g. "actimeo=0,wsize=65536" */
  opts?: string;
  /** mount nothing ($1 is empty); the script mounts itself with $NFS_OPTS */
  noMount?: boolean;
  /** files copied into the guest as /run/add/<name> */
  add?: string[];
  /** limit for boot + mount + script in seconds (run-guest.sh --timeout; default 600) */
  timeoutS?: number;
  /** extra environment for run-guest.sh (GUEST_MEM, GUEST_DIR, ...) */
  env?: NodeJS.ProcessEnv;
  /** called with every chunk of output as it arrives (e.g. to stream it to t.comment) */
  onOutput?: (chunk: string) => void;
}

export interface GuestResult {
  /** run-guest.sh's exit code: the script's, or 99 mount failed, 98 umount failed, 124 timeout, 125 crash, 3 build */
  code: number | null;
  /** stdout and stderr of run-guest.sh, interleaved as they came: the guest's console plus GUEST lines */
  output: string;
}

/** Runs one guest. Never rejects for a failing script; rejects only when run-guest.sh cannot start. */
export function runGuest(o: GuestOptions): Promise<GuestResult> {
  const timeoutS = o.timeoutS ?? 600;
  const args = [runGuestPath, '--timeout', String(timeoutS), '--script', path.resolve(repoRoot, o.script)];
  if (o.noMount) args.push('--no-mount');
  args.push('--port', String(o.port));
  if (o.mountport !== undefined) args.push('--mountport', String(o.mountport));
  if (!o.noMount && o.export !== undefined) args.push('--export', o.export);
  if (o.opts) args.push('--opts', o.opts);
  for (const f of o.add ?? []) args.push('--add', path.resolve(repoRoot, f));
  if (o.args?.length) args.push('--', ...o.args);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, {
      cwd: repoRoot,
      env: { ...process.env, ...(o.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const take = (b: Buffer) => {
      const s = b.toString('utf8');
      output += s;
      o.onOutput?.(s);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    // run-guest.sh enforces its own limit and always stops QEMU; this is only a backstop for a hung
    // build (not counted in --timeout). SIGTERM lets it kill QEMU and report.
    const backstop = setTimeout(() => child.kill('SIGTERM'), (timeoutS + 600) * 1000);
    child.on('error', (e) => {
      clearTimeout(backstop);
      reject(new Error(`cannot run ${runGuestPath}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(backstop);
      resolve({ code, output });
    });
  });
}

/**
 * The checks of a battery-style script: lines "ok   NAME" and "FAIL NAME[: what went wrong]" (the
 * whole text after FAIL is the name: check names may hold ": " themselves).
 */
export function guestChecks(output: string): { ok: boolean; name: string }[] {
  const checks: { ok: boolean; name: string }[] = [];
  for (const line of output.split('\n')) {
    const m = /^(ok {3}|FAIL )(.*)$/.exec(line);
    if (m) checks.push({ ok: m[1] !== 'FAIL ', name: m[2]!.trim() });
  }
  return checks;
}

/** The last "N passed, N failed" line of a battery-style script, or null. */
export function guestSummary(output: string): { passed: number; failed: number } | null {
  const all = [...output.matchAll(/^(\d+) passed, (\d+) failed\s*$/gm)];
  const m = all[all.length - 1];
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : null;
}
