// The reference controller's HTTP JSON API (DESIGN.md "Interfaces others rely on"):
//   POST /v1/grants, GET /v1/grants, GET|DELETE /v1/grants/{id}, GET /v1/gateways, GET /healthz.
// Every answer is JSON; an error is { "error": "<field>: <problem>" }.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { parseGrantDocument } from '../grants/document.js';
import { GrantError } from '../grants/table.js';
import type { SessionHub } from './sessions.js';
import { storedDocument, type ControllerState } from './state.js';
import { ID, ID_RULE } from '../config/schema.js';

export const MAX_BODY_BYTES = 1024 * 1024;
/** A body past the limit is read and dropped up to here (so the client sees the 413), then cut. */
const MAX_DRAIN_BYTES = 64 * MAX_BODY_BYTES;

/** Compares bearer tokens in constant time: hashing first makes the lengths equal. */
export function bearerMatches(header: string | undefined, tokenHash: Buffer): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  if (!match) return false;
  return timingSafeEqual(createHash('sha256').update(match[1]!).digest(), tokenHash);
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The request body, at most MAX_BODY_BYTES; past that, 413 once the client has finished sending. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else if (size > MAX_DRAIN_BYTES) req.destroy(); // not worth reading any further
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) reject(new HttpError(413, `body: is larger than ${MAX_BODY_BYTES} bytes`));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

interface ApiOptions {
  state: ControllerState;
  hub: SessionHub;
  logger: Logger;
  /** sha256 of the bearer token, when one is required */
  tokenHash: Buffer | undefined;
}

type Handler = (req: IncomingMessage, res: ServerResponse, id: string) => Promise<void>;

export function createApi({ state, hub, logger, tokenHash }: ApiOptions) {
  const log = logger.child({ component: 'api' });

  async function postGrant(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch (error) {
      throw new HttpError(400, `body: is not JSON: ${(error as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new HttpError(400, `body: must be a JSON object (a grant with node_id), not ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`);
    }
    const { node_id: nodeId, ...document } = raw as Record<string, unknown>;
    const problems: string[] = [];
    if (nodeId === undefined) problems.push('node_id: is required');
    else if (typeof nodeId !== 'string' || !ID.test(nodeId)) problems.push(`node_id: ${ID_RULE}`);
    // Named from the top (`guest.tcp`, not `grant.guest.tcp`): the rules name fields under `at.`.
    const parsed = parseGrantDocument(document, '');
    problems.push(...parsed.problems.map((p) => p.replace(/^\./, '')));
    if (problems.length > 0 || !parsed.grant) throw new HttpError(400, problems.join('; '));
    let result;
    try {
      result = await state.put(nodeId as string, parsed.grant);
    } catch (error) {
      if (error instanceof GrantError) throw new HttpError(409, error.message, { code: error.code });
      throw error;
    }
    for (const change of result.changes) {
      log.info({ grant: parsed.grant.id, node: change.nodeId, revision: change.revision, change: change.kind }, 'grant changed');
    }
    send(res, result.outcome === 'created' ? 201 : 200, storedDocument(result.stored));
  }

  async function listGrants(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    send(res, 200, { grants: state.list().map(storedDocument) });
  }

  async function getGrant(_req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const stored = state.get(id);
    if (!stored) throw new HttpError(404, `grant ${id}: not found`);
    send(res, 200, storedDocument(stored));
  }

  async function deleteGrant(_req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const removed = await state.remove(id);
    if (!removed) throw new HttpError(404, `grant ${id}: not found`);
    log.info({ grant: id, node: removed.change.nodeId, revision: removed.change.revision, change: 'revoke' }, 'grant changed');
    send(res, 204);
  }

  async function listGateways(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    send(res, 200, { gateways: hub.view() });
  }

  async function health(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    send(res, 200, { ok: true });
  }

  async function websocketOnly(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    throw new HttpError(426, '/v1/gateway: is a websocket endpoint (send a websocket upgrade)');
  }

  /** Path -> method -> handler, and the {id} it named. */
  function route(pathname: string): { methods: Record<string, Handler>; id: string; open?: boolean } | undefined {
    if (pathname === '/healthz') return { methods: { GET: health }, id: '', open: true };
    if (pathname === '/v1/grants') return { methods: { GET: listGrants, POST: postGrant }, id: '' };
    if (pathname === '/v1/gateways') return { methods: { GET: listGateways }, id: '' };
    if (pathname === '/v1/gateway') return { methods: { GET: websocketOnly }, id: '' };
    const match = /^\/v1\/grants\/([^/]+)$/.exec(pathname);
    if (match) {
      let id: string;
      try {
        id = decodeURIComponent(match[1]!);
      } catch {
        return undefined;
      }
      return { methods: { GET: getGrant, DELETE: deleteGrant }, id };
    }
    return undefined;
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      let pathname: string;
      try {
        pathname = new URL(req.url ?? '/', 'http://controller').pathname;
      } catch {
        // The request line is the client's to get wrong (`GET http://[/`): not our failure.
        throw new HttpError(400, 'url: does not parse');
      }
      const found = route(pathname);
      // Authentication before anything else, so that unknown paths tell nothing either.
      if (!found?.open && tokenHash && !bearerMatches(req.headers.authorization, tokenHash)) {
        throw new HttpError(401, 'authorization: a valid bearer token is required');
      }
      if (!found) throw new HttpError(404, `${pathname}: not found`);
      const handler = found.methods[req.method ?? ''];
      if (!handler) {
        const allow = Object.keys(found.methods).join(', ');
        send(res, 405, { error: `method ${req.method}: not allowed on ${pathname} (allowed: ${allow})` }, { allow });
        return;
      }
      await handler(req, res, found.id);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) {
        const headers: Record<string, string> = error.status === 401 ? { 'www-authenticate': 'Bearer' } : {};
        if (error.status === 426) headers.upgrade = 'websocket';
        send(res, error.status, { error: error.message, ...error.extra }, headers);
        return;
      }
      log.error({ err: error, method: req.method, url: req.url }, 'request failed');
      // The details (paths, errno) go to the log, not to the client.
      send(res, 500, { error: 'internal error: nothing was changed (see the controller log)' });
    }
  };
}
