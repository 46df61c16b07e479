// The Linux kernel NFS client against the daemon, in a QEMU guest (../shared/vm): three guest boots.
//   1. test/vm/battery.sh on a rw share, squash none (file operations and POSIX permissions)
//   2. test/vm/squash.sh on a share with squash: root
//   3. test/vm/refused.sh: a share granted to another guest cannot be mounted (a granted one can,
//      and so can a directory below its root)
// Each boot takes about 10-60 s under TCG; the first run also builds the guest (about 5-20 s).
import t, { type Test } from 'tap';
import { readdirSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { runGuest, guestSkipReason, guestChecks, guestSummary, type GuestResult } from '../helpers/guest.js';

const skip = guestSkipReason();
const GUEST_LIMIT_S = 600;

/** One tap assertion per check line, then the script's summary and exit code. */
function report(t: Test, g: GuestResult, what: string): void {
  for (const c of guestChecks(g.output)) t.ok(c.ok, c.name);
  const s = guestSummary(g.output);
  if (s) t.comment(`${what}: ${s.passed} passed, ${s.failed} failed`);
  t.ok(s, `${what} printed its "N passed, N failed" line`);
  t.equal(s?.failed, 0, `${what}: no check failed`);
  t.equal(g.code, 0, `${what} exits 0 in the guest (GUEST-EXIT ${g.code})`, { output: tail(g.output, 60) });
}

/** what a script left in a directory: names with type, size and mtime, for the failure message */
function leftovers(dir: string): string[] {
  return readdirSync(dir).map((n) => {
    const st = lstatSync(path.join(dir, n));
    return `${n} (${st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other'}, ${st.size} bytes, mtime ${st.mtime.toISOString()})`;
  });
}

function tail(s: string, n: number): string {
  return s.split('\n').slice(-n).join('\n');
}

async function daemonFor(t: Test, shares: Parameters<typeof startDaemon>[0]): Promise<Daemon> {
  const d = await startDaemon(shares);
  t.teardown(() => d.stop());
  return d;
}

t.test('kernel client: battery on a rw share (squash none)', { skip, timeout: (GUEST_LIMIT_S + 120) * 1000 }, async (t) => {
  const d = await daemonFor(t, { shares: [{ id: 'demo' }] });
  const g = await runGuest({ port: d.port, export: '/demo', script: 'test/vm/battery.sh', timeoutS: GUEST_LIMIT_S });
  report(t, g, 'battery.sh');
  t.same(leftovers(path.join(d.exportsDir, 'demo')), [], 'the battery left nothing behind');
});

t.test('kernel client: squash root', { skip, timeout: (GUEST_LIMIT_S + 120) * 1000 }, async (t) => {
  // the share's root is 0777 so that the squashed root (65534) can create its work dir
  const d = await daemonFor(t, { shares: [{ id: 'sq', squash: 'root', mode: 0o777 }] });
  const g = await runGuest({ port: d.port, export: '/sq', script: 'test/vm/squash.sh', args: ['65534', '65534'], timeoutS: 300 });
  report(t, g, 'squash.sh');
  t.same(leftovers(path.join(d.exportsDir, 'sq')), [], 'squash.sh left nothing behind');
});

t.test('kernel client: a share not granted to this guest cannot be mounted; a subdirectory can', { skip, timeout: 420_000 }, async (t) => {
  const d = await daemonFor(t, {
    shares: [{ id: 'demo' }, { id: 'secret', guest: { tcp: '10.9.9.9' } }],
  });
  mkdirSync(path.join(d.exportsDir, 'demo', 'sub', 'dir'), { recursive: true });
  writeFileSync(path.join(d.exportsDir, 'demo', 'sub', 'dir', 'marker'), 'below the root\n');
  const g = await runGuest({
    port: d.port,
    noMount: true,
    script: 'test/vm/refused.sh',
    args: ['/secret', '/demo', '/demo/sub/dir'],
    timeoutS: 300,
  });
  report(t, g, 'refused.sh');
});
