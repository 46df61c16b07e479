// manila_native: the few Linux syscalls Node lacks: for the NFS data path (see
// src/native/fsbridge.ts for the TypeScript contract) and for the sockets Node cannot open,
// AF_VSOCK and sd_notify's datagram (src/native/sockets.ts).
#include <napi.h>

#include "common.h"
#include "creds.h"

namespace manila {

AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitDaemonCreds();
  TuneMalloc();
  env.SetInstanceData<AddonData>(new AddonData());  // deleted by Node with the environment
  if (!InitStatBuilder(env)) return exports;         // exception pending: the require fails
  if (!InitPool(env)) return exports;
  Put(exports, "poolStats", Napi::Function::New(env, PoolStats, "poolStats"));
  InitHandles(env, exports);
  InitIo(env, exports);
  InitFsOps(env, exports);
  InitReaddir(env, exports);
  InitEncode(env, exports);
  InitInPlace(env, exports);
  InitSockets(env, exports);
  InitGfid(env, exports);
  InitSplice(env, exports);
  return exports;
}

}  // namespace manila

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return manila::Init(env, exports); }

NODE_API_MODULE(manila_native, InitModule)
