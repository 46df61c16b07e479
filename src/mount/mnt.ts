// RFC 1813 section 5.2.1: mountres3 MOUNTPROC3_MNT(dirpath) = 1.
//   struct mountres3_ok { fhandle3 fhandle; int auth_flavors<>; };
//   union mountres3 switch (mountstat3 fhs_status) { case MNT3_OK: mountres3_ok mountinfo; default: void; };
import { AuthFlavor, peerIdentity, type ProcedureHandler } from '../rpc/types.js';
import type { XdrWriter } from '../rpc/xdr.js';
import type { MountService } from '../fs/types.js';
import { callerOf } from '../nfs3/caller.js';
import type { MountList } from './mountlist.js';
import { FHSIZE3, Mountstat3 } from './types.js';
import { decodeDirpath } from './xdr.js';

/**
 * The flavors a client may use on the mounted filesystem, preferred first. Linux clients refuse a
 * mount whose list lacks the flavor they intend to use (`sec=none` needs AUTH_NONE listed); NFS
 * serves AUTH_NONE callers as the anonymous ids.
 */
export const MOUNT_AUTH_FLAVORS: readonly number[] = [AuthFlavor.AUTH_SYS, AuthFlavor.AUTH_NONE];

export function encodeMountres3(w: XdrWriter, res: { status: number; handle?: Buffer }): void {
  w.uint32(res.status);
  if (res.status !== Mountstat3.MNT3_OK) return;
  if (res.handle === undefined) throw new Error('MNT: MNT3_OK without a handle');
  if (res.handle.length > FHSIZE3) throw new Error(`MNT: handle of ${res.handle.length} bytes exceeds FHSIZE3`);
  w.opaque(res.handle);
  w.uint32(MOUNT_AUTH_FLAVORS.length);
  for (const flavor of MOUNT_AUTH_FLAVORS) w.int32(flavor);
}

export function mnt(service: MountService, mounts: MountList): ProcedureHandler {
  return async (call, reply) => {
    const path = decodeDirpath(call.args);
    const res = await service.mount(callerOf(call), path);
    encodeMountres3(reply, res);
    if (res.status === Mountstat3.MNT3_OK) mounts.add(peerIdentity(call.peer), path);
  };
}
