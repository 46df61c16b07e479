// RFC 1813 section 5.2.4: void MOUNTPROC3_UMNTALL(void) = 4.
import { peerIdentity, type ProcedureHandler } from '../rpc/types.js';
import type { MountList } from './mountlist.js';

export function umntall(mounts: MountList): ProcedureHandler {
  return (call) => {
    mounts.removeAll(peerIdentity(call.peer));
  };
}
