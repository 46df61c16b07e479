// The addon's own worker threads for filesystem operations, instead of libuv's threadpool.
//
// Why not napi_async_work on libuv's pool (what the profile showed under GETATTR):
//   - each operation switched the thread to the NFS caller and back: 6 to 10 credential syscalls,
//     each a new kernel cred struct. Our threads run nothing but our operations, so a thread keeps
//     the last caller's identity between operations and the next operation of the same caller
//     (the usual case: one guest, one user) switches nothing (creds.h, KeepCredsBetweenOps);
//   - each completion ran in its own callback scope, with a microtask checkpoint per operation;
//     here every operation finished since the last wake-up is resolved under one scope;
//   - each operation allocated an AsyncWorker, an async resource and an async_hooks id.
// Threads are started on demand up to a bound (MANILA_POOL_THREADS, default 256), so an idle
// daemon holds only the threads it has needed. A thread stuck in a hung backend's syscall stays
// stuck; the backend gates (src/backends/gate.ts) bound how many one backend can hold.
#pragma once
#include <napi.h>
#include <uv.h>

#include "creds.h"

namespace manila {

/** One operation: Run() on a worker thread, Build() on the main thread once it is done. */
class PoolJob {
 public:
  virtual ~PoolJob() = default;
  virtual void Run() = 0;
  virtual Napi::Value Build(Napi::Env env) = 0;
  /** The identity the operation acts as (its CredGuard), or nullptr for the daemon's own. */
  virtual const Creds* JobCreds() const = 0;

 private:
  friend class OpPool;
  napi_deferred deferred_ = nullptr;
  PoolJob* next_ = nullptr;
};

/** Queues `job` (taking ownership) on this environment's pool; returns the promise of its Build(). */
Napi::Value SubmitJob(Napi::Env env, PoolJob* job);

/** Creates this environment's pool (threads start on demand); false with a JS exception pending. */
bool InitPool(Napi::Env env);

/** Threads the pool of this environment has started, and the most it may start (for tests). */
Napi::Value PoolStats(const Napi::CallbackInfo& info);

}  // namespace manila
