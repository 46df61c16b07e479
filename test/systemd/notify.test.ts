// sd_notify without libsystemd: datagrams to $NOTIFY_SOCKET, and the watchdog interval.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { notify, reloadingState, watchdogIntervalMs } from '../../src/systemd/notify.js';
import { DgramReceiver } from '../helpers/unix-dgram.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-notify-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs `fn` with these environment variables set (undefined: unset), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>): void => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

t.test('NOTIFY_SOCKET set to a path: the states arrive as sent', async (t) => {
  const socketPath = path.join(dir, 'notify.sock');
  const receiver = await DgramReceiver.start(socketPath);
  t.teardown(() => receiver.stop());
  await withEnv({ NOTIFY_SOCKET: socketPath }, () => {
    t.equal(notify('READY=1'), true);
    t.equal(notify('STATUS=serving 3 grant(s)\nWATCHDOG=1'), true);
  });
  t.same(await receiver.waitFor(2), ['READY=1', 'STATUS=serving 3 grant(s)\nWATCHDOG=1']);
});

t.test('NOTIFY_SOCKET in the abstract namespace; the env can also be passed', async (t) => {
  const name = `@mg-notify-test-${process.pid}-${Date.now()}`;
  const receiver = await DgramReceiver.start(name);
  t.teardown(() => receiver.stop());
  t.equal(notify('STOPPING=1', { NOTIFY_SOCKET: name }), true);
  const reloading = reloadingState();
  t.match(reloading, /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  const usec = BigInt(reloading.split('=')[2]!);
  const now = process.hrtime.bigint() / 1000n;
  t.ok(usec <= now && now - usec < 5_000_000n, 'MONOTONIC_USEC is the monotonic clock in microseconds');
  t.equal(notify(reloading, { NOTIFY_SOCKET: name }), true);
  t.same(await receiver.waitFor(2), ['STOPPING=1', reloading]);
});

t.test('unset, empty or unreachable: false, never a throw', async (t) => {
  await withEnv({ NOTIFY_SOCKET: undefined }, () => t.equal(notify('READY=1'), false, 'unset'));
  t.equal(notify('READY=1', {}), false);
  t.equal(notify('READY=1', { NOTIFY_SOCKET: '' }), false, 'empty');
  t.equal(notify('READY=1', { NOTIFY_SOCKET: path.join(dir, 'nobody.sock') }), false, 'no receiver');
  t.equal(notify('READY=1', { NOTIFY_SOCKET: 'vsock:2:9999' }), false, 'an address form we do not send to');
});

t.test('watchdogIntervalMs: half of WATCHDOG_USEC, for this process only', async (t) => {
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '2000000' }), 1000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 15000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: String(process.pid + 1) }), undefined, 'another pid');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '1' }), 1, 'at least 1 ms');
  t.equal(watchdogIntervalMs({}), undefined, 'unset');
  for (const bad of ['', '0', '-5', 'abc', '1e6', '99999999999999999999']) {
    t.equal(watchdogIntervalMs({ WATCHDOG_USEC: bad }), undefined, `WATCHDOG_USEC=${JSON.stringify(bad)}`);
  }
  await withEnv({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: undefined }, () => t.equal(watchdogIntervalMs(), 1000, 'from process.env'));
  await withEnv({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: '1' }, () => t.equal(watchdogIntervalMs(), undefined));
});
