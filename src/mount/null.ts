// RFC 1813 section 5.2.0: void MOUNTPROC3_NULL(void) = 0.
import type { ProcedureHandler } from '../rpc/types.js';

export function mountNull(): ProcedureHandler {
  return () => undefined;
}
