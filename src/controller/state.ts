// The reference controller's persistent state: every grant with the node it belongs to, and each
// node's revision counter within one epoch (proto/manila_gateway.proto "Revisions").
//
// File format (JSON, format 1):
//   { "format": 1, "epoch": "<hex>", "nodes": { "<node_id>": { "revision": N } },
//     "grants": [ { ...grantToDocument(grant), "node_id": "<node_id>" } ] }
//
// Changes run one at a time. Each one is staged, written durably, and only then made visible and
// announced to listeners (the sessions that push it): nothing is answered or pushed that a crash
// could take back.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { grantToDocument, parseGrantDocument, type GrantSpec } from '../grants/document.js';
import { writeFileDurably } from '../grants/durable.js';
import { GrantError, GrantTable } from '../grants/table.js';
import { ID, ID_RULE } from '../config/schema.js';

export const STATE_FORMAT = 1;

export interface StoredGrant {
  readonly grant: GrantSpec;
  readonly nodeId: string;
  /**
   * The node revision that last changed this grant. Not persisted: after a restart it is the node's
   * revision then, so the grant counts as pending until the next Snapshot's Ack reports it.
   */
  readonly changedAt: number;
}

/** One change as a node sees it, in revision order. */
export type NodeChange =
  | { kind: 'upsert'; nodeId: string; revision: number; grant: GrantSpec }
  | { kind: 'revoke'; nodeId: string; revision: number; grantId: string };

export type PutResult = { outcome: 'created' | 'replaced' | 'unchanged'; stored: StoredGrant; changes: NodeChange[] };

/** A state file that cannot be used; the message names the file and the problem. */
export class StateFileError extends Error {}

interface Snapshot {
  readonly grants: ReadonlyMap<string, StoredGrant>;
  readonly revisions: ReadonlyMap<string, number>;
}

/** The stored document of a grant: defaults written out, node_id last. */
export function storedDocument(stored: StoredGrant): Record<string, unknown> {
  return { ...grantToDocument(stored.grant), node_id: stored.nodeId };
}

function sameGrant(a: GrantSpec, b: GrantSpec): boolean {
  return JSON.stringify(grantToDocument(a)) === JSON.stringify(grantToDocument(b));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A GrantTable of `grants`; throws GrantError when they break the node's rules together. */
function tableOf(grants: Iterable<StoredGrant>): GrantTable {
  const table = new GrantTable();
  table.replaceAll([...grants].map((s) => ({ ...s.grant, source: 'controller' as const })));
  return table;
}

/** Checks a parsed state document completely; throws naming the first problem (without the file). */
function validate(raw: unknown): { epoch: string; snapshot: Snapshot } {
  if (!isPlainObject(raw)) throw new Error('(top level): must be a JSON object');
  for (const key of Object.keys(raw)) {
    if (!['format', 'epoch', 'nodes', 'grants'].includes(key)) throw new Error(`${key}: is not a known field`);
  }
  if (raw.format !== STATE_FORMAT) throw new Error(`format: must be ${STATE_FORMAT}, not ${JSON.stringify(raw.format)}`);
  if (typeof raw.epoch !== 'string' || raw.epoch === '') throw new Error('epoch: must be a non-empty string');
  if (!isPlainObject(raw.nodes)) throw new Error('nodes: must be an object');
  const revisions = new Map<string, number>();
  for (const [nodeId, entry] of Object.entries(raw.nodes)) {
    if (!ID.test(nodeId)) throw new Error(`nodes.${nodeId}: node id ${ID_RULE}`);
    if (!isPlainObject(entry) || Object.keys(entry).some((k) => k !== 'revision')) {
      throw new Error(`nodes.${nodeId}: must be { "revision": N }`);
    }
    const revision = entry.revision;
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) {
      throw new Error(`nodes.${nodeId}.revision: must be an integer >= 0`);
    }
    revisions.set(nodeId, revision);
  }
  if (!Array.isArray(raw.grants)) throw new Error('grants: must be an array');
  const grants = new Map<string, StoredGrant>();
  raw.grants.forEach((entry: unknown, i: number) => {
    const at = `grants[${i}]`;
    if (!isPlainObject(entry)) throw new Error(`${at}: must be an object`);
    const { node_id: nodeId, ...document } = entry;
    if (typeof nodeId !== 'string' || !ID.test(nodeId)) throw new Error(`${at}.node_id: ${ID_RULE}`);
    const parsed = parseGrantDocument(document, at);
    if (!parsed.grant) throw new Error(parsed.problems.join('; '));
    const revision = revisions.get(nodeId);
    if (revision === undefined) throw new Error(`${at}.node_id: node ${nodeId} has no entry in nodes`);
    if (grants.has(parsed.grant.id)) throw new Error(`${at}.id: grant ${parsed.grant.id} is given twice`);
    grants.set(parsed.grant.id, { grant: parsed.grant, nodeId, changedAt: revision });
  });
  // The file must hold what the API would have accepted: each node's grants fit together.
  for (const nodeId of revisions.keys()) {
    try {
      tableOf([...grants.values()].filter((s) => s.nodeId === nodeId));
    } catch (error) {
      if (error instanceof GrantError) throw new Error(`grants of node ${nodeId}: ${error.code}: ${error.message}`);
      throw error;
    }
  }
  return { epoch: raw.epoch, snapshot: { grants, revisions } };
}

