// The gateway's side of the controller channel: one websocket to one of the configured
// controller URLs at a time, failing over to the next and reconnecting with capped exponential
// backoff and jitter; heartbeats both ways so a dead peer is noticed within 3 intervals; frames
// handled strictly one after another so the revision order is the order on the wire.
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import WebSocket from 'ws';
import type { Logger } from 'pino';
import type { GrantApplier, Outcome } from './applier.js';
import {
  decodeControllerMessage,
  encodeGatewayMessage,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type ControllerMessage,
  type ErrorCodeName,
  type GatewayMessage,
  type StatusReport,
} from './protocol.js';

export interface ControllerClientOptions {
  nodeId: string;
  urls: readonly string[];
  /** Read again before every connection attempt, so rotated credentials need no restart. */
  tokenFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  applier: GrantApplier;
  softwareVersion: string;
  capabilities: readonly string[];
  /** What the node reports about itself (connections, shares, backends). */
  status(): Pick<StatusReport, 'connections' | 'backends' | 'shares'>;
  logger: Logger;
  /** Reconnect backoff: first delay and cap (defaults 500 ms and 30 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** How long to wait for Welcome after the socket opens (default 10 s). */
  welcomeTimeoutMs?: number;
}

export type ControllerState = 'connecting' | 'connected' | 'disconnected' | 'stopped';

const DEFAULT_HEARTBEAT_MS = 2000;
/** Websocket close code of a session replaced by a newer one for the same node id. */
const CLOSE_REPLACED = 4000;
const MISSED_HEARTBEATS = 3;
const STATUS_EVERY_HEARTBEATS = 5;

export class ControllerClient extends EventEmitter {
  private stateNow: ControllerState = 'disconnected';
  private socket: WebSocket | undefined;
  private urlIndex = 0;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private welcomeTimer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();

  constructor(private readonly options: ControllerClientOptions) {
    super();
    if (options.urls.length === 0) throw new Error('no controller url');
  }

  get state(): ControllerState {
    return this.stateNow;
  }

  /** The URL of the controller currently connected, if any. */
  get url(): string | undefined {
    return this.stateNow === 'connected' ? this.options.urls[this.urlIndex] : undefined;
  }

