// The controller protocol's codec (proto/manila_gateway.proto). Frames are decoded with
// protobufjs reflection and then checked field by field; a frame either becomes one fully valid
// typed message or is refused whole with a reason naming the field. Nothing downstream ever sees
// a half-valid message.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import protobuf from 'protobufjs';
import { ID, ID_RULE } from '../config/schema.js';
import { parseGrantDocument, type GrantDocument, type GrantSpec } from '../grants/document.js';
import type { GuestSelector } from '../grants/types.js';

export const PROTOCOL_VERSION = 1;
export const GATEWAY_PATH = '/v1/gateway';
/** Largest frame either side accepts: a 100,000-grant snapshot is about 4 MB. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Most elements of one repeated field (grants of a snapshot, results of an ack, ...). */
export const MAX_REPEATED = 100_000;

const protoFile = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto', 'manila_gateway.proto');
// keepCase: field names as written in the .proto (snake_case), in both directions.
const root = protobuf.parse(readFileSync(protoFile, 'utf8'), { keepCase: true }).root;
const ControllerMessageType = root.lookupType('manila_gateway.v1.ControllerMessage');
const GatewayMessageType = root.lookupType('manila_gateway.v1.GatewayMessage');

export type ErrorCodeName =
  | 'MALFORMED'
  | 'UNEXPECTED_MESSAGE'
  | 'REVISION_OUT_OF_ORDER'
  | 'NODE_MISMATCH'
  | 'PERSIST_FAILED'
  | 'UNSUPPORTED_PROTOCOL'
  | 'INTERNAL';

export type GrantStateName = 'APPLIED' | 'FAILED' | 'REVOKED';
export type BackendStateName = 'READY' | 'UNAVAILABLE' | 'HUNG';

export interface ProtocolError {
  kind: 'error';
  code: ErrorCodeName;
  message: string;
  revision: number;
}

export interface Heartbeat {
  kind: 'heartbeat';
  sequence: number;
  sentAtMs: number;
}

export type ControllerMessage =
  | { kind: 'welcome'; epoch: string; revision: number; heartbeatIntervalMs: number }
  | { kind: 'snapshot'; epoch: string; revision: number; grants: GrantSpec[] }
  | { kind: 'upsert'; revision: number; grant: GrantSpec }
  | { kind: 'revoke'; revision: number; grantId: string }
  | Heartbeat
  | ProtocolError;

export interface GrantResult {
  grantId: string;
  state: GrantStateName;
  reasonCode: string;
  reason: string;
}

export interface BackendStatus {
  id: string;
  type: string;
  state: BackendStateName;
  reason: string;
}

export interface ShareStatus {
  share: string;
  connections: number;
  ops: number;
}

export interface Hello {
  kind: 'hello';
  protocolVersion: number;
  nodeId: string;
  softwareVersion: string;
  capabilities: string[];
  epoch: string;
  lastAppliedRevision: number;
}

export interface StatusReport {
  kind: 'status';
  epoch: string;
  appliedRevision: number;
  connections: number;
  backends: BackendStatus[];
  shares: ShareStatus[];
  uptimeMs: number;
}

export type GatewayMessage =
  | Hello
  | { kind: 'ack'; epoch: string; revision: number; results: GrantResult[] }
  | Heartbeat
  | StatusReport
  | ProtocolError;

export type Decoded<T> = { ok: true; message: T } | { ok: false; reason: string };

/** Thrown inside the checks below; caught once per frame and turned into a refusal. */
class Malformed extends Error {}

const ENUM_PREFIX = { access: 'ACCESS_', squash: 'SQUASH_', grantState: 'GRANT_STATE_', backendState: 'BACKEND_STATE_' };

// ---- decoding ----------------------------------------------------------------------------

type Plain = Record<string, unknown>;

function toPlain(type: protobuf.Type, bytes: Uint8Array): Plain {
  const message = type.decode(bytes);
  // Numbers for uint64 (checked to be exact below), enum names as strings, the oneof's name.
  return type.toObject(message, { longs: String, enums: String, oneofs: true, defaults: true, arrays: true }) as Plain;
}

function uint64(value: unknown, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new Malformed(`${field}: ${String(value)} is beyond 2^53`);
  return n;
}

function text(value: unknown, field: string, { required = false, id = false } = {}): string {
  const s = typeof value === 'string' ? value : '';
  if (required && s === '') throw new Malformed(`${field}: is required`);
  if (id && !ID.test(s)) throw new Malformed(`${field}: ${ID_RULE}`);
  return s;
}

