// Applies what the controller sends to this node: checks the revision order of the protocol
// (proto/manila_gateway.proto, "Revisions"), makes the new state durable in the grant store, and
// only then changes the grant table that every guest request consults. A refused message changes
// nothing; a grant that cannot be served here (unknown backend, missing path, conflict) is kept
// in the store and reported as FAILED, and the rest are served.
import type { Logger } from 'pino';
import type { GrantSpec } from '../grants/document.js';
import { GrantError, type GrantTable } from '../grants/table.js';
import type { Grant } from '../grants/types.js';
import { DirectorySyncError } from '../grants/durable.js';
import { EMPTY_STORE, type GrantStore, type StoredGrants } from '../grants/store.js';
import type { ErrorCodeName, GrantResult } from './protocol.js';

export interface ApplierOptions {
  grants: GrantTable;
  /** Grants from the config file: always served, never touched by the controller. */
  staticGrants: readonly Grant[];
  store: GrantStore;
  /** Whether this node has a backend with that id. */
  hasBackend(id: string): boolean;
  /** Opens a granted share's root; throws an error with a `code` when it cannot be served. */
  openShare(share: string): Promise<unknown>;
  logger: Logger;
}

export type Outcome =
  | { ok: true; epoch: string; revision: number; results: GrantResult[] }
  | { ok: false; code: ErrorCodeName; message: string };

/** Opening share roots is file system work on the threadpool: this many at once. */
const OPEN_CONCURRENCY = 32;

const applied = (grantId: string): GrantResult => ({ grantId, state: 'APPLIED', reasonCode: '', reason: '' });
const revoked = (grantId: string): GrantResult => ({ grantId, state: 'REVOKED', reasonCode: '', reason: '' });
const failed = (grantId: string, reasonCode: string, reason: string): GrantResult => ({ grantId, state: 'FAILED', reasonCode, reason });

export class GrantApplier {
  private epochApplied = '';
  private revisionApplied = 0;
  /** The controller's grants for this node, in the order it sent them. */
  private pushed = new Map<string, GrantSpec>();
  private readonly status = new Map<string, GrantResult>();
  private queue: Promise<unknown> = Promise.resolve();
  private staticGrants: readonly Grant[];
  private staticIds: Set<string>;

  constructor(private readonly options: ApplierOptions) {
    this.staticGrants = options.staticGrants;
    this.staticIds = new Set(options.staticGrants.map((g) => g.id));
  }

  /** New static grants (a config reload): the table is rebuilt, pushed grants re-checked against them. */
  replaceStatic(grants: readonly Grant[]): Promise<GrantResult[]> {
    return this.serialized(async () => {
      this.staticGrants = grants;
      this.staticIds = new Set(grants.map((g) => g.id));
      return this.enforceAll();
    });
  }

  get epoch(): string {
    return this.epochApplied;
  }

  get revision(): number {
    return this.revisionApplied;
  }

  /** The last result of every pushed grant. */
  results(): GrantResult[] {
    return [...this.status.values()];
  }

  /**
   * Serves the static grants and, with `loadStore`, the stored ones (fail static: before any
   * controller answers). Without a controller in the config the store is left alone: grants an
   * operator stopped pushing must not come back.
   */
  start({ loadStore }: { loadStore: boolean }): Promise<{ stored: number; failed: number }> {
    return this.serialized(async () => {
      const stored = loadStore
        ? await this.options.store.load((problem, movedTo) =>
            this.options.logger.error({ problem, movedTo }, 'grant store unreadable: moved aside; serving static grants until the controller sends a snapshot'),
          )
        : EMPTY_STORE;
      this.commit(stored);
      const results = await this.enforceAll();
      const failures = results.filter((r) => r.state === 'FAILED').length;
      return { stored: stored.grants.length, failed: failures };
    });
  }

  /** Snapshot: replaces every pushed grant (grants it does not name are revoked). */
  snapshot(epoch: string, revision: number, grants: readonly GrantSpec[]): Promise<Outcome> {
    return this.serialized(async () => {
      if (epoch === this.epochApplied && revision < this.revisionApplied) {
        return this.outOfOrder(`snapshot revision ${revision} is older than the applied revision ${this.revisionApplied}`);
      }
      const previous = new Set(this.pushed.keys());
      const persisted = await this.persist({ epoch, revision, grants: [...grants] });
      if (persisted) return persisted;
      const results = await this.enforceAll();
      for (const id of previous) if (!this.pushed.has(id)) results.push(revoked(id));
      return { ok: true, epoch, revision, results };
    });
  }