  start(): void {
    if (this.stateNow === 'stopped') return;
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stateNow = 'stopped';
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => socket.terminate(), 1000);
      socket.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      socket.close(1001, 'gateway stopping');
    });
  }

  // ---- connecting ------------------------------------------------------------------------------

  private async connect(): Promise<void> {
    if (this.stateNow === 'stopped') return;
    this.setState('connecting');
    const url = this.options.urls[this.urlIndex]!;
    let socket: WebSocket;
    try {
      socket = new WebSocket(url, await this.connectOptions());
    } catch (error) {
      this.options.logger.error({ url, err: (error as Error).message }, 'controller: cannot connect');
      this.scheduleReconnect();
      return;
    }
    if (this.stopped()) {
      // stopped while the credentials were read: terminating a socket still connecting emits
      // 'error', which must have a listener or it takes the daemon down
      socket.on('error', () => undefined);
      socket.terminate();
      return;
    }
    this.socket = socket;
    const session = new Session(this, socket, url);
    socket.on('unexpected-response', (_request, response) => {
      this.options.logger.warn({ url, status: response.statusCode }, 'controller refused the connection');
      socket.terminate();
    });
    socket.on('error', (error) => {
      this.options.logger.warn({ url, err: error.message }, 'controller connection failed');
    });
    socket.on('open', () => session.opened());
    socket.on('message', (data, isBinary) => session.received(data as Buffer, isBinary));
    socket.on('close', (code, reason) => {
      const wasWelcomed = session.welcomed;
      session.closed();
      if (this.socket === socket) this.socket = undefined;
      if (this.stateNow === 'stopped') return;
      if (code === CLOSE_REPLACED) {
        // Another gateway holds this node id at the controller: back off instead of taking the
        // session straight back, or the two would replace each other forever.
        this.options.logger.error({ url, nodeId: this.options.nodeId }, 'controller: another gateway connected with this node id; backing off');
      } else {
        this.options.logger.warn({ url, code, reason: reason.toString() }, 'controller disconnected; guests keep their grants');
        if (wasWelcomed) this.failures = 0;
      }
      this.setState('disconnected');
      this.scheduleReconnect();
    });
  }

  private async connectOptions(): Promise<WebSocket.ClientOptions> {
    const { tokenFile, caFile, certFile, keyFile } = this.options;
    const options: WebSocket.ClientOptions = { handshakeTimeout: 10_000, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false };
    if (tokenFile) options.headers = { authorization: `Bearer ${(await readFile(tokenFile, 'utf8')).trim()}` };
    // A CA file replaces the system trust store: only that CA's controllers are believed.
    if (caFile) options.ca = await readFile(caFile);
    if (certFile) options.cert = await readFile(certFile);
    if (keyFile) options.key = await readFile(keyFile);
    return options;
  }

  /** Next URL, after a delay growing 2x per failure up to the cap, with jitter so nodes spread out. */
  private scheduleReconnect(): void {
    if (this.stateNow === 'stopped') return;
    this.urlIndex = (this.urlIndex + 1) % this.options.urls.length;
    const initial = this.options.backoffInitialMs ?? 500;
    const cap = this.options.backoffMaxMs ?? 30_000;
    const ceiling = Math.min(cap, initial * 2 ** Math.min(this.failures, 20));
    this.failures++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  /** A method, not a field test: stop() may run while connect() awaits. */
  private stopped(): boolean {
    return this.stateNow === 'stopped';
  }

  private setState(state: ControllerState): void {
    if (this.stateNow === state || this.stateNow === 'stopped') return;
    this.stateNow = state;
    this.emit('state', state);
  }

  // ---- what sessions call back ----------------------------------------------------------------

  /** @internal */ welcomed(url: string): void {
    this.setState('connected');
    this.options.logger.info({ url }, 'controller connected');
  }

  /** @internal */ get opts(): ControllerClientOptions {
    return this.options;
  }

  /** @internal */ get uptimeMs(): number {
    return Date.now() - this.started;
  }
}

/** One websocket's life: Hello, Welcome, then grant messages in order, heartbeats throughout. */
class Session {
  welcomed = false;
  private epoch = '';
  private intervalMs = DEFAULT_HEARTBEAT_MS;
  private lastFrameAt = Date.now();
  private heartbeats = 0;
  private timer: NodeJS.Timeout | undefined;
  private work: Promise<void> = Promise.resolve();
  private readonly logger: Logger;

  constructor(
    private readonly client: ControllerClient,
    private readonly socket: WebSocket,
    private readonly url: string,
  ) {
    this.logger = client.opts.logger;
  }

  opened(): void {
    const { applier, nodeId, softwareVersion, capabilities } = this.client.opts;
    this.send({
      kind: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      nodeId,
      softwareVersion,
      capabilities: [...capabilities],
      epoch: applier.epoch,
      lastAppliedRevision: applier.revision,
    });
    // Until Welcome names the interval, the controller has this long to answer at all.
    const welcomeTimeout = this.client.opts.welcomeTimeoutMs ?? 10_000;
    this.lastFrameAt = Date.now();
    this.timer = setInterval(() => {
      if (!this.welcomed && Date.now() - this.lastFrameAt > welcomeTimeout) this.dead('no Welcome');
    }, Math.min(1000, welcomeTimeout));
  }

  received(data: Buffer, isBinary: boolean): void {
    this.lastFrameAt = Date.now();
    if (!isBinary) {
      this.refuse('MALFORMED', 'text frames are not part of the protocol; send binary protobuf frames', 0);
      return;
    }
    const decoded = decodeControllerMessage(data);
    if (!decoded.ok) {
      this.refuse('MALFORMED', decoded.reason, 0);
      return;
    }
    const message = decoded.message;
    if (message.kind === 'heartbeat') return;
    // Grant messages are applied one at a time, in the order they arrived.
    this.work = this.work.then(() => this.handle(message)).catch((error: unknown) => {
      this.logger.error({ err: error }, 'controller message failed');
      this.refuse('INTERNAL', (error as Error).message, 0);
    });
  }

