// Gateway sessions (proto/manila_gateway.proto "Session"): one websocket per node. Hello, then
// Welcome and a Snapshot of the node's grants, then every change pushed as Upsert/Revoke in
// revision order; Acks and StatusReports are recorded for GET /v1/gateways. A bad frame is
// answered with an Error and changes nothing; only a dead or replaced peer loses its session.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import {
  PROTOCOL_VERSION,
  decodeGatewayMessage,
  encodeControllerMessage,
  type ControllerMessage,
  type ErrorCodeName,
  type GatewayMessage,
  type GrantStateName,
  type Hello,
  type StatusReport,
} from '../control/protocol.js';
import type { ControllerState, NodeChange } from './state.js';

export const HELLO_TIMEOUT_MS = 10_000;
/** A peer that sent no frame at all for this many heartbeat intervals is dead. */
export const MISSED_HEARTBEATS = 3;
/**
 * A gateway that could not persist a frame (PERSIST_FAILED), or keeps refusing after the one
 * immediate Snapshot resend (REVISION_OUT_OF_ORDER), gets the Snapshot again after this delay,
 * doubling up to SNAPSHOT_RETRY_MAX_MS; back to the start once it acks the node's revision.
 */
export const SNAPSHOT_RETRY_MIN_MS = 1000;
export const SNAPSHOT_RETRY_MAX_MS = 30_000;

/** Websocket close codes the controller uses. */
export const CLOSE = {
  goingAway: 1001,
  protocolError: 1002,
  policyViolation: 1008,
  internalError: 1011,
  replaced: 4000,
} as const;

interface GrantOutcome {
  state: GrantStateName;
  reasonCode: string;
  reason: string;
  /** the Ack revision that reported it */
  revision: number;
}

/** What the controller knows of one node's gateway, kept across its sessions. */
interface NodeRecord {
  nodeId: string;
  session: GatewaySession | undefined;
  connectedSince: Date | undefined;
  disconnectedAt: Date | undefined;
  remoteAddress: string | undefined;
  softwareVersion: string | undefined;
  capabilities: string[];
  lastAckedRevision: number | undefined;
  ackedEpoch: string | undefined;
  lastFrameAt: Date | undefined;
  outcomes: Map<string, GrantOutcome>;
  status: { report: StatusReport; receivedAt: Date } | undefined;
  /** Sessions of this node closed because a newer one said Hello (since the controller started). */
  replacedSessions: number;
}

export interface SessionHubOptions {
  state: ControllerState;
  logger: Logger;
  heartbeatIntervalMs: number;
  helloTimeoutMs: number;
  /** With TLS client certificates: Hello.node_id must equal the certificate's subject CN. */
  requireCertificateCn: boolean;
}

/** All sessions, and the per-node records GET /v1/gateways shows. */
export class SessionHub {
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly sessions = new Set<GatewaySession>();
  private readonly unsubscribe: () => void;
  private stopping = false;

  constructor(readonly options: SessionHubOptions) {
    this.unsubscribe = options.state.onChange((changes) => this.push(changes));
  }

  get state(): ControllerState {
    return this.options.state;
  }

  /** A websocket that passed the upgrade's authentication. */
  accept(ws: WebSocket, request: IncomingMessage): void {
    if (this.stopping) {
      ws.close(CLOSE.goingAway, 'controller stopping');
      return;
    }
    const session = new GatewaySession(this, ws, request);
    this.sessions.add(session);
    ws.once('close', () => this.sessions.delete(session));
  }

  /** Hello accepted: the session becomes the node's, replacing any earlier one. */
  attach(session: GatewaySession, hello: Hello, remoteAddress: string): void {
    const record = this.record(hello.nodeId);
    const old = record.session;
    record.session = session;
    record.connectedSince = new Date();
    record.disconnectedAt = undefined;
    record.remoteAddress = remoteAddress;
    record.softwareVersion = hello.softwareVersion;
    record.capabilities = [...hello.capabilities];
    record.lastFrameAt = new Date();
    if (old) {
      // Newest wins. A gateway that reconnects before its old socket was seen to die does this
      // once; two gateways configured with one node id do it over and over (the count shows it).
      record.replacedSessions++;
      this.options.logger.warn(
        { node: hello.nodeId, remote: remoteAddress, replacedRemote: old.remoteAddress, replacedSessions: record.replacedSessions },
        'gateway session replaced by a newer connection for this node id',
      );
      old.close(CLOSE.replaced, 'replaced');
    }
  }

