// The grant store: the controller's grants as last applied on this node, kept in
// state_dir/grants.json so the gateway serves them at once after a restart even when the
// controller is unreachable (fail static). Written durably (writeFileDurably) before every ack.
import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurably } from './durable.js';
import { grantToDocument, parseGrantDocument, type GrantSpec } from './document.js';

export const GRANT_STORE_FILE = 'grants.json';
const FORMAT = 1;

export interface StoredGrants {
  /** The controller epoch the revision belongs to ('' before the first snapshot). */
  epoch: string;
  revision: number;
  /** Every grant the controller wants on this node, including ones that failed to apply here. */
  grants: GrantSpec[];
}

export const EMPTY_STORE: StoredGrants = { epoch: '', revision: 0, grants: [] };

export class GrantStoreError extends Error {}

export class GrantStore {
  readonly file: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.file = path.join(stateDir, GRANT_STORE_FILE);
  }

  /**
   * The stored state; EMPTY_STORE when there is none. A file that cannot be read back is moved
   * aside (never deleted: it may be needed to understand what happened) and reported through
   * `onCorrupt`, and the gateway starts from nothing until the controller sends a snapshot.
   */
  async load(onCorrupt: (problem: string, movedTo: string) => void): Promise<StoredGrants> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_STORE;
      throw new GrantStoreError(`${this.file}: cannot read (${(error as NodeJS.ErrnoException).code})`);
    }
    try {
      return parseStore(text);
    } catch (error) {
      const movedTo = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(this.file, movedTo);
      onCorrupt((error as Error).message, movedTo);
      return EMPTY_STORE;
    }
  }

  /** Durably replaces the stored state; calls are applied in order. */
  save(state: StoredGrants): Promise<void> {
    const text = `${JSON.stringify({
      format: FORMAT,
      epoch: state.epoch,
      revision: state.revision,
      saved_at: new Date().toISOString(),
      grants: state.grants.map(grantToDocument),
    })}\n`;
    const next = this.writing.then(() => writeFileDurably(this.file, text));
    this.writing = next.catch(() => undefined);
    return next;
  }
}

function parseStore(text: string): StoredGrants {
  const doc = JSON.parse(text) as Record<string, unknown>;
  if (typeof doc !== 'object' || doc === null) throw new Error('not a JSON object');
  if (doc.format !== FORMAT) throw new Error(`format ${String(doc.format)} is not ${FORMAT}`);
  if (typeof doc.epoch !== 'string') throw new Error('epoch: must be a string');
  if (!Number.isSafeInteger(doc.revision) || (doc.revision as number) < 0) throw new Error('revision: must be a whole number');
  if (!Array.isArray(doc.grants)) throw new Error('grants: must be a list');
  const ids = new Set<string>();
  const grants = doc.grants.map((raw, i) => {
    const parsed = parseGrantDocument(raw, `grants[${i}]`);
    if (!parsed.grant) throw new Error(parsed.problems.join('; '));
    if (ids.has(parsed.grant.id)) throw new Error(`grants[${i}].id: ${parsed.grant.id} is given twice`);
    ids.add(parsed.grant.id);
    return parsed.grant;
  });
  return { epoch: doc.epoch, revision: doc.revision as number, grants };
}
