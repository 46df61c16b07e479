// Test helpers for the reference controller: start one on a tmp state file (stopped in teardown),
// talk HTTP to it, and a small fake gateway speaking the real codec over `ws`.
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import WebSocket from 'ws';
import {
  PROTOCOL_VERSION,
  decodeControllerMessage,
  encodeGatewayMessage,
  type ControllerMessage,
  type GatewayMessage,
  type GrantResult,
} from '../../../src/control/protocol.js';
import { startController, type Controller, type ControllerOptions } from '../../../src/controller/server.js';

type Test = { testdir(files?: Record<string, string>): string; teardown(fn: () => unknown): void };

export interface Started extends Controller {
  stateFile: string;
  /** every log record so far */
  logs: Record<string, unknown>[];
}

/** Starts a controller on 127.0.0.1:0 whose logs are collected; stopped in t.teardown. */
export async function start(t: Test, options: Partial<ControllerOptions> = {}, stateFile?: string): Promise<Started> {
  const file = stateFile ?? path.join(t.testdir(), 'state.json');
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const controller = await startController({
    host: '127.0.0.1',
    port: 0,
    stateFile: file,
    logger: pino({ level: 'debug' }, sink),
    ...options,
  });
  t.teardown(() => controller.stop());
  return { ...controller, stateFile: file, logs };
}

export interface TlsClient {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** One HTTP(S) request; `body` is sent as JSON unless it is a string or Buffer. */
export function request(
  base: string,
  method: string,
  urlPath: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string>; tls?: TlsClient } = {},
): Promise<Reply> {
  const url = new URL(urlPath, base);
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string' || Buffer.isBuffer(options.body)
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (payload !== undefined) headers['content-type'] ??= 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? https.request : http.request;
    const req = send(url, { method, headers, agent: false, ...(options.tls ?? {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A grant document for the API, overridable. */
export function grantDoc(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: 'g1', share: 's1', backend: 'b1', path: 's1', guest: { tcp: '10.0.0.1' }, node_id: 'n1', ...over };
}

type Frame = ControllerMessage | { kind: 'undecodable'; reason: string };

/** A fake gateway: a websocket that speaks the protocol through the real codec. */
export class FakeGateway {
  private readonly queue: Frame[] = [];
  private waiter: (() => void) | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** heartbeats received from the controller (kept out of next()) */
  heartbeats = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const decoded = decodeControllerMessage(data);
      const frame: Frame = decoded.ok ? decoded.message : { kind: 'undecodable', reason: decoded.reason };
      if (frame.kind === 'heartbeat') this.heartbeats++;
      else this.queue.push(frame);
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
    ws.on('close', () => this.waiter?.());
  }

  /** Opens a websocket; rejects with the HTTP status when the upgrade is refused. */
  static connect(url: string, options: { token?: string } & TlsClient = {}): Promise<FakeGateway> {
    const headers: Record<string, string> = options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {};
    const ws = new WebSocket(url, { headers, ca: options.ca, cert: options.cert, key: options.key });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new FakeGateway(ws)));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') })));
      });
      ws.once('error', reject);
    });
  }

  send(message: GatewayMessage): void {
    this.ws.send(encodeGatewayMessage(message));
  }

  sendRaw(data: Buffer | string): void {
    this.ws.send(data, { binary: Buffer.isBuffer(data) });
  }

  hello(nodeId: string, over: Partial<Extract<GatewayMessage, { kind: 'hello' }>> = {}): void {
    this.send({
      kind: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      nodeId,
      softwareVersion: 'fake-1.0',
      capabilities: ['tcp', 'backend:local'],
      epoch: '',
      lastAppliedRevision: 0,
      ...over,
    });
  }

  /** Hello, then the Welcome and Snapshot that must follow. */
  async join(nodeId: string) {
    this.hello(nodeId);
    const welcome = await this.next('welcome');
    const snapshot = await this.next('snapshot');
    return { welcome, snapshot };
  }

  ack(epoch: string, revision: number, results: Array<Partial<GrantResult> & { grantId: string }>): void {
    this.send({
      kind: 'ack',
      epoch,
      revision,
      results: results.map((r) => ({ state: 'APPLIED', reasonCode: '', reason: '', ...r })),
    });
  }

  /** The next non-heartbeat message; with `kind`, asserts it is that kind. */
  async next<K extends Frame['kind']>(kind?: K, timeoutMs = 3000): Promise<Extract<Frame, { kind: K }>> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${kind ?? 'a message'}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind ?? 'message'} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const frame = this.queue.shift()!;
    if (kind && frame.kind !== kind) throw new Error(`expected ${kind}, got ${JSON.stringify(frame)}`);
    return frame as Extract<Frame, { kind: K }>;
  }

  /** Resolves true when nothing but heartbeats arrives for `ms`. */
  async quiet(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.length === 0;
  }

  close(): void {
    this.ws.close();
  }
}

/** Connects a fake gateway and closes it in t.teardown. */
export async function gateway(t: Test, controller: Controller, options: { token?: string } & TlsClient = {}): Promise<FakeGateway> {
  const gw = await FakeGateway.connect(controller.gatewayUrl, options);
  t.teardown(() => gw.ws.terminate());
  return gw;
}

/** The GET /v1/gateways entry of one node. */
export async function gatewayView(controller: Controller, nodeId: string, token?: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const reply = await request(controller.url, 'GET', '/v1/gateways', token !== undefined ? { token } : {});
  return (reply.body.gateways as Array<{ node_id: string }>).find((g) => g.node_id === nodeId);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

