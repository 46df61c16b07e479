// The grant table: consulted on every MOUNT and every NFS request, so a revoked grant takes effect
// on the guest's very next request (DESIGN.md). Lookups are two Map gets; every insert is checked
// in time proportional to the share path's depth, so a 10,000-grant snapshot stays cheap.
import { guestIdentity, type Grant } from './types.js';

export interface ShareLocation {
  readonly backend: string;
  readonly path: string;
}

export type GrantErrorCode =
  | 'GRANT_DUPLICATE_ID'
  | 'GRANT_SHARE_CONFLICT'
  | 'GRANT_DUPLICATE_GUEST'
  | 'GRANT_SHARE_NESTED';

export class GrantError extends Error {
  constructor(
    readonly code: GrantErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A share path's components without empty and "." parts: `a//b/./c/` -> `a/b/c`. */
export function normalizeSharePath(sharePath: string): string {
  return sharePath
    .split('/')
    .filter((part) => part !== '' && part !== '.')
    .join('/');
}

/** Every proper ancestor of a normalized path, the backend root ('') first. */
function ancestorsOf(normalized: string): string[] {
  const parts = normalized === '' ? [] : normalized.split('/');
  const out: string[] = [];
  for (let i = 0; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

interface ShareEntry {
  readonly backend: string;
  readonly path: string;
  readonly normalized: string;
  grants: number;
}

export class GrantTable {
  private readonly byId = new Map<string, Grant>();
  /** identity -> share -> grant */
  private readonly byIdentity = new Map<string, Map<string, Grant>>();
  /** share -> where it lives and how many grants name it */
  private readonly shares = new Map<string, ShareEntry>();
  /** backend -> normalized share path -> share id */
  private readonly sharePaths = new Map<string, Map<string, string>>();
  /** backend -> normalized path -> how many share paths lie strictly beneath it */
  private readonly ancestorPaths = new Map<string, Map<string, number>>();
  private readonly listeners = new Set<(change: { removed: Grant[]; added: Grant[] }) => void>();

  /** The grant that lets `identity` use `share`, or undefined. */
  find(identity: string, share: string): Grant | undefined {
    return this.byIdentity.get(identity)?.get(share);
  }

  /** Share ids granted to `identity`, sorted. */
  sharesFor(identity: string): string[] {
    const shares = this.byIdentity.get(identity);
    return shares ? [...shares.keys()].sort() : [];
  }

  /** Whether `identity` holds any grant at all. */
  hasAny(identity: string): boolean {
    return (this.byIdentity.get(identity)?.size ?? 0) > 0;
  }

  /** Where a share lives (all grants of a share agree: checked on insert). */
  location(share: string): ShareLocation | undefined {
    const entry = this.shares.get(share);
    return entry ? { backend: entry.backend, path: entry.path } : undefined;
  }

  get(id: string): Grant | undefined {
    return this.byId.get(id);
  }

  all(): Grant[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * Check that `grant` can join the table (replacing `previous`, the grant with its id, if any):
   * a unique id; one location per share; one share per guest; and no share inside another share
   * of the same backend (a guest of the outer one could move the inner one's files around).
   */
  private check(grant: Grant, previous: Grant | undefined): void {
    const share = this.shares.get(grant.share);
    // The grant being replaced stops counting: a share's only grant may move it.
    const movingAlone = previous !== undefined && previous.share === grant.share && share?.grants === 1;
    const normalized = normalizeSharePath(grant.path);
    if (share && !movingAlone && (share.backend !== grant.backend || share.normalized !== normalized)) {
      throw new GrantError(
        'GRANT_SHARE_CONFLICT',
        `share ${grant.share} is ${share.backend}:${share.path}, not ${grant.backend}:${grant.path}`,
      );
    }
    const existing = this.find(guestIdentity(grant.guest), grant.share);
    if (existing && existing.id !== grant.id) {
      throw new GrantError('GRANT_DUPLICATE_GUEST', `share ${grant.share} is granted to this guest already by grant ${existing.id}`);
    }
    if (share && !movingAlone) return; // same place as before: nesting was checked when it came
    const ignore = movingAlone ? share : undefined;
    const paths = this.sharePaths.get(grant.backend);
    for (const candidate of [...ancestorsOf(normalized), normalized]) {
      const other = paths?.get(candidate);
      if (other !== undefined && other !== grant.share && !(ignore && ignore.normalized === candidate)) {
        throw new GrantError(
          'GRANT_SHARE_NESTED',
          `share ${grant.share} (${grant.backend}:${grant.path}) would be ${candidate === normalized ? 'the same directory as' : 'inside'} share ${other}`,
        );
      }
    }
    const below = this.ancestorPaths.get(grant.backend)?.get(normalized) ?? 0;
    const ignoredBelow = ignore && ancestorsOf(ignore.normalized).includes(normalized) ? 1 : 0;
    if (below - ignoredBelow > 0) {
      throw new GrantError('GRANT_SHARE_NESTED', `share ${grant.share} (${grant.backend}:${grant.path}) would contain another share`);
    }
  }

  /** Insert or replace a grant by id. Throws GrantError and changes nothing when it does not fit. */
  upsert(grant: Grant): void {
    const previous = this.byId.get(grant.id);
    this.check(grant, previous);
    if (previous) this.detach(previous);
    this.attach(grant);
    this.emit(previous ? [previous] : [], [grant]);
  }

  /** Remove a grant; returns it, or undefined when there was none. */
  revoke(id: string): Grant | undefined {
    const grant = this.byId.get(id);
    if (!grant) return undefined;
    this.detach(grant);
    this.emit([grant], []);
    return grant;
  }

  /** Replace the whole table, all or nothing. */
  replaceAll(grants: readonly Grant[]): void {
    const staged = new GrantTable();
    for (const grant of grants) {
      if (staged.byId.has(grant.id)) throw new GrantError('GRANT_DUPLICATE_ID', `grant ${grant.id} is given twice`);
      staged.upsert(grant);
    }
    const removed = this.all();
    this.clear();
    for (const grant of grants) this.attach(grant);
    this.emit(removed, [...grants]);
  }

  /**
   * Replace the whole table with as many of `grants` as fit, in order: a grant that breaks a rule
   * given the ones before it is left out and reported, the rest go in. One change is announced,
   * holding only the grants that really changed (so a snapshot that repeats the current state
   * touches nothing).
   */
  replaceLeniently(grants: readonly Grant[]): Map<string, GrantError> {
    const staged = new GrantTable();
    const rejected = new Map<string, GrantError>();
    for (const grant of grants) {
      try {
        if (staged.byId.has(grant.id)) throw new GrantError('GRANT_DUPLICATE_ID', `grant id ${grant.id} is used by another grant`);
        staged.upsert(grant);
      } catch (error) {
        if (!(error instanceof GrantError)) throw error;
        rejected.set(grant.id, error);
      }
    }
    const removed = this.all().filter((old) => !sameGrant(old, staged.byId.get(old.id)));
    const added = staged.all().filter((grant) => !sameGrant(grant, this.byId.get(grant.id)));
    this.clear();
    for (const grant of staged.byId.values()) this.attach(grant);
    if (removed.length > 0 || added.length > 0) this.emit(removed, added);
    return rejected;
  }

  /** Called after every change (e.g. to close connections of guests left without grants). */
  onChange(listener: (change: { removed: Grant[]; added: Grant[] }) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private clear(): void {
    this.byId.clear();
    this.byIdentity.clear();
    this.shares.clear();
    this.sharePaths.clear();
    this.ancestorPaths.clear();
  }

  private attach(grant: Grant): void {
    this.byId.set(grant.id, grant);
    const identity = guestIdentity(grant.guest);
    let shares = this.byIdentity.get(identity);
    if (!shares) this.byIdentity.set(identity, (shares = new Map()));
    shares.set(grant.share, grant);
    const entry = this.shares.get(grant.share);
    if (entry) {
      entry.grants++;
      return;
    }
    const normalized = normalizeSharePath(grant.path);
    this.shares.set(grant.share, { backend: grant.backend, path: grant.path, normalized, grants: 1 });
    let paths = this.sharePaths.get(grant.backend);
    if (!paths) this.sharePaths.set(grant.backend, (paths = new Map()));
    paths.set(normalized, grant.share);
    let ancestors = this.ancestorPaths.get(grant.backend);
    if (!ancestors) this.ancestorPaths.set(grant.backend, (ancestors = new Map()));
    for (const ancestor of ancestorsOf(normalized)) ancestors.set(ancestor, (ancestors.get(ancestor) ?? 0) + 1);
  }

  private detach(grant: Grant): void {
    this.byId.delete(grant.id);
    const identity = guestIdentity(grant.guest);
    const shares = this.byIdentity.get(identity);
    if (shares?.get(grant.share)?.id === grant.id) shares.delete(grant.share);
    if (shares && shares.size === 0) this.byIdentity.delete(identity);
    const entry = this.shares.get(grant.share);
    if (!entry || --entry.grants > 0) return;
    this.shares.delete(grant.share);
    this.sharePaths.get(entry.backend)?.delete(entry.normalized);
    const ancestors = this.ancestorPaths.get(entry.backend);
    if (!ancestors) return;
    for (const ancestor of ancestorsOf(entry.normalized)) {
      const left = (ancestors.get(ancestor) ?? 1) - 1;
      if (left > 0) ancestors.set(ancestor, left);
      else ancestors.delete(ancestor);
    }
  }

  private emit(removed: Grant[], added: Grant[]): void {
    for (const listener of this.listeners) listener({ removed, added });
  }
}

/** Whether two grants say exactly the same thing. */
export function sameGrant(a: Grant | undefined, b: Grant | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.id === b.id &&
    a.share === b.share &&
    a.backend === b.backend &&
    a.path === b.path &&
    guestIdentity(a.guest) === guestIdentity(b.guest) &&
    a.access === b.access &&
    a.squash === b.squash &&
    a.anonUid === b.anonUid &&
    a.anonGid === b.anonGid &&
    a.source === b.source
  );
}
