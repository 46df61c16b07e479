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

export class BackendGate {
  private running = 0;
  /**
   * Started operations in start order, the settled ones dropped lazily from the front (as
   * `pending`): the oldest running one is the first unsettled. A Map of start times counted up
   * and down was an entry set and deleted per operation.
   */
  private started: GateCall<unknown>[] = [];
  private startedHead = 0;
  /** When an operation last returned (ms since the epoch; 0: never). */
  lastReturnAt = 0;
  /** Admitted, waiting for a slot (in admission order). */
  private readonly queue: GateCall<unknown>[] = [];
  /** Admitted and not yet answered, in admission (so deadline) order; answered ones are dropped lazily. */
  private pending: GateCall<unknown>[] = [];
  private pendingHead = 0;
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
    // Drop answered calls from the front; compact when the answered ones behind a slow call pile up.
    const pending = this.pending;
    while (this.pendingHead < pending.length && pending[this.pendingHead]!.answered) this.pendingHead++;
    if (this.pendingHead === pending.length) {
      pending.length = 0;
      this.pendingHead = 0;
      // Nothing left to time out: no timer keeps the process up (a daemon stopping, a test ending).
      if (this.deadlineTimer !== null) {
        clearTimeout(this.deadlineTimer);
        this.deadlineTimer = null;
      }
    } else if (this.pendingHead > 1024 || pending.length - this.pendingHead > 2 * (this.running + this.queue.length) + 1024) {
      this.pending = pending.slice(this.pendingHead).filter((c) => !c.answered);
      this.pendingHead = 0;
    }
  }

  private armDeadline(delayMs: number): void {
    this.deadlineTimer = setTimeout(this.expire, Math.max(1, delayMs));
  }

  /** Answers every call past its deadline; re-arms for the oldest one left. */
  private readonly expire = (): void => {
    this.deadlineTimer = null;
    const now = performance.now(); // monotonic: a clock step must not answer everything, or nothing
    while (this.pendingHead < this.pending.length) {
      const call = this.pending[this.pendingHead]!;
      if (!call.answered) {
        if (call.deadline > now) break;
        if (call.queued) {
          const at = this.queue.indexOf(call);
          if (at >= 0) this.queue.splice(at, 1);
          call.queued = false;
          call.onSettled?.(); // it will never run
        }
        this.options.onRefused?.();
        // answer() moves pendingHead past this call and any answered ones behind it
        this.answer(call, { ok: false, reason: 'timeout' });
        continue;
      }
      this.pendingHead++;
    }
    if (this.pendingHead >= this.pending.length) {
      this.pending.length = 0;
      this.pendingHead = 0;
      return;
    }
    this.armDeadline(this.pending[this.pendingHead]!.deadline - now);
  };

  private refuse<T>(reason: 'suspended' | 'overloaded', onSettled: (() => void) | undefined): Promise<GateOutcome<T>> {
    this.options.onRefused?.();
    onSettled?.();
    return Promise.resolve({ ok: false, reason });
  }

  /** Since when the oldest running operation has been running, if any is. */
  oldestRunningSince(): number | undefined {
    return this.startedHead < this.started.length ? this.started[this.startedHead]!.startedAt : undefined;
  }

  private finish<T>(call: GateCall<T>): void {
    this.running--;
    call.settled = true;
    const started = this.started;
    while (this.startedHead < started.length && started[this.startedHead]!.settled) this.startedHead++;
    if (this.startedHead === started.length) {
      started.length = 0;
      this.startedHead = 0;
    } else if (this.startedHead > 1024 || started.length - this.startedHead > 2 * this.running + 1024) {
      // settled ones piled up behind a slow (or hung) one
      this.started = started.slice(this.startedHead).filter((c) => !c.settled);
      this.startedHead = 0;
    }
    this.lastReturnAt = Date.now();
    this.startQueued();
  }

  private startQueued(): void {
    // While suspended, queued operations are not started: they are answered at their deadline.
    while (!this.paused && this.running < this.options.limit && this.queue.length > 0) this.start(this.queue.shift()!);
  }
}