function enumName(value: unknown, prefix: string, field: string, allowed: readonly string[]): string {
  const name = typeof value === 'string' && value.startsWith(prefix) ? value.slice(prefix.length) : '';
  // An unknown number decodes to a number, not a name: refused like any other bad value.
  if (!allowed.includes(name)) throw new Malformed(`${field}: ${String(value)} is not one of ${allowed.join(', ')}`);
  return name;
}

function grantFromWire(wire: Plain | undefined, field: string): GrantSpec {
  if (!wire) throw new Malformed(`${field}: is required`);
  const guestWire = (wire.guest ?? {}) as Plain;
  let guest: GuestSelector;
  switch (guestWire.kind) {
    case 'tcp':
      guest = { tcp: String(guestWire.tcp) };
      break;
    case 'cid':
      guest = { cid: Number(guestWire.cid) };
      break;
    case 'vm':
      guest = { vm: String(guestWire.vm) };
      break;
    default:
      throw new Malformed(`${field}.guest: must have exactly one of tcp, cid, vm`);
  }
  const access = enumName(wire.access, ENUM_PREFIX.access, `${field}.access`, ['UNSPECIFIED', 'RW', 'RO']);
  const squash = enumName(wire.squash, ENUM_PREFIX.squash, `${field}.squash`, ['UNSPECIFIED', 'NONE', 'ROOT', 'ALL']);
  const document: GrantDocument = {
    id: String(wire.id ?? ''),
    share: String(wire.share ?? ''),
    backend: String(wire.backend ?? ''),
    path: String(wire.path ?? ''),
    guest,
  };
  if (access !== 'UNSPECIFIED') document.access = access.toLowerCase() as GrantDocument['access'];
  if (squash !== 'UNSPECIFIED') document.squash = squash.toLowerCase() as GrantDocument['squash'];
  // proto3 `optional`: present only when set (toObject leaves unset optionals out).
  if (wire.anon_uid !== undefined && wire.anon_uid !== null) document.anon_uid = Number(wire.anon_uid);
  if (wire.anon_gid !== undefined && wire.anon_gid !== null) document.anon_gid = Number(wire.anon_gid);
  // The same rules as a grant in the config file or the HTTP API.
  const parsed = parseGrantDocument(document, field);
  if (!parsed.grant) throw new Malformed(parsed.problems.join('; '));
  return parsed.grant;
}

function errorFromWire(body: Plain): ProtocolError {
  const code = typeof body.code === 'string' ? (body.code as ErrorCodeName) : 'INTERNAL';
  return { kind: 'error', code, message: text(body.message, 'error.message'), revision: uint64(body.revision, 'error.revision') };
}

function heartbeatFromWire(body: Plain): Heartbeat {
  return { kind: 'heartbeat', sequence: uint64(body.sequence, 'heartbeat.sequence'), sentAtMs: uint64(body.sent_at_ms, 'heartbeat.sent_at_ms') };
}

/**
 * How many times field `inner` occurs inside the sub-messages of field `outer`, counted on the
 * raw bytes. Decoding builds one object per element before anything can be checked, so a frame of
 * millions of empty grants would stall the event loop (which also serves NFS) or exhaust memory;
 * counting first is linear in the bytes and allocates nothing.
 */
function countNested(frame: Uint8Array, outer: number, inner: number): number {
  const reader = protobuf.Reader.create(frame);
  let count = 0;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== outer || (tag & 7) !== 2) {
      reader.skipType(tag & 7);
      continue;
    }
    const end = reader.uint32() + reader.pos;
    while (reader.pos < end) {
      const innerTag = reader.uint32();
      if (innerTag >>> 3 === inner) count++;
      reader.skipType(innerTag & 7);
    }
  }
  return count;
}

/** The repeated fields of each message kind, as [field of the body in the envelope, field in the body]. */
const REPEATED = {
  ControllerMessage: [[2, 3, 'snapshot.grants']],
  GatewayMessage: [[1, 4, 'hello.capabilities'], [2, 3, 'ack.results'], [4, 4, 'status.backends'], [4, 5, 'status.shares']],
} as const;

