// RFC 1813 section 5.2.5: exports MOUNTPROC3_EXPORT(void) = 5.
//   typedef struct groupnode *groups;
//   struct groupnode { name gr_name; groups gr_next; };
//   typedef struct exportnode *exports;
//   struct exportnode { dirpath ex_dir; groups ex_groups; exports ex_next; };
// Only the shares granted to the asking peer, each as `/<share>`, with the peer itself as the group.
import { peerIdentity, type ProcedureHandler } from '../rpc/types.js';
import type { XdrWriter } from '../rpc/xdr.js';
import type { MountService } from '../fs/types.js';
import { encodeDirpath, encodeName } from './xdr.js';

export interface ExportNode {
  dir: string;
  groups: string[];
}

export function encodeExports(w: XdrWriter, nodes: readonly ExportNode[]): void {
  for (const node of nodes) {
    w.bool(true);
    encodeDirpath(w, node.dir);
    for (const group of node.groups) {
      w.bool(true);
      encodeName(w, group);
    }
    w.bool(false);
  }
  w.bool(false);
}

export function mountExport(service: MountService): ProcedureHandler {
  return (call, reply) => {
    const identity = peerIdentity(call.peer);
    const nodes = service.exportsFor(identity).map((share) => ({ dir: `/${share}`, groups: [identity] }));
    encodeExports(reply, nodes);
  };
}
