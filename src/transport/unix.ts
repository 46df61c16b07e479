// Hybrid vsock listener (Firecracker, Cloud Hypervisor): the VMM forwards a connection its guest
// makes to host CID 2, port P, to the UNIX socket `<uds_path>_<P>` on the host. One socket per VM,
// so the socket a connection arrives on IS the guest's identity (DESIGN.md "Identity and grants");
// the peer's own credentials are the VMM's and say nothing about the guest.
import { chmodSync, closeSync, constants, lchownSync, lstatSync, mkdtempSync, openSync, readFileSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RpcConnection, RpcConnectionOptions } from '../rpc/connection.js';
import type { RpcServer } from '../rpc/server.js';
import { errnoError, socketsBridge } from '../native/sockets.js';
import { FdListener } from './vsock.js';

export interface UnixListenerOptions extends Omit<RpcConnectionOptions, 'localPort'> {
  /** The guest every connection on this socket is (grants `guest: { vm: NAME }`). */
  guest: string;
  /** Socket file mode (default 0600) and owner/group (names or ids; default the daemon's). */
  mode?: number;
  owner?: string | number;
  group?: string | number;
}

export class UnixListener {
  private readonly fdListener: FdListener;
  private boundPath = '';
  private boundInode: { dev: number; ino: number } | undefined;

  constructor(
    rpc: RpcServer,
    logger: Logger,
    private readonly options: UnixListenerOptions,
  ) {
    const { guest, mode: _mode, owner: _owner, group: _group, ...connectionOptions } = options;
    // The VMM's credentials say nothing about the guest: the socket is the identity.
    this.fdListener = new FdListener(rpc, logger, connectionOptions, () => ({ transport: 'hybrid', vm: guest }), 'hybrid vsock');
  }

  get path(): string {
    return this.boundPath;
  }

  get guest(): string {
    return this.options.guest;
  }

  connections(): IterableIterator<RpcConnection> {
    return this.fdListener.connections();
  }

  /**
   * Listen on `socketPath`. The directory is usually writable by the VMM (Firecracker's jailer
   * chroot), so nothing is done to the final path by name but one atomic rename: the socket is
   * bound, given its owner and mode, in a fresh 0700 directory beside it, reached through an
   * open descriptor (a swapped name cannot redirect it), then renamed into place. A socket file
   * left by a previous run is replaced only when nothing answers on it; anything that is not a
   * socket is never replaced.
   */
  async listen(socketPath: string): Promise<void> {
    await checkReplaceable(socketPath);
    const { uid, gid } = resolveOwner(this.options.owner, this.options.group);
    const privateDir = mkdtempSync(path.join(path.dirname(socketPath), '.manila-gateway-'));
    let dirFd = -1;
    let listening = -1;
    try {
      dirFd = openSync(privateDir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      const staged = `/proc/self/fd/${dirFd}/socket`;
      const result = socketsBridge().unixListen(staged, 511);
      if (result.err !== 0) throw errnoError(result.err, result.syscall ?? 'bind', `hybrid vsock listener at ${socketPath}`);
      listening = result.fd;
      // Inside a root-owned 0700 directory nobody else can put a link where the socket is.
      lchownSync(staged, uid, gid);
      chmodSync(staged, this.options.mode ?? 0o600);
      renameSync(staged, socketPath);
      const stat = lstatSync(socketPath);
      this.boundInode = { dev: stat.dev, ino: stat.ino };
    } catch (error) {
      if (listening >= 0) closeSync(listening);
      throw error;
    } finally {
      if (dirFd >= 0) closeSync(dirFd);
      try {
        rmdirSync(privateDir);
      } catch {
        /* renamed away or replaced: not ours to clean up */
      }
    }
    this.boundPath = socketPath;
    this.fdListener.listenFd(listening, 0);
  }

  stopAccepting(): void {
    this.fdListener.stopAccepting();
  }

  closeAll(reason: string): void {
    this.fdListener.closeAll(reason);
  }

  /** Stop accepting, close this listener's connections and remove the socket file (if still ours). */
  async close(reason = 'listener closed'): Promise<void> {
    await this.fdListener.close(reason);
    if (!this.boundInode) return;
    try {
      const stat = lstatSync(this.boundPath);
      if (stat.dev === this.boundInode.dev && stat.ino === this.boundInode.ino) unlinkSync(this.boundPath);
    } catch {
      /* already gone */
    }
    this.boundInode = undefined;
  }
}

/** A path the listener may take: free, or a socket nobody answers on. Never anything else. */
async function checkReplaceable(socketPath: string): Promise<void> {
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