  detach(session: GatewaySession, nodeId: string): void {
    const record = this.nodes.get(nodeId);
    if (!record || record.session !== session) return; // replaced: the new session owns the record
    record.session = undefined;
    record.connectedSince = undefined;
    record.disconnectedAt = new Date();
  }

  sawFrame(nodeId: string): void {
    const record = this.nodes.get(nodeId);
    if (record) record.lastFrameAt = new Date();
  }

  /** Records an Ack; returns why it is refused instead (nothing recorded then). */
  recordAck(nodeId: string, ack: Extract<GatewayMessage, { kind: 'ack' }>): string | undefined {
    const { state } = this.options;
    if (ack.epoch !== state.epoch) return `ack.epoch: ${JSON.stringify(ack.epoch)} is not the controller's epoch ${state.epoch}`;
    const current = state.revision(nodeId);
    if (ack.revision > current) return `ack.revision: ${ack.revision} is beyond node ${nodeId}'s revision ${current}`;
    const record = this.record(nodeId);
    record.lastAckedRevision = Math.max(record.lastAckedRevision ?? 0, ack.revision);
    record.ackedEpoch = ack.epoch;
    for (const result of ack.results) {
      const known = record.outcomes.get(result.grantId);
      if (known && known.revision > ack.revision) continue; // an older Ack arriving late
      if (result.state === 'REVOKED') record.outcomes.delete(result.grantId);
      else record.outcomes.set(result.grantId, { state: result.state, reasonCode: result.reasonCode, reason: result.reason, revision: ack.revision });
    }
    return undefined;
  }

  recordStatus(nodeId: string, report: StatusReport): void {
    this.record(nodeId).status = { report, receivedAt: new Date() };
  }

  /** GET /v1/gateways: every node that holds grants or has connected since the start. */
  view(): Record<string, unknown>[] {
    const { state } = this.options;
    const byNode = state.byNode();
    const ids = new Set([...byNode.keys(), ...this.nodes.keys()]);
    return [...ids].sort().map((nodeId) => {
      const record = this.nodes.get(nodeId);
      const grants: Record<string, { state: string; reason_code: string; reason: string }> = {};
      for (const stored of byNode.get(nodeId) ?? []) {
        const outcome = record?.outcomes.get(stored.grant.id);
        // Pending until an Ack at or after the revision that last changed it reports it.
        grants[stored.grant.id] =
          outcome && outcome.revision >= stored.changedAt
            ? { state: outcome.state.toLowerCase(), reason_code: outcome.reasonCode, reason: outcome.reason }
            : { state: 'pending', reason_code: '', reason: '' };
      }
      const status = record?.status;
      return {
        node_id: nodeId,
        connected: record?.session !== undefined,
        connected_since: record?.connectedSince?.toISOString() ?? null,
        disconnected_at: record?.disconnectedAt?.toISOString() ?? null,
        remote_address: record?.remoteAddress ?? null,
        software_version: record?.softwareVersion ?? null,
        capabilities: record?.capabilities ?? [],
        revision: state.revision(nodeId),
        last_acked_revision: record?.lastAckedRevision ?? null,
        epoch: record?.ackedEpoch ?? null,
        last_heartbeat_at: record?.lastFrameAt?.toISOString() ?? null,
        replaced_sessions: record?.replacedSessions ?? 0,
        grants,
        status: status ? statusToJson(status.report, status.receivedAt) : null,
      };
    });
  }

