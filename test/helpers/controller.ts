// Test helper: the reference controller as a real process (`manila-gateway controller ...`), so a
// test can kill it (SIGKILL), freeze it (SIGSTOP) or restart it on the same state file, plus a
// small client for its HTTP API.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { daemonCommand, repoRoot } from './daemon.js';

export interface ControllerProcess {
  url: string;
  gatewayUrl: string;
  port: number;
  child: ChildProcess;
  logs(): Record<string, unknown>[];
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** The HTTP API with the controller's token (when it has one). */
  api(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>;
}

export interface ControllerProcessOptions {
  stateFile: string;
  tokenFile?: string;
  /** The controller's token, sent by api() unless it is given another. */
  token?: string;
  heartbeatMs?: number;
  /** Listen on this port (0: any free one). */
  port?: number;
}

export async function startControllerProcess(options: ControllerProcessOptions): Promise<ControllerProcess> {
  const args = ['controller', '--listen', `127.0.0.1:${options.port ?? 0}`, '--state', options.stateFile];
  if (options.tokenFile) args.push('--token-file', options.tokenFile);
  if (options.heartbeatMs) args.push('--heartbeat-ms', String(options.heartbeatMs));
  const child = spawn(...daemonCommand(args), { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    let rest = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      rest += chunk.toString();
      let i: number;
      while ((i = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, i);
        rest = rest.slice(i + 1);
        try {
          const record = JSON.parse(line) as Record<string, unknown>;
          logs.push(record);
          if (record.msg === 'controller listening') resolve(record);
        } catch {
          /* not JSON */
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`controller exited (${code}) before listening: ${stderr}`)));
    setTimeout(() => reject(new Error(`controller not listening after 15 s: ${stderr}`)), 15_000).unref();
  });
  const record = await listening;
  const url = String(record.url);
  const port = Number(new URL(url).port);
  const exited = once(child, 'exit');
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    url,
    gatewayUrl: String(record.gatewayUrl),
    port,
    child,
    logs: () => [...logs],
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (signal !== 'SIGKILL') child.kill('SIGCONT');
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
    async api(method, path, body, token) {
      const headers: Record<string, string> = {};
      const bearer = token === undefined ? options.token : token;
      if (bearer) headers.authorization = `Bearer ${bearer}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
  };
}