function tooMany(type: protobuf.Type, frame: Uint8Array): string | undefined {
  const fields = type === ControllerMessageType ? REPEATED.ControllerMessage : REPEATED.GatewayMessage;
  for (const [outer, inner, name] of fields) {
    let count: number;
    try {
      count = countNested(frame, outer, inner);
    } catch {
      return undefined; // not well formed: decoding says so, with the reason
    }
    if (count > MAX_REPEATED) return `${name}: ${count} elements, more than ${MAX_REPEATED}`;
  }
  return undefined;
}

function decodeFrame<T>(type: protobuf.Type, frame: Uint8Array, convert: (kind: string, body: Plain) => T): Decoded<T> {
  if (frame.length > MAX_FRAME_BYTES) return { ok: false, reason: `frame of ${frame.length} bytes, more than ${MAX_FRAME_BYTES}` };
  const excess = tooMany(type, frame);
  if (excess) return { ok: false, reason: excess };
  let plain: Plain;
  try {
    plain = toPlain(type, frame);
  } catch (error) {
    return { ok: false, reason: `does not decode as ${type.name}: ${(error as Error).message}` };
  }
  const kind = plain.body;
  if (typeof kind !== 'string') return { ok: false, reason: `${type.name} has no body (unknown or missing message)` };
  try {
    return { ok: true, message: convert(kind, plain[kind] as Plain) };
  } catch (error) {
    if (error instanceof Malformed) return { ok: false, reason: error.message };
    throw error;
  }
}

export function decodeControllerMessage(frame: Uint8Array): Decoded<ControllerMessage> {
  return decodeFrame(ControllerMessageType, frame, (kind, body): ControllerMessage => {
    switch (kind) {
      case 'welcome':
        return {
          kind,
          epoch: text(body.epoch, 'welcome.epoch', { required: true }),
          revision: uint64(body.revision, 'welcome.revision'),
          heartbeatIntervalMs: Number(body.heartbeat_interval_ms ?? 0),
        };
      case 'snapshot': {
        const wires = (body.grants ?? []) as Plain[];
        const grants = wires.map((wire, i) => grantFromWire(wire, `snapshot.grants[${i}]`));
        const seen = new Set<string>();
        for (const grant of grants) {
          if (seen.has(grant.id)) throw new Malformed(`snapshot.grants: grant id ${grant.id} is given twice`);
          seen.add(grant.id);
        }
        return { kind, epoch: text(body.epoch, 'snapshot.epoch', { required: true }), revision: uint64(body.revision, 'snapshot.revision'), grants };
      }
      case 'upsert':
        return { kind, revision: uint64(body.revision, 'upsert.revision'), grant: grantFromWire(body.grant as Plain | undefined, 'upsert.grant') };
      case 'revoke':
        return { kind, revision: uint64(body.revision, 'revoke.revision'), grantId: text(body.grant_id, 'revoke.grant_id', { id: true }) };
      case 'heartbeat':
        return heartbeatFromWire(body);
      case 'error':
        return errorFromWire(body);
      default:
        throw new Malformed(`unknown controller message ${kind}`);
    }
  });
}

export function decodeGatewayMessage(frame: Uint8Array): Decoded<GatewayMessage> {
  return decodeFrame(GatewayMessageType, frame, (kind, body): GatewayMessage => {
    switch (kind) {
      case 'hello':
        return {
          kind,
          protocolVersion: Number(body.protocol_version ?? 0),
          nodeId: text(body.node_id, 'hello.node_id', { id: true }),
          softwareVersion: text(body.software_version, 'hello.software_version'),
          capabilities: ((body.capabilities ?? []) as unknown[]).map(String),
          epoch: text(body.epoch, 'hello.epoch'),
          lastAppliedRevision: uint64(body.last_applied_revision, 'hello.last_applied_revision'),
        };
      case 'ack':
        return {
          kind,
          epoch: text(body.epoch, 'ack.epoch'),
          revision: uint64(body.revision, 'ack.revision'),
          results: ((body.results ?? []) as Plain[]).map((r, i) => ({
            grantId: text(r.grant_id, `ack.results[${i}].grant_id`, { id: true }),
            state: enumName(r.state, ENUM_PREFIX.grantState, `ack.results[${i}].state`, ['APPLIED', 'FAILED', 'REVOKED']) as GrantStateName,
            reasonCode: text(r.reason_code, `ack.results[${i}].reason_code`),
            reason: text(r.reason, `ack.results[${i}].reason`),
          })),
        };
      case 'heartbeat':
        return heartbeatFromWire(body);
      case 'status':
        return {
          kind,
          epoch: text(body.epoch, 'status.epoch'),
          appliedRevision: uint64(body.applied_revision, 'status.applied_revision'),
          connections: Number(body.connections ?? 0),
          backends: ((body.backends ?? []) as Plain[]).map((b, i) => ({
            id: text(b.id, `status.backends[${i}].id`),
            type: text(b.type, `status.backends[${i}].type`),
            state: enumName(b.state, ENUM_PREFIX.backendState, `status.backends[${i}].state`, ['READY', 'UNAVAILABLE', 'HUNG']) as BackendStateName,
            reason: text(b.reason, `status.backends[${i}].reason`),
          })),
          shares: ((body.shares ?? []) as Plain[]).map((s, i) => ({
            share: text(s.share, `status.shares[${i}].share`),
            connections: Number(s.connections ?? 0),
            ops: uint64(s.ops, `status.shares[${i}].ops`),
          })),
          uptimeMs: uint64(body.uptime_ms, 'status.uptime_ms'),
        };
      case 'error':
        return errorFromWire(body);
      default:
        throw new Malformed(`unknown gateway message ${kind}`);
    }
  });
}

