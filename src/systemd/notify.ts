// sd_notify(3) without libsystemd: the daemon tells systemd (Type=notify, WatchdogSec=) how it is
// doing by sending one datagram of newline-separated VAR=value lines to $NOTIFY_SOCKET. The states
// this daemon sends (see sd_notify(3) for the full list):
//
//   READY=1        startup is finished: every listener is bound and the grants are loaded.
//   RELOADING=1    a reload (SIGHUP) has begun; send READY=1 when it is done. systemd 253+ wants
//                  MONOTONIC_USEC=<CLOCK_MONOTONIC in microseconds> in the same message, to match the
//                  reload to its request: use reloadingState().
//   STOPPING=1     shutdown has begun.
//   WATCHDOG=1     keep-alive ping; send it every watchdogIntervalMs() (half of WatchdogSec, as
//                  systemd recommends) while the event loop is healthy.
//   STATUS=text    a one-line status shown by `systemctl status`.
//   MAINPID=pid    the main process (NotifyAccess=main accepts messages only from it).
//
// Outside systemd (NOTIFY_SOCKET unset) every call is a cheap no-op. Nothing here logs: the caller
// decides whether a failed notification matters.
import { socketsBridge } from '../native/sockets.js';

/**
 * Sends `state` (e.g. "READY=1\nSTATUS=serving 3 grants") to $NOTIFY_SOCKET (an absolute path, or
 * "@name" in the abstract namespace). Returns true if the datagram was sent, false when
 * NOTIFY_SOCKET is unset or sending failed (no receiver, an unsupported address such as systemd
 * 254's "vsock:..." form, the addon missing): never throws.
 */
export function notify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return false;
  try {
    return socketsBridge().sdNotify(socketPath, state) === 0;
  } catch {
    return false;
  }
}

/** RELOADING=1 with the MONOTONIC_USEC systemd 253+ expects (process.hrtime is CLOCK_MONOTONIC). */
export function reloadingState(): string {
  return `RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`;
}

/**
 * How often to send WATCHDOG=1: half of $WATCHDOG_USEC, in milliseconds (at least 1), when the
 * watchdog is on for this process ($WATCHDOG_PID unset or equal to process.pid); undefined otherwise
 * (unset, not a positive integer, or meant for another process).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== '' && Number(pidText) !== process.pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
