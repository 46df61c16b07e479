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

/** The largest size class: a 1 MiB payload plus room for the RPC and NFS headers around it. */
export const LARGE_BUFFER_SIZE = 1024 * 1024 + 64 * 1024;

/** The smaller class: replies of small READs (4 KiB random reads) and READDIR(PLUS) pages of 64 KiB plus their headers. */
export const MEDIUM_BUFFER_SIZE = 68 * 1024;

/** Below this, Buffer.allocUnsafe's own 8 KiB slab serves the request without a new allocation. */
export const LARGE_BUFFER_MIN = 4 * 1024;

export interface LargeBufferPoolOptions {
  /** Free buffers of the large class kept at most (default 32: 34 MiB); of the medium class, 8 times as many (17 MiB). */
  maxFree?: number;
  /** Free buffers are let go after this long without a take. Default 30 s. */
  idleMs?: number;
}

interface SizeClass {
  readonly size: number;
  readonly maxFree: number;
  readonly free: Buffer[];
}

export class LargeBufferPool {
  private readonly classes: readonly SizeClass[];
  /** Every buffer this pool made, by its memory: only those are taken back. */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  private readonly pins = new Map<ArrayBufferLike, number>();
  /** The memory of every buffer in a free list. */
  private readonly isFree = new WeakSet<ArrayBufferLike>();
  private readonly idleMs: number;
  private lastTake = 0;
  private trimTimer: NodeJS.Timeout | null = null;

  constructor(options: LargeBufferPoolOptions = {}) {
    const maxFree = options.maxFree ?? 32;
    this.classes = [
      { size: MEDIUM_BUFFER_SIZE, maxFree: maxFree * 8, free: [] },
      { size: LARGE_BUFFER_SIZE, maxFree, free: [] },
    ];
    this.idleMs = options.idleMs ?? 30_000;
  }

  /** Free buffers held now (all classes). */
  get freeCount(): number {
    let count = 0;
    for (const c of this.classes) count += c.free.length;
    return count;
  }

  /**
   * A buffer of the smallest class that holds `size` bytes (MEDIUM_BUFFER_SIZE or LARGE_BUFFER_SIZE;
   * old contents: write before you send), or undefined if no class does.
   */
  take(size: number): Buffer | undefined {
    const sizeClass = size <= MEDIUM_BUFFER_SIZE ? this.classes[0]! : size <= LARGE_BUFFER_SIZE ? this.classes[1]! : undefined;
    if (sizeClass === undefined) return undefined;
    this.lastTake = Date.now();
    const reused = sizeClass.free.pop();
    if (reused !== undefined) {
      this.isFree.delete(reused.buffer);
      return reused;
    }
    const made = Buffer.allocUnsafeSlow(sizeClass.size);
    this.ours.add(made.buffer);
    return made;
  }

  /** Hand back a buffer (or any view of one) from take(); anything else is ignored. */
  give(view: Uint8Array): void {
    const memory = view.buffer;
    if (!this.ours.has(memory) || this.pins.has(memory)) return;
    const sizeClass = memory.byteLength === MEDIUM_BUFFER_SIZE ? this.classes[0]! : this.classes[1]!;
    if (sizeClass.free.length >= sizeClass.maxFree) return;
    // A view handed back twice must not enter the free list twice.
    if (this.isFree.has(memory)) return;
    this.isFree.add(memory);
    sizeClass.free.push(Buffer.from(memory, 0, sizeClass.size));
    this.armTrim();
  }

  /** The threadpool is about to read or write this memory: it is not to be reused until unpin(). */
  pin(view: Uint8Array): void {
    const memory = view.buffer;
    if (!this.ours.has(memory)) return;
    this.pins.set(memory, (this.pins.get(memory) ?? 0) + 1);
  }

  /** The memory stays pinned for as long as `work` runs (a native call reading or writing it). */
  whilePinned<T>(view: Uint8Array, work: () => Promise<T>): Promise<T> {
    // Memory not from the pool (a small READ's reply) needs no pin: no async frame for it either.
    if (!this.ours.has(view.buffer)) return work();
    this.pin(view);
    let running: Promise<T>;
    try {
      running = work();
    } catch (error) {
      this.unpin(view);
      throw error;
    }
    return running.finally(() => this.unpin(view));
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
    if (Date.now() - this.lastTake >= this.idleMs) {
      for (const c of this.classes) {
        for (const b of c.free) this.isFree.delete(b.buffer);
        c.free.length = 0;
      }
    }
    else if (this.freeCount > 0) this.armTrim();
  };
}

/** The process's pool: replies and records of every connection share it. */
export const largeBuffers = new LargeBufferPool();
