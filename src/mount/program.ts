// The MOUNT version 3 program (RFC 1813 section 5): 100005, version 3, procedures 0 to 5.
import { PROGRAM, type ProcedureHandler, type RpcProgram } from '../rpc/types.js';
import type { MountService } from '../fs/types.js';
import { MountList } from './mountlist.js';
import { Mount3Proc } from './types.js';
import { mountNull } from './null.js';
import { mnt } from './mnt.js';
import { dump } from './dump.js';
import { umnt } from './umnt.js';
import { umntall } from './umntall.js';
import { mountExport } from './export.js';

export const MOUNT_V3 = 3;

/** `mounts` may be passed in to share or inspect the DUMP list; by default each program has its own. */
export function createMountProgram(service: MountService, mounts: MountList = new MountList()): RpcProgram {
  const handlers: ProcedureHandler[] = [];
  handlers[Mount3Proc.NULL] = mountNull();
  handlers[Mount3Proc.MNT] = mnt(service, mounts);
  handlers[Mount3Proc.DUMP] = dump(mounts);
  handlers[Mount3Proc.UMNT] = umnt(mounts);
  handlers[Mount3Proc.UMNTALL] = umntall(mounts);
  handlers[Mount3Proc.EXPORT] = mountExport(service);
  return {
    prog: PROGRAM.MOUNT,
    lowVersion: MOUNT_V3,
    highVersion: MOUNT_V3,
    name: 'mount3',
    procedure: (vers, proc) => (vers === MOUNT_V3 ? handlers[proc] : undefined),
    procedureName: (vers, proc) => (vers === MOUNT_V3 ? Mount3Proc[proc] : undefined),
  };
}
