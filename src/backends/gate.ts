// Per-backend admission: a bounded number of operations in flight on one backend, and an answer
// within a bound whatever the backend does.
//
// A hung backend (a FUSE daemon that stopped answering, an MDS that went away, a hard-mounted
// filer) blocks the threadpool thread that called into it, and nothing in user space can wake that
// thread. So a slot is held until the operation really returns, not until we gave up on it: at most
// `limit` threads can ever be stuck on one backend, and the rest of the pool stays free for the
// other backends. The caller is answered at the deadline anyway (NFS3ERR_JUKEBOX: "try again
// later", RFC 1813 section 2.6), and a late result is dropped.

import { performance } from 'node:perf_hooks';

export type GateOutcome<T> = { ok: true; value: T } | { ok: false; reason: 'timeout' | 'overloaded' | 'suspended' };

export interface GateOptions {
  /** Operations running at once on this backend. */
  limit: number;
  /** From admission (queue wait included) to the answer. */
  timeoutMs: number;
  /** Waiting operations beyond this are refused at once. */
  queueLimit?: number;
  /** Told once per operation answered without its result: deadline passed, suspended or overloaded (metrics). */
  onRefused?: () => void;
}

/**
 * One admitted operation. Deadlines are admission time + timeoutMs, the same bound for all, so
 * admission order is deadline order: one timer per gate, armed for the oldest unanswered call,
 * replaces a setTimeout/clearTimeout pair per operation (visible in GETATTR profiles).
 */
class GateCall<T> {
  answered = false;
  queued = false;
  /** When its work started (ms since the epoch; 0: not yet), and whether that work has settled. */
  startedAt = 0;
  settled = false;
  constructor(
    readonly work: () => Promise<T>,
    readonly resolve: (outcome: GateOutcome<T>) => void,
    readonly reject: (error: Error) => void,
    readonly deadline: number,
    readonly onLate: ((value: T) => void) | undefined,
    readonly onSettled: (() => void) | undefined,
  ) {}
}

/**
 * Items in the order they came, the done ones dropped lazily from the front and compacted when
 * they pile up behind a slow (or hung) one: constant work per item, with no Map entry set and
 * deleted per operation. The gate keeps its admitted calls (done: answered) and its started ones
 * (done: settled) this way.
 */
class LazyFifo<T> {
  /** items[head, tail) are queued; slots outside are undefined, kept for the next pushes. */
  private items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  constructor(private readonly isDone: (item: T) => boolean) {}

  push(item: T): void {
    // Into a slot kept from before: emptying with length = 0 let the array go, and regrowing it
    // after every drain was garbage per operation.
    if (this.tail < this.items.length) this.items[this.tail] = item;
    else this.items.push(item);
    this.tail++;
  }

  /** The oldest item not dropped yet. */
  get first(): T | undefined {
    return this.head < this.tail ? this.items[this.head] : undefined;
  }

  /** Drops the done items at the front, compacting when done ones far outnumber `live`; true when empty. */
  drop(live: number): boolean {
    const items = this.items;
    while (this.head < this.tail && this.isDone(items[this.head]!)) items[this.head++] = undefined;
    if (this.head === this.tail) {
      this.head = this.tail = 0;
      // A burst's worth of slots is not kept for good.
      if (items.length > 4096) this.items = [];
      return true;
    }
    if (this.head > 1024 || this.tail - this.head > 2 * live + 1024) {
      let kept = 0;
      for (let i = this.head; i < this.tail; i++) {
        const item = items[i]!;
        items[i] = undefined;
        if (!this.isDone(item)) items[kept++] = item;
      }
      this.head = 0;
      this.tail = kept;
    }
    return false;
  }
}

export class BackendGate {
  private running = 0;
  /** Started operations in start order: the oldest running one is the first not settled. */
  private readonly started = new LazyFifo<GateCall<unknown>>((call) => call.settled);
  /** When an operation last returned (ms since the epoch; 0: never). */
  lastReturnAt = 0;
  /** Admitted, waiting for a slot (in admission order). */
  private readonly queue: GateCall<unknown>[] = [];
  /** Admitted and not yet answered, in admission (so deadline) order. */
  private readonly pending = new LazyFifo<GateCall<unknown>>((call) => call.answered);
  private deadlineTimer: NodeJS.Timeout | null = null;
  private readonly queueLimit: number;
  private paused = false;

  /** True while the backend is known to hang: new operations are refused at once, so no more threads get stuck. */
  get suspended(): boolean {
    return this.paused;
  }

  set suspended(value: boolean) {
    this.paused = value;
    if (!value) this.startQueued();
  }

