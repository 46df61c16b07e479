// Hybrid vsock listener (Firecracker, Cloud Hypervisor): the VMM forwards a connection its guest
// makes to host CID 2, port P, to the UNIX socket `<uds_path>_<P>` on the host. One socket per VM,
// so the socket a connection arrives on IS the guest's identity (DESIGN.md "Identity and grants");
// the peer's own credentials are the VMM's and say nothing about the guest.
import { lstatSync, chmodSync, chownSync, readFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import type { RpcConnection, RpcConnectionOptions } from '../rpc/connection.js';
import type { RpcServer } from '../rpc/server.js';
import type { Peer } from '../rpc/types.js';

export interface UnixListenerOptions extends Omit<RpcConnectionOptions, 'localPort'> {
  /** The guest every connection on this socket is (grants `guest: { vm: NAME }`). */
  guest: string;
  /** Socket file mode (default 0600) and owner/group (names or ids; default the daemon's). */
  mode?: number;
  owner?: string | number;
  group?: string | number;
}

export class UnixListener {
  private readonly netServer: net.Server;
  private readonly live = new Set<RpcConnection>();
  private readonly connectionOptions: Omit<RpcConnectionOptions, 'localPort'>;
  private boundPath = '';

  constructor(
    private readonly rpc: RpcServer,
    private readonly logger: Logger,
    private readonly options: UnixListenerOptions,
  ) {
    const { guest: _guest, mode: _mode, owner: _owner, group: _group, ...connectionOptions } = options;
    this.connectionOptions = connectionOptions;
    this.netServer = net.createServer({ allowHalfOpen: true }, (socket) => this.onSocket(socket));
    this.netServer.on('error', (err) => this.logger.error({ err, path: this.boundPath }, 'hybrid vsock listener error'));
  }

  get path(): string {
    return this.boundPath;
  }

  get guest(): string {
    return this.options.guest;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  connections(): IterableIterator<RpcConnection> {
    return this.live.values();
  }

  /**
   * Listen on `socketPath`. A socket file left by a previous run is replaced, but only when nothing
   * answers on it; anything that is not a socket is never removed. The file is created with mode
   * 0600 (umask held at 0177 around bind, so it is never more open), then given its owner and mode.
   */
  async listen(socketPath: string): Promise<void> {
    await removeStaleSocket(socketPath);
    const { uid, gid } = resolveOwner(this.options.owner, this.options.group);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.netServer.once('error', onError);
      const previous = process.umask(0o177);
      try {
        this.netServer.listen({ path: socketPath }, () => {
          this.netServer.off('error', onError);
          resolve();
        });
      } finally {
        process.umask(previous);
      }
    });
    this.boundPath = socketPath;
    try {
      if (uid !== -1 || gid !== -1) chownSync(socketPath, uid, gid);
      chmodSync(socketPath, this.options.mode ?? 0o600);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  stopAccepting(): void {
    if (this.netServer.listening) this.netServer.close();
  }

  closeAll(reason: string): void {
    for (const connection of [...this.live]) connection.close(reason);
  }

  /** Stop accepting, close this listener's connections and remove the socket file. */
  close(reason = 'listener closed'): Promise<void> {
    return new Promise((resolve) => {
      this.closeAll(reason);
      // net.Server.close() unlinks the socket file it created.
      if (!this.netServer.listening) resolve();
      else this.netServer.close(() => resolve());
    });
  }

  private onSocket(socket: net.Socket): void {
    const peer: Peer = { transport: 'hybrid', vm: this.options.guest };
    const connection = this.rpc.accept(socket, peer, this.connectionOptions);
    if (connection.closed) return;
    this.live.add(connection);
    connection.once('close', () => this.live.delete(connection));
  }
}

/** Removes a socket file nobody listens on; refuses to touch anything else. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(socketPath).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!isSocket) throw Object.assign(new Error(`${socketPath} exists and is not a socket: not replacing it`), { code: 'EEXIST' });
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path: socketPath }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answered) throw Object.assign(new Error(`${socketPath} is in use by another process`), { code: 'EADDRINUSE' });
  unlinkSync(socketPath);
}

/** uid/gid for a name or number (-1: leave as is), from /etc/passwd and /etc/group. */
function resolveOwner(owner: string | number | undefined, group: string | number | undefined): { uid: number; gid: number } {
  return { uid: lookupId(owner, '/etc/passwd', 'user'), gid: lookupId(group, '/etc/group', 'group') };
}

function lookupId(name: string | number | undefined, database: string, what: string): number {
  if (name === undefined) return -1;
  if (typeof name === 'number') return name;
  if (/^\d+$/.test(name)) return Number(name);
  for (const line of readFileSync(database, 'utf8').split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields[2] !== undefined) return Number(fields[2]);
  }
  throw Object.assign(new Error(`no ${what} named ${name} (${database})`), { code: 'ENOENT' });
}
