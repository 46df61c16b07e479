// A grant as written by people and controllers: the config file's `grants[]` entries, the
// reference controller's HTTP API, and the controller protocol's Grant message all become this
// shape first, so one set of rules decides what a valid grant is.
import { isIP } from 'node:net';
import { Ajv } from 'ajv';
import { grantSchema } from '../config/schema.js';
import { describeAjvErrors } from '../config/describe.js';
import { normalizeSharePath } from './table.js';
import { DEFAULT_ANON_ID, type Access, type Grant, type GuestSelector, type Squash } from './types.js';

/** The snake_case document form (config file and HTTP API). */
export interface GrantDocument {
  id: string;
  share: string;
  backend: string;
  path: string;
  guest: GuestSelector;
  access?: Access;
  squash?: Squash;
  anon_uid?: number;
  anon_gid?: number;
}

/** A grant without its origin: what a controller sends. */
export type GrantSpec = Omit<Grant, 'source'>;

const ajv = new Ajv({ allErrors: true, strict: true });
const validateDocument = ajv.compile<GrantDocument>(grantSchema);

/** A share's path inside its backend: relative, no `..`, no NUL. */
export function checkSharePath(sharePath: string): string | undefined {
  if (sharePath.includes('\0')) return 'must not contain a NUL byte';
  const parts = sharePath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return "must not contain '..'";
  return undefined;
}

/**
 * The rules beyond the JSON schema, for a document that already passed it; problems are named
 * under `at` (`grants[2]`). Returns the grant with defaults filled in and its path normalized.
 */
export function grantFromDocument(doc: GrantDocument, at: string, problems: string[]): GrantSpec {
  const pathProblem = checkSharePath(doc.path);
  if (pathProblem) problems.push(`${at}.path: ${pathProblem}`);
  const guest = doc.guest;
  if ('tcp' in guest && isIP(guest.tcp) === 0) problems.push(`${at}.guest.tcp: ${guest.tcp} is not an IP address`);
  return {
    id: doc.id,
    share: doc.share,
    backend: doc.backend,
    path: normalizeSharePath(doc.path),
    guest,
    access: doc.access ?? 'rw',
    squash: doc.squash ?? 'root',
    anonUid: doc.anon_uid ?? DEFAULT_ANON_ID,
    anonGid: doc.anon_gid ?? DEFAULT_ANON_ID,
  };
}

/** Validates an untrusted grant document completely; problems are named under `at`. */
export function parseGrantDocument(raw: unknown, at: string): { grant: GrantSpec; problems: [] } | { grant: undefined; problems: string[] } {
  if (!validateDocument(raw)) return { grant: undefined, problems: describeAjvErrors(validateDocument.errors, at) };
  const problems: string[] = [];
  const grant = grantFromDocument(raw, at, problems);
  return problems.length > 0 ? { grant: undefined, problems } : { grant, problems: [] };
}

/** The document form of a grant, defaults written out (what the API and the state files show). */
export function grantToDocument(grant: GrantSpec): Required<GrantDocument> {
  return {
    id: grant.id,
    share: grant.share,
    backend: grant.backend,
    path: grant.path,
    guest: { ...grant.guest } as GuestSelector,
    access: grant.access,
    squash: grant.squash,
    anon_uid: grant.anonUid,
    anon_gid: grant.anonGid,
  };
}
