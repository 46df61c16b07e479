// Hybrid vsock (Firecracker, Cloud Hypervisor): a per-VM UNIX socket whose listener names the
// guest. End to end with libnfs through a socat TCP -> UNIX bridge standing in for the VMM, and
// identity by socket: vm1's share is unreachable over TCP, and the TCP guest's over vm1's socket.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { nfsUrl, run, startDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/wait.js';

/** socat TCP-LISTEN -> UNIX-CONNECT, as a VMM forwards a guest's vsock connection. */
async function bridge(t: Test, socketPath: string): Promise<number> {
  const port = await freePort();
  const socat = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${socketPath}`], { stdio: 'ignore' });
  t.teardown(() => socat.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const probe = net.connect({ port, host: '127.0.0.1' }, () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (up) return port;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('socat bridge did not come up');
}
/** A short directory: UNIX socket paths are limited to 107 bytes, tap's test dirs are longer. */
function shortDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-hv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('identity by socket, end to end with libnfs', async (t) => {
  const base = shortDir(t);
  const socketPath = path.join(base, 'vm1.vsock_2049');
  const d = await startDaemon({
    shares: [
      { id: 'vmshare', guest: { vm: 'vm1' } },
      { id: 'tcpshare', guest: { tcp: '127.0.0.1' } },
    ],
    extraConfig: {
      listen: { tcp: [{ host: '127.0.0.1', port: 0 }], hybrid_vsock: [{ path: socketPath, guest: 'vm1' }] },
    },
  });
  t.teardown(() => d.stop());
  writeFileSync(path.join(d.exportsDir, 'vmshare', 'hello.txt'), 'from vm1\n');
  t.equal(lstatSync(socketPath).mode & 0o777, 0o600, 'the socket file is 0600');
  t.match(d.listening, [{ transport: 'tcp' }, { transport: 'hybrid_vsock', path: socketPath, guest: 'vm1' }]);

  const viaVmm = await bridge(t, socketPath);
  const cat = await run('nfs-cat', [nfsUrl(viaVmm, 'vmshare', 'hello.txt')], { timeoutMs: 30_000 });
  t.equal(cat.code, 0, cat.stderr);
  t.equal(cat.stdout, 'from vm1\n', 'vm1 reads its share through its socket');
  const crossed = await run('nfs-ls', [nfsUrl(viaVmm, 'tcpshare')], { timeoutMs: 30_000 });
  t.not(crossed.code, 0, "vm1's socket does not reach the TCP guest's share");
  const overTcp = await run('nfs-ls', [nfsUrl(d.port, 'vmshare')], { timeoutMs: 30_000 });
  t.not(overTcp.code, 0, "TCP does not reach vm1's share");
  const own = await run('nfs-ls', [nfsUrl(d.port, 'tcpshare')], { timeoutMs: 30_000 });
  t.equal(own.code, 0, `the TCP guest reaches its own share ${own.stderr}`);
});

t.test('a stale socket file is replaced; a live one or a regular file is not', async (t) => {
  const base = shortDir(t);
  writeFileSync(path.join(base, 'regular.vsock_2049'), 'not a socket');
  // A socket file whose process is gone (python leaves the file behind when it exits).
  const stale = path.join(base, 'stale.vsock_2049');
  const made = spawnSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
  t.equal(made.status, 0, String(made.stderr));
  t.ok(lstatSync(stale).isSocket());
  const d = await startDaemon({
    shares: [{ id: 'vmshare', guest: { vm: 'vm2' } }],
    extraConfig: { listen: { tcp: [{ host: '127.0.0.1', port: 0 }], hybrid_vsock: [{ path: stale, guest: 'vm2', owner: 'nobody', mode: '0660' }] } },
  });
  t.teardown(() => d.stop());
  const replaced = lstatSync(stale);
  t.ok(replaced.isSocket(), 'replaced by a live socket');
  t.equal(replaced.mode & 0o777, 0o660, 'with the configured mode');
  t.equal(replaced.uid, 65534, 'and owner (nobody)');

  // Another daemon on the same path, and a path holding a regular file: neither is touched, and
  // the gateway still starts and serves its other listeners (a VMM's directory must not keep
  // the other guests from being served); it retries the socket in the background.
  const regularPath = path.join(base, 'regular.vsock_2049');
  const other = await startDaemon({
    shares: [{ id: 'vmshare', guest: { vm: 'vm2' } }],
    extraConfig: {
      listen: {
        tcp: [{ host: '127.0.0.1', port: 0 }],
        hybrid_vsock: [{ path: stale, guest: 'vm2' }, { path: regularPath, guest: 'vm3' }],
      },
    },
  });
  t.teardown(() => other.stop());
  const problems = other.jsonLogs().filter((l) => l.msg === 'listener cannot be opened').map((l) => String(l.err));
  t.match(problems, [/is in use by another process/, /exists and is not a socket/], 'both refused, with the reason');
  t.equal(readFileSync(regularPath, 'utf8'), 'not a socket', 'the regular file is left as it was');
  const ls = await run('nfs-ls', [nfsUrl(other.port, 'vmshare')], { timeoutMs: 30_000 });
  t.not(ls.code, 0, 'the TCP listener serves (vm2 is not a TCP guest, so this is refused, not hung)');
  t.same(readdirSync(base).filter((n) => n.startsWith('.manila-gateway-')), [], 'no staging directory left behind');
});