// ---- encoding ----------------------------------------------------------------------------

function grantToWire(grant: GrantSpec): Plain {
  const guest = grant.guest;
  return {
    id: grant.id,
    share: grant.share,
    backend: grant.backend,
    path: grant.path,
    guest: 'tcp' in guest ? { tcp: guest.tcp } : 'cid' in guest ? { cid: guest.cid } : { vm: guest.vm },
    access: `ACCESS_${grant.access.toUpperCase()}`,
    squash: `SQUASH_${grant.squash.toUpperCase()}`,
    anon_uid: grant.anonUid,
    anon_gid: grant.anonGid,
  };
}

function errorToWire(message: ProtocolError): Plain {
  return { code: message.code, message: message.message, revision: message.revision };
}

function heartbeatToWire(message: Heartbeat): Plain {
  return { sequence: message.sequence, sent_at_ms: message.sentAtMs };
}

function encode(type: protobuf.Type, plain: Plain): Buffer {
  const bytes = type.encode(type.fromObject(plain)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeControllerMessage(message: ControllerMessage): Buffer {
  let body: Plain;
  switch (message.kind) {
    case 'welcome':
      body = { epoch: message.epoch, revision: message.revision, heartbeat_interval_ms: message.heartbeatIntervalMs };
      break;
    case 'snapshot':
      body = { epoch: message.epoch, revision: message.revision, grants: message.grants.map(grantToWire) };
      break;
    case 'upsert':
      body = { revision: message.revision, grant: grantToWire(message.grant) };
      break;
    case 'revoke':
      body = { revision: message.revision, grant_id: message.grantId };
      break;
    case 'heartbeat':
      body = heartbeatToWire(message);
      break;
    case 'error':
      body = errorToWire(message);
      break;
  }
  return encode(ControllerMessageType, { [message.kind]: body });
}

export function encodeGatewayMessage(message: GatewayMessage): Buffer {
  let body: Plain;
  switch (message.kind) {
    case 'hello':
      body = {
        protocol_version: message.protocolVersion,
        node_id: message.nodeId,
        software_version: message.softwareVersion,
        capabilities: message.capabilities,
        epoch: message.epoch,
        last_applied_revision: message.lastAppliedRevision,
      };
      break;
    case 'ack':
      body = {
        epoch: message.epoch,
        revision: message.revision,
        results: message.results.map((r) => ({
          grant_id: r.grantId,
          state: `GRANT_STATE_${r.state}`,
          reason_code: r.reasonCode,
          reason: r.reason,
        })),
      };
      break;
    case 'heartbeat':
      body = heartbeatToWire(message);
      break;
    case 'status':
      body = {
        epoch: message.epoch,
        applied_revision: message.appliedRevision,
        connections: message.connections,
        backends: message.backends.map((b) => ({ id: b.id, type: b.type, state: `BACKEND_STATE_${b.state}`, reason: b.reason })),
        shares: message.shares.map((s) => ({ share: s.share, connections: s.connections, ops: s.ops })),
        uptime_ms: message.uptimeMs,
      };
      break;
    case 'error':
      body = errorToWire(message);
      break;
  }
  return encode(GatewayMessageType, { [message.kind]: body });
}

/** Raw access for tests that need to build frames the typed encoders refuse to make. */
export const wireTypes = { ControllerMessage: ControllerMessageType, GatewayMessage: GatewayMessageType };
