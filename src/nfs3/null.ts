// RFC 1813 section 3.3.0: NFSPROC3_NULL, void NFSPROC3_NULL(void) = 0.
import type { ProcedureHandler } from '../rpc/types.js';

/** No arguments, no results: a ping. Trailing bytes, if any, are ignored. */
export function nfsNull(): ProcedureHandler {
  return () => undefined;
}
