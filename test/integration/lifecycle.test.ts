// The daemon as systemd runs it: sd_notify (READY=1 once listening, WATCHDOG=1, RELOADING=1 then
// READY=1 on SIGHUP, STOPPING=1 on SIGTERM), a reload that keeps existing connections, a bad
// config on reload that changes nothing, and a clean exit on SIGTERM.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startDaemon } from '../helpers/daemon.js';
import { RpcClient } from '../helpers/nfs-client.js';
import { until } from '../helpers/wait.js';

/** A datagram socket receiving what the daemon sends to $NOTIFY_SOCKET, one message per entry. */
async function notifyReceiver(t: Test, dir: string): Promise<{ path: string; messages: string[] }> {
  const socketPath = path.join(dir, 'notify.sock');
  const messages: string[] = [];
  const script = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(4096)
    print(data.decode().replace("\\n", "|"), flush=True)
`;
  const child = spawn('python3', ['-c', script, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  let rest = '';
  let bound!: () => void;
  const ready = new Promise<void>((resolve) => (bound = resolve));
  child.once('exit', (code) => code && bound());
  child.stdout!.on('data', (chunk: Buffer) => {
    rest += chunk.toString();
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      if (line === 'bound') bound();
      else messages.push(line);
    }
  });
  await ready;
  return { path: socketPath, messages };
}

t.test('notify, watchdog, reload without dropping connections, drain on SIGTERM', async (t) => {
  // Not t.testdir(): its path is longer than a UNIX socket path may be.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const receiver = await notifyReceiver(t, dir);
  const d = await startDaemon({
    shares: [{ id: 'one' }, { id: 'two', guest: { tcp: '10.9.9.9' } }],
    env: { NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '200000' },
  });
  t.teardown(() => d.stop());
  await until('READY=1', () => receiver.messages.some((m) => m.startsWith('READY=1')));
  await until('two watchdog pings', () => receiver.messages.filter((m) => m === 'WATCHDOG=1').length >= 2, 5000);
  t.pass('READY=1 after listening, then WATCHDOG=1 every 100 ms (WATCHDOG_USEC/2)');

  const c = await RpcClient.connect(d.port);
  t.teardown(() => c.close());
  const one = (await c.mount('/one')).handle!;
  t.equal((await c.mount('/two')).status, 13, 'two is not ours yet');

  // Reload: a second TCP listener, share two granted to us instead of one, debug logging.
  const config = YAML.parse(readFileSync(d.configPath, 'utf8'));
  config.listen.tcp.push({ host: '127.0.0.2', port: 0 });
  config.grants = config.grants.map((g: Record<string, unknown>) => (g.share === 'two' ? { ...g, guest: { tcp: '127.0.0.1' } } : g));
  config.grants = config.grants.filter((g: Record<string, unknown>) => g.share !== 'one');
  config.log_level = 'debug';
  writeFileSync(d.configPath, YAML.stringify(config));
  const before = receiver.messages.length;
  process.kill(d.pid, 'SIGHUP');
  const reloaded = await until('reloaded', () => d.jsonLogs().find((l) => l.msg === 'reloaded'));
  t.match(reloaded, { opened: ['tcp 127.0.0.2:0'], closed: [] });
  await until('RELOADING=1 then READY=1', () => {
    const after = receiver.messages.slice(before);
    const reloading = after.findIndex((m) => m.startsWith('RELOADING=1|MONOTONIC_USEC='));
    return reloading >= 0 && after.slice(reloading).some((m) => m.startsWith('READY=1'));
  });
  t.equal((await c.getattr(one)).status, 13, 'the same connection: share one was revoked by the reload');
  t.equal((await c.mount('/two')).status, 0, 'the same connection: share two is granted now');
  const second = d.jsonLogs().find((l) => l.msg === 'listening' && l.host === '127.0.0.2');
  t.ok(second, 'the new listener is up');
  const c2 = await RpcClient.connect(second!.port as number, '127.0.0.2');
  t.teardown(() => c2.close());
  t.equal((await c2.mount('/two')).status, 0, 'the new listener serves (this guest connects from 127.0.0.1)');

  // A broken config on reload changes nothing.
  writeFileSync(d.configPath, 'node_id: [\n');
  process.kill(d.pid, 'SIGHUP');
  const refused = await until('reload refused', () => d.jsonLogs().find((l) => l.msg === 'reload refused: the running config stays'));
  t.ok(refused);
  t.equal((await c.mount('/two')).status, 0, 'still serving after a refused reload');

  process.kill(d.pid, 'SIGTERM');
  const exited = await d.exited;
  t.equal(exited.code, 0, 'SIGTERM: clean exit');
  t.ok(receiver.messages.includes('STOPPING=1'), 'STOPPING=1 sent');
  // The last lines may still sit in the pipe when 'exit' fires: wait for them.
  t.ok(await until('drained logged', () => d.jsonLogs().some((l) => l.msg === 'drained')), 'connections drained');
});
