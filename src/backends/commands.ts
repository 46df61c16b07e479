// Runs the mount tools (mount, umount, ceph-fuse, mmmount) without a shell, bounded in time, with
// their complaint kept for the error a grant or the operator sees.
import { execFile } from 'node:child_process';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly output: string,
    message: string,
  ) {
    super(message);
  }
}

export interface CommandOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

/** The last lines of what a command said, short enough for a log line or a grant's reason. */
function tail(text: string): string {
  const lines = text.trim().split('\n').filter((line) => line.trim() !== '');
  return lines.slice(-3).join(' / ').slice(-600);
}

export function runCommand(file: string, args: readonly string[], options: CommandOptions): Promise<string> {
  const shown = [file, ...args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs, killSignal: 'SIGKILL', env: options.env ?? process.env, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const output = `${stderr}\n${stdout}`;
        const spawnCode = (error as NodeJS.ErrnoException).code;
        if (spawnCode === 'ENOENT') return reject(new CommandError(shown, null, '', `${file}: not found (is its package installed?)`));
        if (error.killed) return reject(new CommandError(shown, null, output, `${shown}: no answer in ${options.timeoutMs / 1000} s (killed)`));
        const code = typeof error.code === 'number' ? error.code : null;
        const said = tail(output);
        reject(new CommandError(shown, code, output, `${shown}: exit ${code ?? error.signal}${said ? `: ${said}` : ''}`));
      },
    );
  });
}
