// RFC 1813 section 5.2.3: void MOUNTPROC3_UMNT(dirpath) = 3.
import { peerIdentity, type ProcedureHandler } from '../rpc/types.js';
import type { MountList } from './mountlist.js';
import { decodeDirpath } from './xdr.js';

export function umnt(mounts: MountList): ProcedureHandler {
  return (call) => {
    const path = decodeDirpath(call.args);
    mounts.remove(peerIdentity(call.peer), path);
  };
}
