// What the backend tests share: running a setup command, reading mountinfo, a CREATE whose
// status is all that matters (JUKEBOX or not), and the metrics of the daemon under test.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Args, NFS_PROG, type RpcClient } from './nfs-client.js';
import { parseExposition, value, type Sample } from '../metrics/helpers/exposition.js';

export const JUKEBOX = 10008;

/** Runs a command (no shell); throws with its output unless it exits 0. */
export function sh(cmd: string, args: string[], timeoutMs = 180_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The mountinfo line of the mount at `where`, if any. */
export function mountedAt(where: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((line) => line.split(' ')[4] === where);
}

/** CREATE (RFC 1813 section 3.3.8), UNCHECKED, no attributes, as root: the status. */
export async function create(client: RpcClient, dir: Buffer, name: string, timeoutMs = 30_000): Promise<number> {
  const args = new Args().opaque(dir).opaque(name).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).bytes();
  return (await client.call(NFS_PROG, 3, 8, args, { uid: 0, gid: 0 }, timeoutMs)).u32();
}

/** The daemon's metrics, parsed. */
export async function scrape(metricsPort: number): Promise<Sample[]> {
  return parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
}

/** Whether `backend` is in `state` (manila_gateway_backend_state). */
export async function backendIn(metricsPort: number, backend: string, state: string): Promise<boolean> {
  return value(await scrape(metricsPort), 'manila_gateway_backend_state', { backend, state }) === 1;
}
