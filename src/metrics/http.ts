// The operator's HTTP endpoint (config `metrics: { host, port }`):
//   GET /metrics  Prometheus text exposition of the gateway's registry
//   GET /healthz  200 "ok" while the process runs (liveness: the event loop answers)
//   GET /readyz   200 {"ready":true}, or 503 {"ready":false,"reasons":[...]} (readiness)
// Other paths 404, other methods 405. No request is logged at info: scrapes come every few seconds.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { BackendHealth, GatewayMetrics } from './registry.js';

export interface Readiness {
  readonly ready: boolean;
  /** Why not ready: short, operator-readable, one per failing check. Empty when ready. */
  readonly reasons: readonly string[];
}

export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  metrics: Pick<GatewayMetrics, 'metrics' | 'contentType'>;
  /** Asked on every /readyz; a throw answers 503 with the error as the reason. */
  ready: () => Readiness;
  logger: Logger;
}

export interface MetricsServer {
  /** The bound port. */
  readonly port: number;
  /** Stops listening and closes open connections (scrapers keep them alive). */
  close(): Promise<void>;
}

/**
 * The usual readiness rule: listeners bound, grants loaded, every backend healthy. Each failing
 * check gives one reason; backends are named by id and type.
 */
export function readinessOf(checks: {
  listenersBound: boolean;
  grantsLoaded: boolean;
  backends?: readonly BackendHealth[];
}): Readiness {
  const reasons: string[] = [];
  if (!checks.listenersBound) reasons.push('listeners not bound');
  if (!checks.grantsLoaded) reasons.push('grants not loaded');
  for (const backend of checks.backends ?? []) {
    if (!backend.up) reasons.push(`backend ${backend.id} (${backend.type}) not healthy`);
  }
  return { ready: reasons.length === 0, reasons };
}

const ALLOWED = 'GET, HEAD';

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
}

/** Starts the endpoint; resolves once it listens, rejects when it cannot (address in use, ...). */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics, ready, logger } = options;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: ALLOWED });
      return;
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
        return;
      case '/readyz': {
        let readiness: Readiness;
        try {
          readiness = ready();
        } catch (err) {
          logger.warn({ err }, 'readiness check failed');
          readiness = { ready: false, reasons: [`readiness check failed: ${(err as Error).message}`] };
        }
        if (readiness.ready) json(res, 200, { ready: true });
        else json(res, 503, { ready: false, reasons: readiness.reasons });
        return;
      }
      case '/metrics': {
        let body: string;
        try {
          body = await metrics.metrics();
        } catch (err) {
          logger.warn({ err }, 'metrics collection failed');
          send(res, 500, 'text/plain; charset=utf-8', 'metrics collection failed\n');
          return;
        }
        send(res, 200, metrics.contentType, body);
        return;
      }
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.warn({ err }, 'metrics endpoint request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // A scraper that stalls holds one socket for at most this long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.on('clientError', (err, socket) => {
    logger.debug({ err: (err as Error).message }, 'metrics endpoint client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new Error(`metrics endpoint cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'metrics endpoint error'));

  const port = (server.address() as AddressInfo).port;
  logger.info({ host: options.host, port }, 'metrics endpoint listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