export class ControllerState {
  private current: Snapshot;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(changes: NodeChange[]) => void>();

  private constructor(
    readonly file: string,
    readonly epoch: string,
    snapshot: Snapshot,
  ) {
    this.current = snapshot;
  }

  /** Loads `file`, or creates it (with a new epoch) when it does not exist. Throws StateFileError. */
  static async open(file: string): Promise<ControllerState> {
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new StateFileError(`state file ${file}: cannot be read: ${(error as Error).message}`);
      }
    }
    if (text === undefined) {
      const state = new ControllerState(file, randomBytes(16).toString('hex'), { grants: new Map(), revisions: new Map() });
      try {
        await mkdir(path.dirname(file), { recursive: true });
        await writeFileDurably(file, state.serialize(state.current));
      } catch (error) {
        throw new StateFileError(`state file ${file}: cannot be created: ${(error as Error).message}`);
      }
      return state;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new StateFileError(`state file ${file}: is not JSON: ${(error as Error).message}`);
    }
    try {
      const { epoch, snapshot } = validate(raw);
      return new ControllerState(file, epoch, snapshot);
    } catch (error) {
      throw new StateFileError(`state file ${file}: ${(error as Error).message}`);
    }
  }

  /** The node's current revision (0 for a node never given a grant). */
  revision(nodeId: string): number {
    return this.current.revisions.get(nodeId) ?? 0;
  }

  get(id: string): StoredGrant | undefined {
    return this.current.grants.get(id);
  }

  /** Every grant, sorted by id. */
  list(): StoredGrant[] {
    return [...this.current.grants.values()].sort((a, b) => (a.grant.id < b.grant.id ? -1 : a.grant.id > b.grant.id ? 1 : 0));
  }

  /** One node's grants, sorted by id. */
  nodeGrants(nodeId: string): StoredGrant[] {
    return this.list().filter((s) => s.nodeId === nodeId);
  }

  /** Every node that holds grants -> its grants sorted by id (one pass, for GET /v1/gateways). */
  byNode(): Map<string, StoredGrant[]> {
    const nodes = new Map<string, StoredGrant[]>();
    for (const stored of this.list()) {
      let grants = nodes.get(stored.nodeId);
      if (!grants) nodes.set(stored.nodeId, (grants = []));
      grants.push(stored);
    }
    return nodes;
  }

  /** Called after every committed change, synchronously, with the changes in revision order. */
  onChange(listener: (changes: NodeChange[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Creates or replaces grant `grant.id` on `nodeId`. Throws GrantError (nothing changed) when it
   * breaks that node's grant rules; a grant moving to another node is a Revoke on the old node and
   * an Upsert on the new one, each with its own revision.
   */
  put(nodeId: string, grant: GrantSpec): Promise<PutResult> {
    return this.serial(async () => {
      const previous = this.current.grants.get(grant.id);
      if (previous && previous.nodeId === nodeId && sameGrant(previous.grant, grant)) {
        return { outcome: 'unchanged' as const, stored: previous, changes: [] };
      }
      const table = tableOf([...this.current.grants.values()].filter((s) => s.nodeId === nodeId));
      table.upsert({ ...grant, source: 'controller' }); // throws GrantError
      const grants = new Map(this.current.grants);
      const revisions = new Map(this.current.revisions);
      const changes: NodeChange[] = [];
      if (previous && previous.nodeId !== nodeId) {
        const revision = (revisions.get(previous.nodeId) ?? 0) + 1;
        revisions.set(previous.nodeId, revision);
        changes.push({ kind: 'revoke', nodeId: previous.nodeId, revision, grantId: grant.id });
      }
      const revision = (revisions.get(nodeId) ?? 0) + 1;
      revisions.set(nodeId, revision);
      const stored: StoredGrant = { grant, nodeId, changedAt: revision };
      grants.set(grant.id, stored);
      changes.push({ kind: 'upsert', nodeId, revision, grant });
      await this.commit({ grants, revisions }, changes);
      return { outcome: previous ? ('replaced' as const) : ('created' as const), stored, changes };
    });
  }

  /** Removes a grant; resolves to what was removed, or undefined when there was no such grant. */
  remove(id: string): Promise<{ stored: StoredGrant; change: NodeChange } | undefined> {
    return this.serial(async () => {
      const previous = this.current.grants.get(id);
      if (!previous) return undefined;
      const grants = new Map(this.current.grants);
      grants.delete(id);
      const revisions = new Map(this.current.revisions);
      const revision = (revisions.get(previous.nodeId) ?? 0) + 1;
      revisions.set(previous.nodeId, revision);
      const change: NodeChange = { kind: 'revoke', nodeId: previous.nodeId, revision, grantId: id };
      await this.commit({ grants, revisions }, [change]);
      return { stored: previous, change };
    });
  }

  /**
   * Raises the node's revision to `atLeast` when it is lower, durably, and resolves to the
   * revisions before and after (equal when nothing changed). For a gateway that holds a later
   * revision of this epoch than the state does (the file was restored from an older copy): the
   * next Snapshot must be one the gateway accepts. Pushes nothing: no grant changed, and the
   * caller sends the Snapshot. The node's grants count as changed at the new revision, so they
   * are pending until an Ack of it.
   */
  advanceRevision(nodeId: string, atLeast: number): Promise<{ from: number; to: number }> {
    if (!Number.isSafeInteger(atLeast) || atLeast < 0) return Promise.reject(new RangeError(`revision ${atLeast}: must be an integer >= 0`));
    return this.serial(async () => {
      const from = this.current.revisions.get(nodeId) ?? 0;
      if (from >= atLeast) return { from, to: from };
      const revisions = new Map(this.current.revisions);
      revisions.set(nodeId, atLeast);
      const grants = new Map(this.current.grants);
      for (const [id, stored] of grants) {
        if (stored.nodeId === nodeId) grants.set(id, { ...stored, changedAt: atLeast });
      }
      await this.commit({ grants, revisions }, []);
      return { from, to: atLeast };
    });
  }

  /** Resolves once every change asked for so far is written (or has failed). */
  async idle(): Promise<void> {
    await this.tail;
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Durable first; only a written state becomes visible and is announced. */
  private async commit(next: Snapshot, changes: NodeChange[]): Promise<void> {
    await writeFileDurably(this.file, this.serialize(next));
    this.current = next;
    if (changes.length === 0) return;
    for (const listener of this.listeners) listener(changes);
  }

  private serialize(snapshot: Snapshot): string {
    const nodes: Record<string, { revision: number }> = {};
    for (const nodeId of [...snapshot.revisions.keys()].sort()) nodes[nodeId] = { revision: snapshot.revisions.get(nodeId)! };
    const grants = [...snapshot.grants.values()]
      .sort((a, b) => (a.grant.id < b.grant.id ? -1 : 1))
      .map(storedDocument);
    return `${JSON.stringify({ format: STATE_FORMAT, epoch: this.epoch, nodes, grants }, null, 2)}\n`;
  }
}
