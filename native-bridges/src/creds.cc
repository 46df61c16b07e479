#include "creds.h"

#include <errno.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace manila {

namespace {

uid_t g_daemon_fsuid = 0;
gid_t g_daemon_fsgid = 0;
std::vector<gid_t> g_daemon_groups;

// setfsuid/setfsgid return the previous value and never fail visibly; asking for an invalid id
// (-1) changes nothing and returns the current one, which is how a switch is verified.
long CurrentFsuid() { return syscall(SYS_setfsuid, static_cast<uid_t>(-1)); }
long CurrentFsgid() { return syscall(SYS_setfsgid, static_cast<gid_t>(-1)); }

[[noreturn]] void Fatal(const char* what) {
  // A worker thread that cannot get back to the daemon's identity must not run anything else:
  // the next operation on it would run with a guest's rights (or a guest's with the daemon's).
  std::fprintf(stderr, "manila_native: FATAL: could not restore daemon credentials (%s), aborting\n", what);
  std::abort();
}

thread_local bool t_fs_unshared = false;

void CaptureDaemonCreds() {
  g_daemon_fsuid = static_cast<uid_t>(CurrentFsuid());
  g_daemon_fsgid = static_cast<gid_t>(CurrentFsgid());
  int n = getgroups(0, nullptr);
  if (n > 0) {
    g_daemon_groups.resize(static_cast<size_t>(n));
    n = getgroups(n, g_daemon_groups.data());
    g_daemon_groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
}

}  // namespace

void InitDaemonCreds() {
  // Once per process, even if several environments (worker threads) load the addon: workers may
  // already be restoring from these values.
  static std::once_flag once;
  std::call_once(once, [] { CaptureDaemonCreds(); });
}

CredGuard::CredGuard(const Creds& creds) : creds_(creds) {
  if (creds_.present) err_ = Apply();
}

CredGuard::~CredGuard() {
  if (acting_) Restore();
}

int CredGuard::Apply() {
  // Groups first, then fsgid, then fsuid: setgroups and setfsgid need CAP_SETGID, which fsuid
  // changes do not affect, but doing the uid last keeps the window in the daemon's favour.
  if (syscall(SYS_setgroups, static_cast<size_t>(creds_.ngroups), creds_.groups) != 0) {
    int e = errno;
    Restore();
    return e ? e : EPERM;
  }
  acting_ = true;
  syscall(SYS_setfsgid, static_cast<gid_t>(creds_.gid));
  if (CurrentFsgid() != static_cast<long>(creds_.gid)) {
    Restore();
    return EPERM;
  }
  syscall(SYS_setfsuid, static_cast<uid_t>(creds_.uid));
  if (CurrentFsuid() != static_cast<long>(creds_.uid)) {
    Restore();
    return EPERM;
  }
  return 0;
}

void CredGuard::Restore() {
  syscall(SYS_setfsuid, g_daemon_fsuid);
  syscall(SYS_setfsgid, g_daemon_fsgid);
  if (syscall(SYS_setgroups, g_daemon_groups.size(), g_daemon_groups.data()) != 0) Fatal("setgroups");
  if (CurrentFsuid() != static_cast<long>(g_daemon_fsuid)) Fatal("setfsuid");
  if (CurrentFsgid() != static_cast<long>(g_daemon_fsgid)) Fatal("setfsgid");
  acting_ = false;
}

void CredGuard::Suspend() {
  if (acting_) Restore();
}

int CredGuard::Resume() {
  if (!creds_.present || acting_) return 0;
  int e = Apply();
  if (e != 0 && err_ == 0) err_ = e;
  return e;
}

UmaskZero::UmaskZero() {
  if (!t_fs_unshared && unshare(CLONE_FS) == 0) t_fs_unshared = true;
  if (t_fs_unshared) {
    old_ = umask(0);
    active_ = true;
  }
}

UmaskZero::~UmaskZero() {
  if (active_) umask(old_);
}

}  // namespace manila
