// Who is calling, for the fs layer: the channel's identity plus what AUTH_SYS claims.
import { peerIdentity, type RpcCall } from '../rpc/types.js';
import type { Caller } from '../fs/types.js';

export function callerOf(call: RpcCall): Caller {
  return { peer: call.peer, identity: peerIdentity(call.peer), flavor: call.flavor, authSys: call.authSys };
}