  /** Closes every session (1001) and waits for them to go, terminating stragglers. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe();
    await Promise.all([...this.sessions].map((s) => s.shutdown()));
  }

  private push(changes: NodeChange[]): void {
    for (const change of changes) this.nodes.get(change.nodeId)?.session?.sendChange(change);
  }

  private record(nodeId: string): NodeRecord {
    let record = this.nodes.get(nodeId);
    if (!record) {
      record = {
        nodeId,
        session: undefined,
        connectedSince: undefined,
        disconnectedAt: undefined,
        remoteAddress: undefined,
        softwareVersion: undefined,
        capabilities: [],
        lastAckedRevision: undefined,
        ackedEpoch: undefined,
        lastFrameAt: undefined,
        outcomes: new Map(),
        status: undefined,
        replacedSessions: 0,
      };
      this.nodes.set(nodeId, record);
    }
    return record;
  }
}

function statusToJson(report: StatusReport, receivedAt: Date): Record<string, unknown> {
  return {
    epoch: report.epoch,
    applied_revision: report.appliedRevision,
    connections: report.connections,
    backends: report.backends.map((b) => ({ id: b.id, type: b.type, state: b.state, reason: b.reason })),
    shares: report.shares.map((s) => ({ share: s.share, connections: s.connections, ops: s.ops })),
    uptime_ms: report.uptimeMs,
    received_at: receivedAt.toISOString(),
  };
}

function remoteOf(request: IncomingMessage): string {
  const { remoteAddress, remotePort } = request.socket;
  if (!remoteAddress) return 'unknown';
  return remoteAddress.includes(':') ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
}

/** The subject CN of a verified TLS client certificate, if there is one. */
function certificateCn(request: IncomingMessage): string | undefined {
  const socket = request.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function' || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN as unknown;
  return typeof cn === 'string' ? cn : undefined;
}

class GatewaySession {
  readonly remoteAddress: string;
  /** Set by an accepted Hello. */
  private nodeId: string | undefined;
  /**
   * hello: waiting for Hello; welcoming: Hello accepted, the node's revision being written before
   * Welcome; open: Welcome sent, the session is the node's.
   */
  private phase: 'hello' | 'welcoming' | 'open' = 'hello';
  private readonly log: Logger;
  private readonly certificateCn: string | undefined;
  private lastFrameAt = Date.now();
  private heartbeatSequence = 0;
  private helloTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** The node revision of the last Snapshot sent because the gateway refused a frame. */
  private resentSnapshotAt: number | undefined;
  /** A Snapshot resend waiting for its delay (see SNAPSHOT_RETRY_MIN_MS). */
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = SNAPSHOT_RETRY_MIN_MS;
  private readonly closed: Promise<void>;

  constructor(
    private readonly hub: SessionHub,
    private readonly ws: WebSocket,
    request: IncomingMessage,
  ) {
    this.remoteAddress = remoteOf(request);
    this.certificateCn = certificateCn(request);
    this.log = hub.options.logger.child({ remote: this.remoteAddress });
    this.log.info('gateway connected');
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    this.helloTimer = setTimeout(() => {
      this.log.warn({ timeoutMs: hub.options.helloTimeoutMs }, 'no Hello in time: closing');
      this.close(CLOSE.policyViolation, 'no Hello');
    }, hub.options.helloTimeoutMs);
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('error', (error) => this.log.warn({ err: error.message }, 'gateway websocket error'));
    ws.once('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  /** Close with 1001 and wait; a peer that does not answer the close within a second is cut off. */
  async shutdown(): Promise<void> {
    this.cancelSnapshotRetry();
    if (this.ws.readyState === this.ws.CLOSED) return;
    this.ws.close(CLOSE.goingAway, 'controller stopping');
    const timer = setTimeout(() => this.ws.terminate(), 1000);
    await this.closed;
    clearTimeout(timer);
  }

  sendChange(change: NodeChange): void {
    if (change.kind === 'upsert') this.send({ kind: 'upsert', revision: change.revision, grant: change.grant });
    else this.send({ kind: 'revoke', revision: change.revision, grantId: change.grantId });
  }

  private send(message: ControllerMessage): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeControllerMessage(message));
  }

