// The server's record of who mounted what, for DUMP (RFC 1813 section 5.2.2). It is advisory in
// the RFC (clients need not UMNT), so it is kept in memory and bounded: the oldest entry goes first.

export interface MountEntry {
  /** The peer identity (`tcp:ADDR`, `cid:N`, `vm:NAME`): what the channel says, not the client. */
  readonly hostname: string;
  readonly directory: string;
}

export const MOUNT_LIST_CAPACITY = 10_000;

export class MountList {
  /** Insertion-ordered: the first key is the oldest entry. */
  private readonly entries = new Map<string, MountEntry>();

  constructor(readonly capacity = MOUNT_LIST_CAPACITY) {}

  get size(): number {
    return this.entries.size;
  }

  /** Record a mount; mounting again refreshes the entry's age. */
  add(hostname: string, directory: string): void {
    const key = keyOf(hostname, directory);
    this.entries.delete(key);
    this.entries.set(key, { hostname, directory });
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }

  remove(hostname: string, directory: string): void {
    this.entries.delete(keyOf(hostname, directory));
  }

  removeAll(hostname: string): void {
    for (const [key, entry] of this.entries) {
      if (entry.hostname === hostname) this.entries.delete(key);
    }
  }

  /** One peer's entries, oldest first. */
  entriesOf(hostname: string): MountEntry[] {
    const out: MountEntry[] = [];
    for (const entry of this.entries.values()) {
      if (entry.hostname === hostname) out.push(entry);
    }
    return out;
  }
}

function keyOf(hostname: string, directory: string): string {
  // Identities contain no NUL, so the pair is unambiguous.
  return `${hostname}\0${directory}`;
}
