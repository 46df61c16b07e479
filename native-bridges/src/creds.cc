#include "creds.h"

#include <errno.h>
#include <sched.h>
#include <linux/capability.h>
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
// Never destroyed: pool threads may still restore credentials while the process exits.
std::vector<gid_t>& g_daemon_groups = *new std::vector<gid_t>();

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

// KeepCredsBetweenOps: set on pool threads. t_left_as is the caller identity a guard left applied
// (meaningful only while t_left_applied); between operations only, never while a guard is alive.
thread_local bool t_keep_creds = false;
thread_local bool t_left_applied = false;
thread_local Creds t_left_as;

bool SameCreds(const Creds& a, const Creds& b) {
  if (!a.present || !b.present || a.uid != b.uid || a.gid != b.gid || a.ngroups != b.ngroups) return false;
  for (uint32_t i = 0; i < a.ngroups; i++)
    if (a.groups[i] != b.groups[i]) return false;
  return true;
}

// The thread's capabilities, saved while it acts as a non-root caller. capget/capset with pid 0
// act on the calling thread only.
struct ThreadCaps {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
};
thread_local ThreadCaps t_saved_caps;
thread_local bool t_caps_dropped = false;

// Acting as a non-root caller, the thread keeps no effective capability at all. The kernel drops
// only the filesystem ones when fsuid leaves 0; knfsd also drops CAP_SYS_RESOURCE (the ext4
// reserved blocks, quota limits), and nothing a guest's operation needs is in the rest.
int DropCaps() {
  if (syscall(SYS_capget, &t_saved_caps.header, t_saved_caps.data) != 0) return errno;
  ThreadCaps none;
  for (unsigned i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
    none.data[i].permitted = t_saved_caps.data[i].permitted;
    none.data[i].inheritable = t_saved_caps.data[i].inheritable;
    none.data[i].effective = 0;
  }
  if (syscall(SYS_capset, &none.header, none.data) != 0) return errno;
  t_caps_dropped = true;
  return 0;
}

void RestoreCaps() {
  if (!t_caps_dropped) return;
  ThreadCaps saved = t_saved_caps;
  if (syscall(SYS_capset, &saved.header, saved.data) != 0) Fatal("capset");
  t_caps_dropped = false;
}

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

void KeepCredsBetweenOps() { t_keep_creds = true; }

void PrepareCredsFor(const Creds* creds) {
  if (!t_left_applied) return;
  if (creds != nullptr && SameCreds(*creds, t_left_as)) return;
  // A guard object that owns nothing: Restore() returns the thread to the daemon (or aborts).
  Creds none;
  CredGuard back(none);
  back.RestoreNow();
  t_left_applied = false;
}

void ActAsDaemon() { PrepareCredsFor(nullptr); }

void RequireDaemonCreds() {
  if (CurrentFsuid() != static_cast<long>(g_daemon_fsuid)) Fatal("new thread: fsuid");
  if (CurrentFsgid() != static_cast<long>(g_daemon_fsgid)) Fatal("new thread: fsgid");
  std::vector<gid_t> groups(g_daemon_groups.size() + 1);
  const int n = getgroups(static_cast<int>(groups.size()), groups.data());
  if (n != static_cast<int>(g_daemon_groups.size())) Fatal("new thread: groups");
  for (int i = 0; i < n; i++)
    if (groups[i] != g_daemon_groups[i]) Fatal("new thread: groups");
}

void InitDaemonCreds() {
  // Once per process, even if several environments (worker threads) load the addon: workers may
  // already be restoring from these values.
  static std::once_flag once;
  std::call_once(once, [] { CaptureDaemonCreds(); });
}

CredGuard::CredGuard(const Creds& creds) : creds_(creds) {
  if (!creds_.present) return;
  if (t_left_applied) {
    // A pool thread between operations: PrepareCredsFor() left it as exactly these creds.
    t_left_applied = false;
    if (SameCreds(creds_, t_left_as)) {
      acting_ = true;
      return;
    }
    RestoreNow();  // not reached after PrepareCredsFor(); kept so a guard never stacks identities
  }
  err_ = Apply();
}

CredGuard::~CredGuard() {
  if (!acting_) return;
  if (t_keep_creds) {
    t_left_as = creds_;
    t_left_applied = true;
    return;
  }
  Restore();
}

void CredGuard::RestoreNow() { Restore(); }

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
  // Last: setgroups/setfsgid above (and in Restore) need CAP_SETGID. A root caller (no squash)
  // keeps the daemon's capabilities, as with knfsd.
  if (creds_.uid != 0) {
    int e = DropCaps();
    if (e != 0) {
      Restore();
      return e;
    }
  }
  return 0;
}

void CredGuard::Restore() {
  RestoreCaps();  // first: the id switches back need CAP_SETGID
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
