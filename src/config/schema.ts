// The config file's shape (DESIGN.md "Interfaces others rely on"), as JSON Schema for ajv.
// Field names are the file's own (snake_case); the loader maps them to the daemon's types.
import { BACKEND_TYPES } from '../backends/config.js';

/** Ids (node, grant, share, backend, vm): the one rule, for the config, the API and the wire. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';
export const ID = new RegExp(ID_PATTERN);
export const ID_RULE = "must be letters, digits, '.', '_' or '-' (at most 128, not starting with a symbol)";

const id = { type: 'string', pattern: ID_PATTERN } as const;
const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const ugid = { type: 'integer', minimum: 0, maximum: 4294967294 } as const;

export const guestSchema = {
  type: 'object',
  minProperties: 1,
  maxProperties: 1,
  additionalProperties: false,
  properties: {
    tcp: { type: 'string', minLength: 1 },
    cid: { type: 'integer', minimum: 3, maximum: 4294967294 },
    vm: id,
  },
} as const;

export const grantSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'share', 'backend', 'path', 'guest'],
  properties: {
    id,
    share: id,
    backend: id,
    path: { type: 'string', minLength: 1, maxLength: 4096 },
    guest: guestSchema,
    access: { enum: ['rw', 'ro'] },
    squash: { enum: ['none', 'root', 'all'] },
    anon_uid: ugid,
    anon_gid: ugid,
  },
} as const;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['node_id', 'state_dir', 'listen'],
  properties: {
    node_id: id,
    state_dir: { type: 'string', minLength: 1 },
    runtime_dir: { type: 'string', minLength: 1 },
    log_level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    listen: {
      type: 'object',
      additionalProperties: false,
      properties: {
        tcp: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host', 'port'],
            properties: { host: { type: 'string', minLength: 1 }, port },
          },
        },
        vsock: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['port'],
            properties: { port, cid: { type: 'integer', minimum: 0 } },
          },
        },
        hybrid_vsock: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['path', 'guest'],
            properties: {
              path: { type: 'string', minLength: 1, maxLength: 107 },
              guest: id,
              owner: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'integer', minimum: 0 }] },
              group: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'integer', minimum: 0 }] },
              mode: { type: 'string', pattern: '^0?[0-7]{3}$' },
            },
          },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        idle_timeout_s: { type: 'integer', minimum: 1, maximum: 86400 },
        max_record_bytes: { type: 'integer', minimum: 65536, maximum: 16777216 },
        max_calls_in_flight: { type: 'integer', minimum: 1, maximum: 4096 },
        drain_timeout_s: { type: 'integer', minimum: 0, maximum: 600 },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      required: ['port'],
      properties: { host: { type: 'string', minLength: 1 }, port },
    },
    controller: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', minLength: 1 },
        urls: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
        token_file: { type: 'string', minLength: 1 },
        ca_file: { type: 'string', minLength: 1 },
        cert_file: { type: 'string', minLength: 1 },
        key_file: { type: 'string', minLength: 1 },
      },
    },
    backends: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'type'],
        // the fields of each type are checked by src/backends/config.ts, which names the field
        properties: {
          id,
          type: { enum: BACKEND_TYPES },
        },
      },
    },
    grants: { type: 'array', items: grantSchema },
  },
} as const;
