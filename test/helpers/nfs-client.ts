// A small, independent ONC RPC / NFSv3 test client over TCP, for precise protocol checks that real
// clients hide (cookies, verifiers, handles across restarts). Written from RFC 5531 and RFC 1813
// with plain Buffers, without src/rpc, so that it checks the server instead of agreeing with it.
import net from 'node:net';

export const NFS_PROG = 100003;
export const MOUNT_PROG = 100005;

/** Builds XDR by hand: big-endian words and padded opaques. */
export class Args {
  private readonly parts: Buffer[] = [];
  u32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(value >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(value);
    this.parts.push(b);
    return this;
  }
  fixed(bytes: Buffer): this {
    this.parts.push(bytes, Buffer.alloc((4 - (bytes.length % 4)) % 4));
    return this;
  }
  opaque(bytes: Buffer | string): this {
    const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
    return this.u32(b.length).fixed(b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reads XDR by hand. */
export class Reply {
  offset = 0;
  constructor(readonly buffer: Buffer) {}
  u32(): number {
    const v = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  u64(): bigint {
    const v = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  fixed(length: number): Buffer {
    const v = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length + ((4 - (length % 4)) % 4);
    return v;
  }
  opaque(): Buffer {
    return this.fixed(this.u32());
  }
  /** fattr3 (84 bytes): the fields tests look at. */
  fattr(): { type: number; mode: number; uid: number; gid: number; size: bigint; fileid: bigint } {
    const type = this.u32();
    const mode = this.u32();
    this.u32(); // nlink
    const uid = this.u32();
    const gid = this.u32();
    const size = this.u64();
    this.u64(); // used
    this.u64(); // rdev
    this.u64(); // fsid
    const fileid = this.u64();
    this.offset += 24; // times
    return { type, mode, uid, gid, size, fileid };
  }
  postOpAttr(): ReturnType<Reply['fattr']> | null {
    return this.u32() ? this.fattr() : null;
  }
}

export class RpcError extends Error {
  constructor(
    readonly code: 'RPC_DENIED' | 'RPC_NOT_SUCCESS' | 'RPC_CLOSED' | 'RPC_TIMEOUT',
    message: string,
    readonly stat?: number,
  ) {
    super(message);
  }
}

export interface Credentials {
  uid: number;
  gid: number;
  gids?: number[];
}

/** One TCP connection; calls may be in flight at once and are matched by xid. */
export class RpcClient {
  private nextXid = (Math.random() * 0x7fffffff) >>> 0;
  private readonly waiting = new Map<number, { resolve(reply: Reply): void; reject(error: Error): void }>();
  private pending = Buffer.alloc(0);
  private fragments: Buffer[] = [];

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => {
      for (const waiter of this.waiting.values()) waiter.reject(new RpcError('RPC_CLOSED', 'connection closed'));
      this.waiting.clear();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host }, () => resolve(new RpcClient(socket)));
      socket.once('error', reject);
    });
  }

  /** The same client over an AF_UNIX stream socket (transports other than TCP, driven in tests). */
  static connectPath(path: string): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ path }, () => resolve(new RpcClient(socket)));
      socket.once('error', reject);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const mark = this.pending.readUInt32BE(0);
      const length = mark & 0x7fffffff;
      if (this.pending.length < 4 + length) return;
      this.fragments.push(this.pending.subarray(4, 4 + length));
      this.pending = this.pending.subarray(4 + length);
      if (mark & 0x80000000) {
        const record = Buffer.concat(this.fragments);
        this.fragments = [];
        this.onRecord(record);
      }
    }
  }

  private onRecord(record: Buffer): void {
    const reply = new Reply(record);
    const xid = reply.u32();
    const waiter = this.waiting.get(xid);
    if (!waiter) return;
    this.waiting.delete(xid);
    reply.u32(); // REPLY
    if (reply.u32() !== 0) {
      waiter.reject(new RpcError('RPC_DENIED', 'MSG_DENIED', reply.u32()));
      return;
    }
    reply.u32(); // verifier flavor
    reply.opaque();
    const stat = reply.u32();
    if (stat !== 0) {
      waiter.reject(new RpcError('RPC_NOT_SUCCESS', `accept_stat ${stat}`, stat));
      return;
    }
    waiter.resolve(reply);
  }

  call(prog: number, vers: number, proc: number, args: Buffer, creds: Credentials = { uid: 0, gid: 0 }, timeoutMs = 30_000): Promise<Reply> {
    // A call on a connection the server already closed would wait for its timeout.
    if (this.socket.destroyed) return Promise.reject(new RpcError('RPC_CLOSED', 'connection closed'));
    const xid = this.nextXid++ >>> 0;
    const cred = new Args().u32(0).opaque('test').u32(creds.uid).u32(creds.gid).u32((creds.gids ?? []).length);
    for (const g of creds.gids ?? []) cred.u32(g);
    const body = new Args().u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc).u32(1).opaque(cred.bytes()).u32(0).u32(0).bytes();
    const message = Buffer.concat([body, args]);
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE((0x80000000 | message.length) >>> 0);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(xid);
        reject(new RpcError('RPC_TIMEOUT', `no reply to xid ${xid}`));
      }, timeoutMs);
      this.waiting.set(xid, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(Buffer.concat([mark, message]));
    });
  }

  /** MOUNT3 MNT: the root handle, or a mountstat3 error number. */
  async mount(path: string, creds?: Credentials): Promise<{ status: number; handle?: Buffer }> {
    const reply = await this.call(MOUNT_PROG, 3, 1, new Args().opaque(path).bytes(), creds);
    const status = reply.u32();
    return status === 0 ? { status, handle: Buffer.from(reply.opaque()) } : { status };
  }

  /** MOUNT3 EXPORT: the exports this peer is shown, with their groups. */
  async exports(): Promise<{ dir: string; groups: string[] }[]> {
    const reply = await this.call(MOUNT_PROG, 3, 5, Buffer.alloc(0));
    const list = [];
    while (reply.u32()) {
      const dir = reply.opaque().toString('utf8');
      const groups: string[] = [];
      while (reply.u32()) groups.push(reply.opaque().toString('utf8'));
      list.push({ dir, groups });
    }
    return list;
  }

  async lookup(dir: Buffer, name: string, creds?: Credentials): Promise<{ status: number; handle?: Buffer }> {
    const reply = await this.call(NFS_PROG, 3, 3, new Args().opaque(dir).opaque(name).bytes(), creds);
    const status = reply.u32();
    return status === 0 ? { status, handle: Buffer.from(reply.opaque()) } : { status };
  }

  async getattr(handle: Buffer, creds?: Credentials): Promise<{ status: number; attr?: ReturnType<Reply['fattr']> }> {
    const reply = await this.call(NFS_PROG, 3, 1, new Args().opaque(handle).bytes(), creds);
    const status = reply.u32();
    return status === 0 ? { status, attr: reply.fattr() } : { status };
  }

  /** READDIR (plus = false) or READDIRPLUS: one page. */
  async readdir(
    dir: Buffer,
    cookie: bigint,
    verifier: Buffer,
    count: number,
    plus = false,
    creds?: Credentials,
  ): Promise<{ status: number; verifier: Buffer; entries: { fileid: bigint; name: string; cookie: bigint; handle?: Buffer }[]; eof: boolean }> {
    const args = new Args().opaque(dir).u64(cookie).fixed(verifier);
    if (plus) args.u32(count).u32(count * 4);
    else args.u32(count);
    const reply = await this.call(NFS_PROG, 3, plus ? 17 : 16, args.bytes(), creds);
    const status = reply.u32();
    reply.postOpAttr();
    if (status !== 0) return { status, verifier: Buffer.alloc(8), entries: [], eof: false };
    const cookieVerifier = Buffer.from(reply.fixed(8));
    const entries = [];
    while (reply.u32()) {
      const fileid = reply.u64();
      const name = reply.opaque().toString('latin1');
      const entryCookie = reply.u64();
      let handle: Buffer | undefined;
      if (plus) {
        reply.postOpAttr();
        if (reply.u32()) handle = Buffer.from(reply.opaque());
      }
      entries.push({ fileid, name, cookie: entryCookie, handle });
    }
    return { status, verifier: cookieVerifier, entries, eof: reply.u32() === 1 };
  }
}
