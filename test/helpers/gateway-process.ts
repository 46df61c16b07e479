// The daemon as a real process on a config file the test wrote, so the test can stop it and
// start it again on the same state (restart-stable handles) and mounts (adoption). Resolves once
// it logged "ready", with the first TCP port it listens on.
import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot, daemonCommand, outputLines } from './daemon.js';

export interface GatewayProcess {
  port: number;
  child: ChildProcess;
  /** pino lines so far */
  logs(): Record<string, unknown>[];
  /** SIGTERM, SIGKILL after 15 s; resolves when it exited. */
  stop(): Promise<void>;
}

export async function startGatewayProcess(configPath: string, readyTimeoutMs = 60_000): Promise<GatewayProcess> {
  const child = spawn(...daemonCommand(['serve', '--config', configPath]), { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const text: string[] = [];
  let port: number | undefined;
  let onReady: (() => void) | undefined;
  child.stdout!.on(
    'data',
    outputLines((line, record) => {
      text.push(line);
      if (!record) return;
      lines.push(record);
      if (record.msg === 'listening' && record.transport === 'tcp' && port === undefined) port = record.port as number;
      if (record.msg === 'ready') onReady?.();
    }),
  );
  child.stderr!.on('data', (chunk: Buffer) => text.push(`stderr: ${chunk.toString('utf8')}`));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway not ready in ${readyTimeoutMs} ms:\n${text.join('\n')}`)), readyTimeoutMs);
    onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`gateway exited before ready:\n${text.join('\n')}`));
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    port: port!,
    child,
    logs: () => lines,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
