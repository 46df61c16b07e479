// Turns ajv's errors into messages that name the field the way the user wrote it
// (`grants[1].access: must be one of rw, ro`). Shared by the config file, the controller's HTTP
// API and the controller protocol's grant checks.
import type { ErrorObject } from 'ajv';
import { ID_RULE } from './schema.js';

/** `/grants/0/access` -> `grants[0].access`, under `prefix` when given. */
export function fieldName(instancePath: string, extra?: string, prefix = ''): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  let name = prefix;
  for (const part of parts) name += /^\d+$/.test(part) ? `[${part}]` : name ? `.${part}` : part;
  return name || '(top level)';
}

export function describeAjvError(error: ErrorObject, prefix = ''): string {
  const params = error.params as Record<string, unknown>;
  const field = (extra?: string) => fieldName(error.instancePath, extra, prefix);
  switch (error.keyword) {
    case 'required':
      return `${field(String(params.missingProperty))}: is required`;
    case 'additionalProperty':
    case 'additionalProperties':
      return `${field(String(params.additionalProperty))}: is not a known field`;
    case 'enum':
      return `${field()}: must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return `${field()}: ${ID_RULE}`;
    case 'minProperties':
    case 'maxProperties':
      return `${field()}: must have exactly one of tcp, cid, vm`;
    default:
      return `${field()}: ${error.message ?? 'is invalid'}`;
  }
}

/** Every distinct problem ajv found, in order. */
export function describeAjvErrors(errors: readonly ErrorObject[] | null | undefined, prefix = ''): string[] {
  return [...new Set((errors ?? []).map((e) => describeAjvError(e, prefix)))];
}