  upsert(sessionEpoch: string, revision: number, grant: GrantSpec): Promise<Outcome> {
    return this.serialized(async () => {
      const refused = this.checkDelta(sessionEpoch, revision);
      if (refused) return refused;
      const grants = [...this.pushed.values()];
      const at = grants.findIndex((g) => g.id === grant.id);
      if (at >= 0) grants[at] = grant;
      else grants.push(grant);
      const persisted = await this.persist({ epoch: this.epochApplied, revision, grants });
      if (persisted) return persisted;
      const result = await this.enforceOne(grant);
      await this.retryFailed();
      return { ok: true, epoch: this.epochApplied, revision, results: [result] };
    });
  }

  revoke(sessionEpoch: string, revision: number, grantId: string): Promise<Outcome> {
    return this.serialized(async () => {
      const refused = this.checkDelta(sessionEpoch, revision);
      if (refused) return refused;
      // Fail closed: a revoke is enforced before it is durable, so a guest loses access at once
      // rather than after two fsyncs. If persisting fails the grant stays revoked in memory while
      // the revision does not advance; the controller is told PERSIST_FAILED and resends.
      if (this.options.grants.get(grantId)?.source === 'controller') this.options.grants.revoke(grantId);
      const grants = [...this.pushed.values()].filter((g) => g.id !== grantId);
      const persisted = await this.persist({ epoch: this.epochApplied, revision, grants });
      if (persisted) {
        this.status.set(grantId, failed(grantId, 'REVOKE_NOT_PERSISTED', 'revoked in memory; not yet durable'));
        return persisted;
      }
      this.status.delete(grantId);
      await this.retryFailed();
      return { ok: true, epoch: this.epochApplied, revision, results: [revoked(grantId)] };
    });
  }

  // ---- internals -----------------------------------------------------------------------------

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private checkDelta(sessionEpoch: string, revision: number): Outcome | undefined {
    if (this.epochApplied === '' || sessionEpoch !== this.epochApplied) {
      return this.outOfOrder(`this node holds epoch "${this.epochApplied}", not "${sessionEpoch}": a snapshot must come first`);
    }
    if (revision !== this.revisionApplied + 1) {
      return this.outOfOrder(`revision ${revision} does not follow the applied revision ${this.revisionApplied}`);
    }
    return undefined;
  }

  private outOfOrder(message: string): Outcome {
    return { ok: false, code: 'REVISION_OUT_OF_ORDER', message };
  }

  /** Makes `state` durable, then adopts it; on failure nothing changes and the refusal is returned. */
  private async persist(state: StoredGrants): Promise<Outcome | undefined> {
    try {
      await this.options.store.save(state);
    } catch (error) {
      if (error instanceof DirectorySyncError) {
        // The file holds the new state already; memory follows it. Only a crash in the next few
        // seconds could still lose the rename, and the controller's next snapshot would repair that.
        this.options.logger.error({ err: error.message }, 'grants written, but the directory sync failed: applied, durability uncertain');
        this.commit(state);
        return undefined;
      }
      this.options.logger.error({ err: (error as Error).message, file: this.options.store.file }, 'cannot persist grants; refused');
      return { ok: false, code: 'PERSIST_FAILED', message: `cannot persist grants: ${(error as Error).message}` };
    }
    this.commit(state);
    return undefined;
  }

  private commit(state: StoredGrants): void {
    this.epochApplied = state.epoch;
    this.revisionApplied = state.revision;
    this.pushed = new Map(state.grants.map((g) => [g.id, g]));
    for (const id of [...this.status.keys()]) if (!this.pushed.has(id)) this.status.delete(id);
  }

  /** Why a pushed grant cannot even be tried here, if it cannot. */
  private precheck(grant: GrantSpec): GrantResult | undefined {
    if (this.staticIds.has(grant.id)) return failed(grant.id, 'GRANT_DUPLICATE_ID', `grant id ${grant.id} belongs to a static grant in the config file`);
    if (!this.options.hasBackend(grant.backend)) return failed(grant.id, 'UNKNOWN_BACKEND', `this node has no backend ${grant.backend}`);
    return undefined;
  }

