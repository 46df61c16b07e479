// `manila-gateway controller` arguments -> ControllerOptions. Files named by options are read
// here, so that a bad path or an empty token file is an argument error (exit 2), not a crash.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ControllerOptions } from './server.js';

/** A bad command line; the message says what is wrong with which option. */
export class UsageError extends Error {}

/** `[::1]:8080` or `127.0.0.1:8080` -> host and port. */
function listenArg(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--listen ${value}: must be HOST:PORT (e.g. 127.0.0.1:8080)`);
  return { host: (match[1] ?? match[2])!, port };
}

function readOptionFile(option: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${option} ${file}: ${(error as Error).message}`);
  }
}

export function parseControllerArgs(args: string[]): ControllerOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        listen: { type: 'string' },
        state: { type: 'string' },
        'token-file': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'client-ca': { type: 'string' },
        'heartbeat-ms': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (!values.listen) throw new UsageError('--listen HOST:PORT is required');
  if (!values.state) throw new UsageError('--state FILE is required');
  const { host, port } = listenArg(values.listen);
  const options: ControllerOptions = { host, port, stateFile: path.resolve(values.state) };

  if (values['token-file'] !== undefined) {
    const token = readOptionFile('--token-file', values['token-file']).trim();
    if (token === '') throw new UsageError(`--token-file ${values['token-file']}: is empty`);
    options.token = token;
  }

  const [cert, key, ca] = [values['tls-cert'], values['tls-key'], values['client-ca']];
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (ca !== undefined && cert === undefined) throw new UsageError('--client-ca needs --tls-cert and --tls-key');
  if (cert !== undefined && key !== undefined) {
    options.tls = { cert: readOptionFile('--tls-cert', cert), key: readOptionFile('--tls-key', key) };
    if (ca !== undefined) options.tls.clientCa = readOptionFile('--client-ca', ca);
  }

  const heartbeat = values['heartbeat-ms'];
  if (heartbeat !== undefined) {
    // The gateway clamps Welcome's interval to [250, 60000]; outside that, the controller's
    // dead-peer check would not match the pace the gateway actually keeps.
    const ms = Number(heartbeat);
    if (!/^\d+$/.test(heartbeat) || ms < 250 || ms > 60000) {
      throw new UsageError(`--heartbeat-ms ${heartbeat}: must be an integer from 250 to 60000`);
    }
    options.heartbeatIntervalMs = ms;
  }
  return options;
}