  closed(): void {
    clearInterval(this.timer);
  }

  private async handle(message: ControllerMessage): Promise<void> {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    const applier = this.client.opts.applier;
    switch (message.kind) {
      case 'welcome':
        if (this.welcomed) return this.refuse('UNEXPECTED_MESSAGE', 'a second Welcome', message.revision);
        this.welcomed = true;
        this.epoch = message.epoch;
        this.intervalMs = Math.min(60_000, Math.max(250, message.heartbeatIntervalMs || DEFAULT_HEARTBEAT_MS));
        clearInterval(this.timer);
        this.timer = setInterval(() => this.tick(), this.intervalMs);
        this.client.welcomed(this.url);
        return;
      case 'error':
        this.logger.warn({ code: message.code, message: message.message, revision: message.revision }, 'controller reported an error');
        return;
      case 'heartbeat':
        return;
    }
    if (!this.welcomed) return this.refuse('UNEXPECTED_MESSAGE', `${message.kind} before Welcome`, message.revision);
    let outcome: Outcome;
    const started = performance.now();
    switch (message.kind) {
      case 'snapshot':
        if (message.epoch !== this.epoch) {
          return this.refuse('MALFORMED', `snapshot epoch "${message.epoch}" is not the session's "${this.epoch}"`, message.revision);
        }
        outcome = await applier.snapshot(message.epoch, message.revision, message.grants);
        break;
      case 'upsert':
        outcome = await applier.upsert(this.epoch, message.revision, message.grant);
        break;
      case 'revoke':
        outcome = await applier.revoke(this.epoch, message.revision, message.grantId);
        break;
    }
    if (!outcome.ok) return this.refuse(outcome.code, outcome.message, message.revision);
    const failed = outcome.results.filter((r) => r.state === 'FAILED');
    this.logger.info(
      { kind: message.kind, revision: outcome.revision, grants: outcome.results.length, failed: failed.length, ms: Math.round(performance.now() - started) },
      'controller change applied',
    );
    for (const result of failed.slice(0, 20)) {
      this.logger.warn({ grant: result.grantId, reasonCode: result.reasonCode, reason: result.reason }, 'grant cannot be served here');
    }
    this.send({ kind: 'ack', epoch: outcome.epoch, revision: outcome.revision, results: outcome.results });
    this.client.emit('applied', { kind: message.kind, revision: outcome.revision });
    this.sendStatus();
  }

  private tick(): void {
    if (Date.now() - this.lastFrameAt > MISSED_HEARTBEATS * this.intervalMs) {
      this.dead(`nothing heard for ${MISSED_HEARTBEATS} heartbeat intervals`);
      return;
    }
    this.heartbeats++;
    this.send({ kind: 'heartbeat', sequence: this.heartbeats, sentAtMs: Date.now() });
    if (this.heartbeats % STATUS_EVERY_HEARTBEATS === 0) this.sendStatus();
  }

  private dead(why: string): void {
    this.logger.warn({ url: this.url, why }, 'controller presumed dead; reconnecting');
    clearInterval(this.timer);
    this.socket.terminate();
  }

  private sendStatus(): void {
    const { applier, status } = this.client.opts;
    this.send({ kind: 'status', epoch: applier.epoch, appliedRevision: applier.revision, uptimeMs: this.client.uptimeMs, ...status() });
  }

  /** Answers a frame that changed nothing, and says so in the log. */
  private refuse(code: ErrorCodeName, message: string, revision: number): void {
    this.logger.warn({ code, message, revision }, 'controller message refused');
    this.send({ kind: 'error', code, message, revision });
    this.client.emit('refused', { code, message, revision });
  }

  private send(message: GatewayMessage): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(encodeGatewayMessage(message));
  }
}
