// Per-backend admission: a bounded number of operations in flight on one backend, and an answer
// within a bound whatever the backend does.
//
// A hung backend (a FUSE daemon that stopped answering, an MDS that went away, a hard-mounted
// filer) blocks the threadpool thread that called into it, and nothing in user space can wake that
// thread. So a slot is held until the operation really returns, not until we gave up on it: at most
// `limit` threads can ever be stuck on one backend, and the rest of the pool stays free for the
// other backends. The caller is answered at the deadline anyway (NFS3ERR_JUKEBOX: "try again
// later", RFC 1813 section 2.6), and a late result is dropped.

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

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

export class BackendGate {
  private running = 0;
  /** Start times of the running operations (a multiset: start time -> count). */
  private readonly started = new Map<number, number>();
  /** When an operation last returned (ms since the epoch; 0: never). */
  lastReturnAt = 0;
  private readonly queue: Waiter[] = [];
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
   * has passed since this call; `work` itself keeps its slot until it settles.
   */
  run<T>(work: () => Promise<T>): Promise<GateOutcome<T>> {
    if (this.suspended) return this.refuse('suspended');
    if (this.running >= this.options.limit && this.queue.length >= this.queueLimit) return this.refuse('overloaded');
    return new Promise<GateOutcome<T>>((resolve, reject) => {
      let answered = false;
      const answer = (outcome: GateOutcome<T> | Error) => {
        if (answered) return;
        answered = true;
        clearTimeout(waiter.timer);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const start = () => {
        this.running++;
        const at = Date.now();
        this.started.set(at, (this.started.get(at) ?? 0) + 1);
        let settled: Promise<T>;
        try {
          settled = work();
        } catch (error) {
          settled = Promise.reject(error);
        }
        settled.then(
          (value) => answer({ ok: true, value }),
          (error: unknown) => answer(error instanceof Error ? error : new Error(String(error))),
        ).finally(() => this.finish(at));
      };
      const waiter: Waiter = {
        start,
        timer: setTimeout(() => {
          const queued = this.queue.indexOf(waiter);
          if (queued >= 0) this.queue.splice(queued, 1);
          if (answered) return;
          this.options.onRefused?.();
          answer({ ok: false, reason: 'timeout' });
        }, this.options.timeoutMs),
      };
      if (this.running < this.options.limit) start();
      else this.queue.push(waiter);
    });
  }

  private refuse<T>(reason: 'suspended' | 'overloaded'): Promise<GateOutcome<T>> {
    this.options.onRefused?.();
    return Promise.resolve({ ok: false, reason });
  }

  /** Since when the oldest running operation has been running, if any is. */
  oldestRunningSince(): number | undefined {
    let oldest: number | undefined;
    for (const at of this.started.keys()) if (oldest === undefined || at < oldest) oldest = at;
    return oldest;
  }

  private finish(at: number): void {
    this.running--;
    const left = (this.started.get(at) ?? 1) - 1;
    if (left > 0) this.started.set(at, left);
    else this.started.delete(at);
    this.lastReturnAt = Date.now();
    this.startQueued();
  }

  private startQueued(): void {
    // While suspended, queued operations are not started: they are answered at their deadline.
    while (!this.paused && this.running < this.options.limit && this.queue.length > 0) this.queue.shift()!.start();
  }
}
