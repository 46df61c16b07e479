// RFC 1813 section 5.2.2: mountlist MOUNTPROC3_DUMP(void) = 2.
//   typedef struct mountbody *mountlist;
//   struct mountbody { name ml_hostname; dirpath ml_directory; mountlist ml_next; };
// Only the asking peer's own entries: one guest never learns what another mounted.
import { peerIdentity, type ProcedureHandler } from '../rpc/types.js';
import type { XdrWriter } from '../rpc/xdr.js';
import type { MountEntry, MountList } from './mountlist.js';
import { encodeDirpath, encodeName } from './xdr.js';

export function encodeMountlist(w: XdrWriter, entries: readonly MountEntry[]): void {
  for (const entry of entries) {
    w.bool(true);
    encodeName(w, entry.hostname);
    encodeDirpath(w, entry.directory);
  }
  w.bool(false);
}

export function dump(mounts: MountList): ProcedureHandler {
  return (call, reply) => {
    encodeMountlist(reply, mounts.entriesOf(peerIdentity(call.peer)));
  };
}