  private refuse(code: ErrorCodeName, message: string, revision = 0): void {
    this.log.warn({ node: this.nodeId, code, reason: message }, 'gateway frame refused');
    this.send({ kind: 'error', code, message, revision });
  }

  private sendSnapshot(): void {
    const { state } = this.hub;
    const nodeId = this.nodeId!;
    const revision = state.revision(nodeId);
    const grants = state.nodeGrants(nodeId).map((s) => s.grant);
    this.send({ kind: 'snapshot', epoch: state.epoch, revision, grants });
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    this.lastFrameAt = Date.now();
    if (this.phase === 'open') this.hub.sawFrame(this.nodeId!);
    if (!isBinary) return this.refuse('MALFORMED', 'text frames are not allowed: every message is one binary frame');
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    const decoded = decodeGatewayMessage(bytes);
    if (!decoded.ok) return this.refuse('MALFORMED', decoded.reason);
    const message = decoded.message;
    if (this.phase === 'hello') {
      if (message.kind !== 'hello') return this.refuse('UNEXPECTED_MESSAGE', `${message.kind} before Hello: the first message must be Hello`);
      return this.onHello(message);
    }
    if (message.kind === 'hello') return this.refuse('UNEXPECTED_MESSAGE', 'a second Hello in one session');
    if (this.phase === 'welcoming') {
      // Nothing the gateway says before Welcome can refer to anything yet.
      if (message.kind === 'heartbeat') return;
      return this.refuse('UNEXPECTED_MESSAGE', `${message.kind} before Welcome`);
    }
    const nodeId = this.nodeId!;
    switch (message.kind) {
      case 'ack': {
        const problem = this.hub.recordAck(nodeId, message);
        if (problem) return this.refuse('UNEXPECTED_MESSAGE', problem, message.revision);
        this.log.info({ node: nodeId, revision: message.revision, results: message.results.length }, 'gateway acked');
        // Caught up: no resend is needed, and the next refusal starts the delays afresh.
        if (message.revision === this.hub.state.revision(nodeId)) {
          this.cancelSnapshotRetry();
          this.retryDelayMs = SNAPSHOT_RETRY_MIN_MS;
        }
        return;
      }
      case 'status':
        return this.hub.recordStatus(nodeId, message);
      case 'heartbeat':
        return;
      case 'error':
        return this.onGatewayError(message.code, message.message, message.revision);
    }
  }

  private onHello(hello: Hello): void {
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      this.refuse('UNSUPPORTED_PROTOCOL', `hello.protocol_version: ${hello.protocolVersion} is not spoken; this controller speaks ${PROTOCOL_VERSION}`);
      return this.close(CLOSE.protocolError, 'unsupported protocol');
    }
    if (this.hub.options.requireCertificateCn && this.certificateCn !== hello.nodeId) {
      this.refuse('NODE_MISMATCH', `hello.node_id: ${hello.nodeId} is not the client certificate's subject CN ${JSON.stringify(this.certificateCn ?? '')}`);
      return this.close(CLOSE.policyViolation, 'node mismatch');
    }
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.nodeId = hello.nodeId;
    this.phase = 'welcoming';
    const { state } = this.hub;
    const revision = state.revision(hello.nodeId);
    this.log.info(
      { node: hello.nodeId, software: hello.softwareVersion, revision, gatewayEpoch: hello.epoch, gatewayRevision: hello.lastAppliedRevision },
      'gateway hello',
    );
    if (hello.epoch !== state.epoch || hello.lastAppliedRevision <= revision) return this.welcome(hello);