  /** The whole table from scratch: static grants first (they win every conflict), then pushed ones. */
  private async enforceAll(): Promise<GrantResult[]> {
    const results = new Map<string, GrantResult>();
    const candidates: Grant[] = [...this.staticGrants];
    for (const grant of this.pushed.values()) {
      const refused = this.precheck(grant);
      if (refused) results.set(grant.id, refused);
      else candidates.push({ ...grant, source: 'controller' });
    }
    const table = this.options.grants;
    const rejected = table.replaceLeniently(candidates);
    for (const [id, error] of rejected) results.set(id, failed(id, error.code, error.message));

    // Every pushed share in the table must open; the grants of one that cannot are taken out.
    const shares = [...new Set([...this.pushed.values()].filter((g) => table.get(g.id)?.source === 'controller').map((g) => g.share))];
    const unservable = new Map<string, GrantResult>();
    await forEachLimited(shares, OPEN_CONCURRENCY, async (share) => {
      const problem = await this.tryOpen(share);
      if (problem) unservable.set(share, problem);
    });
    if (unservable.size > 0) {
      for (const grant of this.pushed.values()) {
        const problem = unservable.get(grant.share);
        if (problem && table.get(grant.id)?.source === 'controller') results.set(grant.id, { ...problem, grantId: grant.id });
      }
      // A backend that is down keeps its grants in the table: its guests wait (JUKEBOX), they are not refused.
      const refused = (share: string) => unservable.has(share) && !waitsForBackend(unservable.get(share)!);
      table.replaceLeniently(table.all().filter((g) => g.source !== 'controller' || !refused(g.share)));
    }
    const out: GrantResult[] = [];
    for (const grant of this.pushed.values()) out.push(results.get(grant.id) ?? applied(grant.id));
    this.status.clear();
    for (const result of out) this.status.set(result.grantId, result);
    return out;
  }

  /** One grant into the live table (an upsert, or a retry of a failed grant). */
  private async enforceOne(grant: GrantSpec): Promise<GrantResult> {
    const table = this.options.grants;
    const drop = () => {
      if (table.get(grant.id)?.source === 'controller') table.revoke(grant.id);
    };
    const refused = this.precheck(grant);
    let result: GrantResult;
    if (refused) {
      drop();
      result = refused;
    } else {
      try {
        table.upsert({ ...grant, source: 'controller' });
        const problem = await this.tryOpen(grant.share);
        if (problem && !waitsForBackend(problem)) drop();
        result = problem ? { ...problem, grantId: grant.id } : applied(grant.id);
      } catch (error) {
        if (!(error instanceof GrantError)) throw error;
        // The new version does not fit: the old one is not what the controller wants either.
        drop();
        result = failed(grant.id, error.code, error.message);
      }
    }
    this.status.set(grant.id, result);
    return result;
  }

  /**
   * Grants that failed because their backend could not be mounted or did not answer are tried
   * again (the mount manager keeps its own backoff); `backend` limits it to one backend. Returns
   * how many are served now.
   */
  retryUnavailable(backend?: string): Promise<number> {
    return this.serialized(async () => {
      let served = 0;
      for (const result of [...this.status.values()]) {
        const grant = this.pushed.get(result.grantId);
        if (result.state !== 'FAILED' || !grant || !result.reasonCode.startsWith('BACKEND_')) continue;
        if (backend !== undefined && grant.backend !== backend) continue;
        const now = await this.enforceOne(grant);
        if (now.state === 'APPLIED') {
          served++;
          this.options.logger.info({ grant: grant.id, backend: grant.backend }, 'grant served now that its backend is up');
        }
      }
      return served;
    });
  }

  /** After a change, grants that failed on a conflict may fit now. */
  private async retryFailed(): Promise<void> {
    for (const result of [...this.status.values()]) {
      const grant = this.pushed.get(result.grantId);
      if (result.state === 'FAILED' && grant && result.reasonCode.startsWith('GRANT_')) await this.enforceOne(grant);
    }
  }

  private async tryOpen(share: string): Promise<GrantResult | undefined> {
    try {
      await this.options.openShare(share);
      return undefined;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      return failed('', typeof code === 'string' ? code : 'SHARE_OPEN_FAILED', (error as Error).message);
    }
  }
}

/**
 * A grant that failed because its backend cannot be mounted or does not answer: reported FAILED,
 * but kept in the table, so its guests' requests wait (NFS3ERR_JUKEBOX) instead of being refused,
 * and it is served as soon as the backend is back.
 */
function waitsForBackend(result: GrantResult): boolean {
  return result.reasonCode.startsWith('BACKEND_');
}

async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
