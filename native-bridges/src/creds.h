// Per-thread filesystem credentials for the worker threads.
//
// Linux keeps credentials per thread. The glibc wrappers of setgroups/setresuid/... broadcast the
// change to every thread of the process (the "setxid" signal dance), so this file uses the raw
// syscalls, which change only the calling thread: exactly what a libuv threadpool worker needs to
// act as one NFS caller for the duration of one operation.
//
// When fsuid leaves 0 the kernel drops the filesystem capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE,
// CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_MKNOD, ...) from the thread's effective set, and
// raises them again from the permitted set when fsuid returns to 0. Acting as a non-root caller,
// the thread also drops every other effective capability (capset, per thread: CAP_SYS_RESOURCE
// would let a guest write into ext4's reserved blocks and past quotas), and gets them back first
// thing when it returns to the daemon's identity.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace manila {

constexpr unsigned kMaxGroups = 32;

/** A caller's identity: [uid, gid, ...groups] from JS, or absent to act as the daemon. */
struct Creds {
  bool present = false;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t ngroups = 0;
  gid_t groups[kMaxGroups] = {};
};

/**
 * For threads that run only this addon's operations (pool.cc): a CredGuard leaves the caller's
 * identity applied when it ends, and the next guard for the same caller switches nothing. Such a
 * thread must call PrepareCredsFor() before each operation.
 */
void KeepCredsBetweenOps();

/**
 * Before an operation on a KeepCredsBetweenOps thread: unless the thread already acts as exactly
 * `creds` (the identity the operation's CredGuard will take), it returns to the daemon's identity,
 * so code an operation runs before or without its guard never runs as another caller.
 */
void PrepareCredsFor(const Creds* creds);

/** PrepareCredsFor(nullptr): this thread acts as the daemon from now on. */
void ActAsDaemon();

/** Aborts unless this thread's fsuid, fsgid and groups are the daemon's (a new pool thread). */
void RequireDaemonCreds();

/** Records the daemon's own fsuid, fsgid and supplementary groups; call once, on the main thread. */
void InitDaemonCreds();

/**
 * RAII: switches this thread to `creds` (setgroups, setfsgid, setfsuid, raw syscalls) and
 * switches back to the daemon's identity when destroyed (on a KeepCredsBetweenOps thread: leaves
 * the caller's identity for the next operation, see PrepareCredsFor). A guard for absent creds
 * does nothing.
 * If switching fails, err() is the errno and the thread is left as the daemon: the caller must
 * then not perform the operation.
 */
class CredGuard {
 public:
  explicit CredGuard(const Creds& creds);
  ~CredGuard();
  CredGuard(const CredGuard&) = delete;
  CredGuard& operator=(const CredGuard&) = delete;

  int err() const { return err_; }
  /** True while the thread acts as the caller (not the daemon). */
  bool acting() const { return acting_; }

  /** Temporarily back to the daemon (for the NFS owner override); Resume() switches back. */
  void Suspend();
  /** Returns 0, or the errno of a failed switch (the thread then stays the daemon). */
  int Resume();
  /** Back to the daemon's identity now, whatever this thread acted as (aborts if it cannot). */
  void RestoreNow();

 private:
  int Apply();
  void Restore();

  const Creds& creds_;
  bool acting_ = false;
  int err_ = 0;
};

/** RAII: act as the daemon within a CredGuard's scope; resume() reports a failed switch back. */
class DaemonScope {
 public:
  explicit DaemonScope(CredGuard& guard) : guard_(guard), was_acting_(guard.acting()) {
    if (was_acting_) guard_.Suspend();
  }
  ~DaemonScope() {
    if (was_acting_ && !resumed_) guard_.Resume();
  }
  /** Switches back to the caller now; returns 0 or errno. */
  int resume() {
    resumed_ = true;
    return was_acting_ ? guard_.Resume() : 0;
  }
  DaemonScope(const DaemonScope&) = delete;
  DaemonScope& operator=(const DaemonScope&) = delete;

 private:
  CredGuard& guard_;
  bool was_acting_;
  bool resumed_ = false;
};

/**
 * RAII: umask 0 for this thread while an object is created, so the mode the NFS client asked for
 * is the mode it gets (the client has applied its own umask already), as knfsd does. The umask
 * lives in the fs_struct that threads share, so the first use on a thread gives that thread its
 * own copy (unshare(CLONE_FS), as knfsd's threads do); the previous umask is restored afterwards.
 * Side effect: such a threadpool thread no longer follows later process.chdir()/process.umask().
 */
class UmaskZero {
 public:
  UmaskZero();
  ~UmaskZero();
  UmaskZero(const UmaskZero&) = delete;
  UmaskZero& operator=(const UmaskZero&) = delete;

 private:
  bool active_ = false;
  mode_t old_ = 0;
};

}  // namespace manila