    // The gateway applied a revision of this epoch that the controller's state does not reach:
    // the state was restored from an older copy. The gateway would refuse a Snapshot below its
    // revision, and every delta after it, so the node's revision moves past the gateway's
    // (durably, before anything is sent) and the state's grants become the truth.
    const target = hello.lastAppliedRevision + 1;
    this.log.warn(
      { node: hello.nodeId, epoch: state.epoch, revision, gatewayRevision: hello.lastAppliedRevision, newRevision: target },
      "gateway is ahead of the controller's state: state restored from an older copy?",
    );
    state.advanceRevision(hello.nodeId, target).then(
      ({ from, to }) => {
        this.log.info({ node: hello.nodeId, from, to }, 'node revision advanced');
        this.welcome(hello);
      },
      (error: unknown) => {
        this.log.error({ node: hello.nodeId, err: error, revision: target }, 'cannot advance the node revision: closing the session');
        this.refuse('INTERNAL', 'the controller could not record a new revision for this node; reconnect later');
        this.close(CLOSE.internalError, 'internal error');
      },
    );
  }

  /** The session becomes the node's: Welcome and Snapshot at the node's current revision. */
  private welcome(hello: Hello): void {
    if (this.ws.readyState !== this.ws.OPEN) return; // closed while the revision was written
    const { state, options } = this.hub;
    const nodeId = hello.nodeId;
    this.phase = 'open';
    // Attach, Welcome and Snapshot in one synchronous step: a change committed before it is in
    // the Snapshot, one committed after it is pushed to this session at a later revision.
    this.hub.attach(this, hello, this.remoteAddress);
    const revision = state.revision(nodeId);
    this.send({ kind: 'welcome', epoch: state.epoch, revision, heartbeatIntervalMs: options.heartbeatIntervalMs });
    this.sendSnapshot();
    this.heartbeatTimer = setInterval(() => this.beat(), options.heartbeatIntervalMs);
  }

  private onGatewayError(code: ErrorCodeName, message: string, revision: number): void {
    this.log.warn({ node: this.nodeId, code, reason: message, revision }, 'gateway reported an error');
    // The gateway could not make a frame durable, so it stays behind (and a refused Revoke is
    // enforced only in its memory): it needs the whole set again, once its disk may work again.
    if (code === 'PERSIST_FAILED') return this.retrySnapshotLater(code);
    if (code !== 'REVISION_OUT_OF_ORDER') return;
    // The gateway needs the whole set: at once, the first time for a revision. Further
    // refusals at that revision (deltas sent before the Snapshot arrived, or a gateway refusing
    // the Snapshot itself) get it again only after a growing delay, so that they cannot loop.
    const current = this.hub.state.revision(this.nodeId!);
    if (this.resentSnapshotAt === current) return this.retrySnapshotLater(code);
    this.resentSnapshotAt = current;
    this.sendSnapshot();
  }

  /** Sends the Snapshot again after the retry delay (one pending at a time); doubles the delay. */
  private retrySnapshotLater(cause: ErrorCodeName): void {
    if (this.retryTimer) return;
    const delayMs = this.retryDelayMs;
    this.retryDelayMs = Math.min(delayMs * 2, SNAPSHOT_RETRY_MAX_MS);
    this.log.info({ node: this.nodeId, cause, delayMs }, 'snapshot resend scheduled');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const revision = this.hub.state.revision(this.nodeId!);
      this.resentSnapshotAt = revision;
      this.log.info({ node: this.nodeId, revision, cause }, 'resending snapshot after a refusal');
      this.sendSnapshot();
    }, delayMs);
  }

  private cancelSnapshotRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private beat(): void {
    const interval = this.hub.options.heartbeatIntervalMs;
    if (Date.now() - this.lastFrameAt >= MISSED_HEARTBEATS * interval) {
      this.log.warn({ node: this.nodeId, silentMs: Date.now() - this.lastFrameAt }, 'gateway missed heartbeats: closing');
      this.ws.terminate();
      return;
    }
    this.send({ kind: 'heartbeat', sequence: ++this.heartbeatSequence, sentAtMs: Date.now() });
  }

  private onClose(code: number, reason: string): void {
    clearTimeout(this.helloTimer);
    clearInterval(this.heartbeatTimer);
    this.cancelSnapshotRetry();
    if (this.nodeId) this.hub.detach(this, this.nodeId);
    this.log.info({ node: this.nodeId, code, reason }, 'gateway disconnected');
  }
}
