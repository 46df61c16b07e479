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

/**
 * Why a buffer was let go: given back to a full free list, given back while pinned, or idle in the
 * free list.
 */
export const DROP_REASONS = ['full', 'pinned', 'idle'] as const;
export type DropCounts = Record<(typeof DROP_REASONS)[number], number>;

/** What one size class of the pool has done (exported as manila_gateway_message_buffers*). */
export interface MessageBufferClassStats {
  /** Buffers made, ever. */
  made: number;
  /**
   * Made and not yet freed by the garbage collector: in use, free in the pool, or garbage waiting
   * for a collection. Against `free` it tells a pool that holds too much from garbage that waits.
   */
  live: number;
  /** In the free list now. */
  free: number;
  /** Let go, by why (DROP_REASONS). */
  dropped: DropCounts;
}

export interface MessageBufferStats {
  medium: MessageBufferClassStats;
  large: MessageBufferClassStats;
}

interface SizeClass {
  readonly size: number;
  readonly maxFree: number;
  readonly free: PooledMemory[];
  made: number;
  /** Buffers of this class the garbage collector has freed. */
  collected: number;
  readonly dropped: DropCounts;
}

/**
 * What the pool knows of one buffer it made, found by the buffer's memory. One record per buffer,
 * changed in place: pinning, unpinning and giving back run for every READ and WRITE, and a Map
 * entry set and deleted each time (or a new view made for the free list) was garbage per request.
 */
interface PooledMemory {
  /** The whole buffer, as take() hands it out. */
  readonly whole: Buffer;
  readonly sizeClass: SizeClass;
  /** Native calls using the memory now: while above 0 it is not handed out again. */
  pins: number;
  /** In its class's free list. */
  free: boolean;
}

export class LargeBufferPool {
  private readonly classes: readonly SizeClass[];
  /** Every buffer this pool made, by its memory: only those are taken back. */
  private readonly ours = new WeakMap<ArrayBufferLike, PooledMemory>();
  private readonly idleMs: number;
  private lastTake = 0;
  private trimTimer: NodeJS.Timeout | null = null;
  // Runs only for buffers made, which the steady state does not do: free of cost per request.
  private readonly collections = new FinalizationRegistry<SizeClass>((sizeClass) => sizeClass.collected++);

  constructor(options: LargeBufferPoolOptions = {}) {
    const maxFree = options.maxFree ?? 32;
    const sizeClass = (size: number, classMaxFree: number): SizeClass =>
      ({ size, maxFree: classMaxFree, free: [], made: 0, collected: 0, dropped: { full: 0, pinned: 0, idle: 0 } });
    this.classes = [sizeClass(MEDIUM_BUFFER_SIZE, maxFree * 8), sizeClass(LARGE_BUFFER_SIZE, maxFree)];
    this.idleMs = options.idleMs ?? 30_000;
  }

  /** Free buffers held now (all classes). */
  get freeCount(): number {
    let count = 0;
    for (const c of this.classes) count += c.free.length;
    return count;
  }

  /** Counts per size class, read at scrape time. */
  stats(): MessageBufferStats {
    const of = (c: SizeClass): MessageBufferClassStats =>
      ({ made: c.made, live: c.made - c.collected, free: c.free.length, dropped: { ...c.dropped } });
    return { medium: of(this.classes[0]!), large: of(this.classes[1]!) };
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
      reused.free = false;
      return reused.whole;
    }
    const made = Buffer.allocUnsafeSlow(sizeClass.size);
    this.ours.set(made.buffer, { whole: made, sizeClass, pins: 0, free: false });
    sizeClass.made++;
    this.collections.register(made.buffer, sizeClass);
    return made;
  }

  /** Hand back a buffer (or any view of one) from take(); anything else is ignored. */
  give(view: Uint8Array): void {
    const entry = this.ours.get(view.buffer);
    // Pinned: a native call still uses it (past a JUKEBOX); the garbage collector frees it later.
    // Already free: a view handed back twice must not enter the free list twice.
    if (entry === undefined || entry.free) return;
    if (entry.pins > 0) {
      entry.sizeClass.dropped.pinned++;
      return;
    }
    const free = entry.sizeClass.free;
    if (free.length >= entry.sizeClass.maxFree) {
      entry.sizeClass.dropped.full++;
      return;
    }
    entry.free = true;
    free.push(entry);
    this.armTrim();
  }

  /** The threadpool is about to read or write this memory: it is not to be reused until unpin(). */
  pin(view: Uint8Array): void {
    const entry = this.ours.get(view.buffer);
    if (entry !== undefined) entry.pins++;
  }

  /**
   * The memory stays pinned for as long as `work` runs (a native call reading or writing it);
   * `then`, if given, maps its value once it is unpinned, in the same promise step: the hot
   * in-place procedures each save a promise that way.
   */
  whilePinned<T, R = T>(view: Uint8Array, work: () => Promise<T>, then?: (value: T) => R): Promise<R> {
    const entry = this.ours.get(view.buffer);
    if (entry === undefined) {
      // Memory not from the pool (a small reply) needs no pin.
      const running = work();
      return then ? running.then(then) : (running as unknown as Promise<R>);
    }
    entry.pins++;
    let running: Promise<T>;
    try {
      running = work();
    } catch (error) {
      entry.pins--;
      throw error;
    }
    // then(), not finally(): finally adds two promises and a closure of its own per call.
    return running.then(
      (value) => {
        entry.pins--;
        return then ? then(value) : (value as unknown as R);
      },
      (error: unknown) => {
        entry.pins--;
        throw error;
      },
    );
  }

  unpin(view: Uint8Array): void {
    const entry = this.ours.get(view.buffer);
    if (entry !== undefined && entry.pins > 0) entry.pins--;
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
        for (const entry of c.free) entry.free = false;
        c.dropped.idle += c.free.length;
        c.free.length = 0;
      }
    }
    else if (this.freeCount > 0) this.armTrim();
  };
}

/** The process's pool: replies and records of every connection share it. */
export const largeBuffers = new LargeBufferPool();