  constructor(private readonly options: GateOptions) {
    this.queueLimit = options.queueLimit ?? 1024;
  }

  /** Operations started and not yet returned (including those already answered with a timeout). */
  get inflight(): number {
    return this.running;
  }

  /**
   * Runs `work` when a slot is free. Resolves with its value, or with a timeout once `timeoutMs`
   * has passed since this call; `work` itself keeps its slot until it settles, and a value it
   * settles with after that is given to onLate (to release what it holds). onSettled is called once
   * `work` has settled, or once it is certain never to run (refused, or expired while queued): what
   * the work reads (the request's pinned bytes) may be let go then, and not before.
   */
  run<T>(work: () => Promise<T>, onLate?: (value: T) => void, onSettled?: () => void): Promise<GateOutcome<T>> {
    if (this.suspended) return this.refuse('suspended', onSettled);
    if (this.running >= this.options.limit && this.queue.length >= this.queueLimit) return this.refuse('overloaded', onSettled);
    return new Promise<GateOutcome<T>>((resolve, reject) => {
      const call = new GateCall<T>(work, resolve, reject, performance.now() + this.options.timeoutMs, onLate, onSettled);
      this.pending.push(call as GateCall<unknown>);
      if (this.deadlineTimer === null) this.armDeadline(this.options.timeoutMs);
      if (this.running < this.options.limit) {
        this.start(call);
      } else {
        call.queued = true;
        this.queue.push(call as GateCall<unknown>);
      }
    });
  }

  private start<T>(call: GateCall<T>): void {
    call.queued = false;
    this.running++;
    call.startedAt = Date.now();
    this.started.push(call as GateCall<unknown>);
    let settled: Promise<T>;
    try {
      settled = call.work();
    } catch (error) {
      settled = Promise.reject(error);
    }
    settled.then(
      (value) => {
        // A value nobody waits for any more (answered at the deadline) may own something: a pipe.
        try {
          if (call.answered) call.onLate?.(value);
          else this.answer(call, { ok: true, value });
        } finally {
          call.onSettled?.();
          this.finish(call);
        }
      },
      (error: unknown) => {
        this.answer(call, error instanceof Error ? error : new Error(String(error)));
        call.onSettled?.();
        this.finish(call);
      },
    );
  }

  private answer<T>(call: GateCall<T>, outcome: GateOutcome<T> | Error): void {
    if (call.answered) return;
    call.answered = true;
    if (outcome instanceof Error) call.reject(outcome);
    else call.resolve(outcome);
    // Nothing left to time out: no timer keeps the process up (a daemon stopping, a test ending).
    if (this.pending.drop(this.running + this.queue.length) && this.deadlineTimer !== null) {
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = null;
    }
  }

  private armDeadline(delayMs: number): void {
    this.deadlineTimer = setTimeout(this.expire, Math.max(1, delayMs));
  }

  /** Answers every call past its deadline; re-arms for the oldest one left. */
  private readonly expire = (): void => {
    this.deadlineTimer = null;
    const now = performance.now(); // monotonic: a clock step must not answer everything, or nothing
    for (let call = this.pending.first; call !== undefined; call = this.pending.first) {
      if (call.answered) {
        this.pending.drop(this.running + this.queue.length);
        continue;
      }
      if (call.deadline > now) break;
      if (call.queued) {
        const at = this.queue.indexOf(call);
        if (at >= 0) this.queue.splice(at, 1);
        call.queued = false;
        call.onSettled?.(); // it will never run
      }
      this.options.onRefused?.();
      // answer() drops this call and any answered ones behind it
      this.answer(call, { ok: false, reason: 'timeout' });
    }
    const oldest = this.pending.first;
    if (oldest !== undefined) this.armDeadline(oldest.deadline - now);
  };

  private refuse<T>(reason: 'suspended' | 'overloaded', onSettled: (() => void) | undefined): Promise<GateOutcome<T>> {
    this.options.onRefused?.();
    onSettled?.();
    return Promise.resolve({ ok: false, reason });
  }

  /** Since when the oldest running operation has been running, if any is. */
  oldestRunningSince(): number | undefined {
    return this.started.first?.startedAt;
  }

  private finish<T>(call: GateCall<T>): void {
    this.running--;
    call.settled = true;
    this.started.drop(this.running);
    this.lastReturnAt = Date.now();
    this.startQueued();
  }

  private startQueued(): void {
    // While suspended, queued operations are not started: they are answered at their deadline.
    while (!this.paused && this.running < this.options.limit && this.queue.length > 0) this.start(this.queue.shift()!);
  }
}
