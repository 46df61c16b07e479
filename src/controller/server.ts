// The reference controller: one HTTP(S) server for the JSON API and the gateways' websocket
// (/v1/gateway), over a durable state file. See api.ts, sessions.ts and state.ts.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { GATEWAY_PATH, MAX_FRAME_BYTES as PROTOCOL_MAX_FRAME_BYTES } from '../control/protocol.js';
import { bearerMatches, createApi, hashToken } from './api.js';
import { HELLO_TIMEOUT_MS, SessionHub } from './sessions.js';
import { ControllerState } from './state.js';

export interface ControllerOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  /** JSON state file, created when missing */
  stateFile: string;
  /** Bearer token required by the HTTP API (except /healthz) and the websocket, when set. */
  token?: string;
  /** PEM contents; serves https/wss. With clientCa every client must present a certificate it signed. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Heartbeat interval announced in Welcome (default 2000). */
  heartbeatIntervalMs?: number;
  /** How long a new websocket may take to send Hello (default 10 s; tests shorten it). */
  helloTimeoutMs?: number;
  logger?: Logger;
}

export interface Controller {
  readonly port: number;
  /** http(s)://host:port */
  readonly url: string;
  /** ws(s)://host:port/v1/gateway */
  readonly gatewayUrl: string;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 2000;
/**
 * Largest gateway frame accepted (16 MiB, the codec's own limit, which refuses anything larger
 * anyway): an Ack of a 100,000-grant Snapshot, the most elements a message may repeat, is about
 * 3 MB. The websocket buffers a whole frame before the codec sees it, so every byte allowed here
 * is memory an authenticated but misbehaving gateway can make the controller hold.
 */
const MAX_FRAME_BYTES = PROTOCOL_MAX_FRAME_BYTES;

/** Answers a refused upgrade on the raw socket, then closes it. */
function refuseUpgrade(socket: Duplex, status: number, reason: string, message: string): void {
  const body = `${JSON.stringify({ error: message })}\n`;
  const extra = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

export async function startController(options: ControllerOptions): Promise<Controller> {
  const logger = options.logger ?? pino({ level: 'info', base: { component: 'controller' } });
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  if (!Number.isInteger(heartbeatIntervalMs) || heartbeatIntervalMs <= 0 || heartbeatIntervalMs > 0xffffffff) {
    throw new Error(`heartbeatIntervalMs: ${heartbeatIntervalMs} is not a positive integer`);
  }
  if (options.token !== undefined && options.token === '') throw new Error('token: must not be empty');
  const tokenHash = options.token !== undefined ? hashToken(options.token) : undefined;

  const state = await ControllerState.open(options.stateFile);
  const hub = new SessionHub({
    state,
    logger,
    heartbeatIntervalMs,
    helloTimeoutMs: options.helloTimeoutMs ?? HELLO_TIMEOUT_MS,
    requireCertificateCn: options.tls?.clientCa !== undefined,
  });
  const api = createApi({ state, hub, logger, tokenHash });
  // The API answers every failure itself; anything still escaping it must not become an
  // unhandled rejection (which ends the process).
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    api(req, res).catch((error: unknown) => {
      logger.warn({ err: error, method: req.method, remote: req.socket.remoteAddress }, 'request handler failed');
      res.destroy();
    });
  };
  const tls = options.tls;
  const server = tls
    ? https.createServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
        },
        onRequest,
      )
    : http.createServer(onRequest);
  if (tls) server.on('tlsClientError', (error: Error) => logger.debug({ err: error.message }, 'TLS handshake refused'));

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  let stopping = false;
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (stopping) return refuseUpgrade(socket, 503, 'Service Unavailable', 'controller stopping');
    // Anyone can send this request line, before any authentication: it must not throw.
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://controller').pathname;
    } catch {
      logger.debug({ remote: req.socket.remoteAddress }, 'websocket upgrade refused: the URL does not parse');
      return refuseUpgrade(socket, 400, 'Bad Request', 'url: does not parse');
    }
    if (tokenHash && !bearerMatches(req.headers.authorization, tokenHash)) {
      logger.warn({ remote: req.socket.remoteAddress, path: pathname }, 'websocket upgrade refused: no valid bearer token');
      return refuseUpgrade(socket, 401, 'Unauthorized', 'authorization: a valid bearer token is required');
    }
    if (pathname !== GATEWAY_PATH) return refuseUpgrade(socket, 404, 'Not Found', `${pathname}: not found`);
    wss.handleUpgrade(req, socket, head, (ws) => hub.accept(ws, req));
  };
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined); // a reset during the handshake is not our failure
    // An exception thrown here would escape the 'upgrade' event and end the process.
    try {
      onUpgrade(req, socket, head);
    } catch (error) {
      logger.warn({ err: error, remote: req.socket.remoteAddress }, 'websocket upgrade failed');
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => logger.error({ err: error }, 'controller server error'));

  const port = (server.address() as AddressInfo).port;
  const hostPart = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `${tls ? 'https' : 'http'}://${hostPart}:${port}`;
  const gatewayUrl = `${tls ? 'wss' : 'ws'}://${hostPart}:${port}${GATEWAY_PATH}`;

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await hub.stop();
      wss.close();
      // Answers to changes already asked for go out before the last connections are cut.
      await state.idle();
      server.closeIdleConnections();
      await Promise.race([closed, delay(1000, undefined, { ref: false })]);
      server.closeAllConnections();
      await closed;
      logger.info({ url }, 'controller stopped');
    })();
    return stopped;
  };
  return { port, url, gatewayUrl, logger, stop };
}
