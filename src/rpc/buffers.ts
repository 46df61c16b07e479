// Large message buffers (READ replies, WRITE records) used again instead of allocated per call.
//
// A 1 MiB Buffer lives outside the V8 heap, but V8 counts it as external memory and starts a full
// mark-compact each time enough of it has been allocated: at 700 MiB/s of fresh READ replies the
// profile showed concurrent marking and sweeping as the largest cost of the daemon. Buffers of one
// size class, handed back when the socket has taken a reply or a WRITE has been written, make
// sequential I/O allocate nothing in the steady state.
//
// A buffer the threadpool may still be using is pinned: a READ or WRITE that answered JUKEBOX at
// its backend's timeout leaves its pread/pwrite running on the buffer, so it must not be handed to
// another call. A pinned buffer given back is simply let go (the garbage collector frees it once
// the native call drops its reference).

/** One size class: a 1 MiB payload plus room for the RPC and NFS headers around it. */
export const LARGE_BUFFER_SIZE = 1024 * 1024 + 64 * 1024;

/** Below this, Buffer.allocUnsafe's own slab is cheaper than a pooled buffer. */
export const LARGE_BUFFER_MIN = 64 * 1024;

export interface LargeBufferPoolOptions {
  /** Free buffers kept at most. Default 32 (34 MiB). */
  maxFree?: number;
  /** Free buffers are let go after this long without a take. Default 30 s. */
  idleMs?: number;
}

export class LargeBufferPool {
  private readonly free: Buffer[] = [];
  /** Every buffer this pool made, by its memory: only those are taken back. */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  private readonly pins = new Map<ArrayBufferLike, number>();
  private readonly maxFree: number;
  private readonly idleMs: number;
  private lastTake = 0;
  private trimTimer: NodeJS.Timeout | null = null;

  constructor(options: LargeBufferPoolOptions = {}) {
    this.maxFree = options.maxFree ?? 32;
    this.idleMs = options.idleMs ?? 30_000;
  }

  /** Free buffers held now. */
  get freeCount(): number {
    return this.free.length;
  }

  /** A buffer of LARGE_BUFFER_SIZE bytes (old contents: write before you send), or undefined if `size` does not fit one. */
  take(size: number): Buffer | undefined {
    if (size > LARGE_BUFFER_SIZE) return undefined;
    this.lastTake = Date.now();
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    const made = Buffer.allocUnsafeSlow(LARGE_BUFFER_SIZE);
    this.ours.add(made.buffer);
    return made;
  }

  /** Hand back a buffer (or any view of one) from take(); anything else is ignored. */
  give(view: Uint8Array): void {
    const memory = view.buffer;
    if (!this.ours.has(memory) || this.pins.has(memory)) return;
    if (this.free.length >= this.maxFree) return;
    // A view handed back twice must not enter the free list twice.
    for (const held of this.free) if (held.buffer === memory) return;
    this.free.push(Buffer.from(memory, 0, LARGE_BUFFER_SIZE));
    this.armTrim();
  }

  /** The threadpool is about to read or write this memory: it is not to be reused until unpin(). */
  pin(view: Uint8Array): void {
    const memory = view.buffer;
    if (!this.ours.has(memory)) return;
    this.pins.set(memory, (this.pins.get(memory) ?? 0) + 1);
  }

  unpin(view: Uint8Array): void {
    const memory = view.buffer;
    const count = this.pins.get(memory);
    if (count === undefined) return;
    if (count <= 1) this.pins.delete(memory);
    else this.pins.set(memory, count - 1);
  }

  private armTrim(): void {
    if (this.trimTimer !== null) return;
    this.trimTimer = setTimeout(this.trim, this.idleMs);
    this.trimTimer.unref();
  }

  private readonly trim = (): void => {
    this.trimTimer = null;
    if (Date.now() - this.lastTake >= this.idleMs) this.free.length = 0;
    else if (this.free.length > 0) this.armTrim();
  };
}

/** The process's pool: replies and records of every connection share it. */
export const largeBuffers = new LargeBufferPool();
