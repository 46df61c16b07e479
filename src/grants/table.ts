// The grant table: consulted on every MOUNT and every NFS request, so a revoked grant takes effect
// on the guest's very next request (DESIGN.md). Lookups are two Map gets.
import { guestIdentity, type Grant } from './types.js';

export interface ShareLocation {
  readonly backend: string;
  readonly path: string;
}

export class GrantError extends Error {
  constructor(
    readonly code: 'GRANT_DUPLICATE_ID' | 'GRANT_SHARE_CONFLICT' | 'GRANT_DUPLICATE_GUEST',
    message: string,
  ) {
    super(message);
  }
}

export class GrantTable {
  private readonly byId = new Map<string, Grant>();
  /** identity -> share -> grant */
  private readonly byIdentity = new Map<string, Map<string, Grant>>();
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

  /** Where a share lives, from any grant of it (all grants of a share agree: checked on insert). */
  location(share: string): ShareLocation | undefined {
    for (const grants of this.byIdentity.values()) {
      const grant = grants.get(share);
      if (grant) return { backend: grant.backend, path: grant.path };
    }
    return undefined;
  }

  all(): Grant[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /** Check that `grant` can join the table: unique id (unless replacing), one location per share. */
  private check(grant: Grant, replacing: Grant | undefined): void {
    if (this.byId.has(grant.id) && !replacing) {
      throw new GrantError('GRANT_DUPLICATE_ID', `grant ${grant.id} exists already`);
    }
    for (const other of this.byId.values()) {
      if (other.id === grant.id) continue;
      if (other.share === grant.share && (other.backend !== grant.backend || other.path !== grant.path)) {
        throw new GrantError(
          'GRANT_SHARE_CONFLICT',
          `share ${grant.share} is ${other.backend}:${other.path} in grant ${other.id}, not ${grant.backend}:${grant.path}`,
        );
      }
    }
    const existing = this.find(guestIdentity(grant.guest), grant.share);
    if (existing && existing.id !== grant.id) {
      throw new GrantError(
        'GRANT_DUPLICATE_GUEST',
        `share ${grant.share} is granted to this guest already by grant ${existing.id}`,
      );
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
    for (const grant of grants) staged.upsert(grant);
    const removed = this.all();
    this.byId.clear();
    this.byIdentity.clear();
    for (const grant of grants) this.attach(grant);
    this.emit(removed, [...grants]);
  }

  /** Called after every change (e.g. to close connections of guests left without grants). */
  onChange(listener: (change: { removed: Grant[]; added: Grant[] }) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private attach(grant: Grant): void {
    this.byId.set(grant.id, grant);
    const identity = guestIdentity(grant.guest);
    let shares = this.byIdentity.get(identity);
    if (!shares) this.byIdentity.set(identity, (shares = new Map()));
    shares.set(grant.share, grant);
  }

  private detach(grant: Grant): void {
    this.byId.delete(grant.id);
    const identity = guestIdentity(grant.guest);
    const shares = this.byIdentity.get(identity);
    if (!shares) return;
    if (shares.get(grant.share)?.id === grant.id) shares.delete(grant.share);
    if (shares.size === 0) this.byIdentity.delete(identity);
  }

  private emit(removed: Grant[], added: Grant[]): void {
    for (const listener of this.listeners) listener({ removed, added });
  }
}
