// GlusterFS handles built on the gfid (DESIGN.md "File handles"). On a GlusterFS FUSE mount,
// open_by_handle_at fails with ESTALE once the kernel drops its caches, but a client mounted with
// --aux-gfid-mount opens any object as MOUNT/.gfid/<uuid>. For a registered mount, HandleAt gives
// { kGfidHandleType, 16-byte gfid } and openByHandle opens that through the mount's root.
//
// What the gfid-access layer does (glusterfs 10.3, measured): getxattr "glusterfs.gfid" through
// /proc/self/fd/N gives an O_PATH fd's object's 16 raw bytes (a symlink's own gfid); .gfid/<uuid>
// resolves only relative to the mount root. A file or symlink opened there is the real inode. A
// directory is not: it is a virtual inode (another st_ino and gfid) that cannot be listed
// (EOPNOTSUPP) and whose ".." is .gfid itself. So a directory is reopened by its path
// ("glusterfs.ancestry.path"), strictly beneath the root, and kept only if its gfid matches.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.h"

namespace manila {

namespace {

constexpr long kFuseSuperMagic = 0x65735546;
constexpr char kGfidXattr[] = "glusterfs.gfid";
constexpr char kAncestryXattr[] = "glusterfs.ancestry.path";

struct GfidMount {
  std::shared_ptr<Fd> root;  // shared: a worker keeps using it if the mount is unregistered meanwhile
  unsigned refs = 0;
};

std::mutex g_mutex;
std::unordered_map<int, GfidMount> g_mounts;     // mount id -> root of the mount
std::atomic<unsigned> g_count{0};                // g_mounts.size(): no lock on the path without gluster

std::shared_ptr<Fd> FindMount(int mountId) {
  if (g_count.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_mounts.find(mountId);
  return it == g_mounts.end() ? nullptr : it->second.root;
}

/** The mount id and whether `fd` (AT_EMPTY_PATH) or dirfd/name is the root of its mount; 0 or errno. */
int MountOf(int dirfd, const char* name, int atflags, int* mountId, bool* isRoot) {
  struct statx stx;
  if (statx(dirfd, name, atflags | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID, &stx) != 0) return errno;
  if (!(stx.stx_mask & STATX_MNT_ID)) return EOPNOTSUPP;
  *mountId = static_cast<int>(stx.stx_mnt_id);
  if (isRoot) *isRoot = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
  return 0;
}

/**
 * RAII: the thread's fsuid back to its euid (the daemon's) while it reads a gfid: under a guest's
 * fsuid the kernel checks read permission for any non-"user." xattr, and a LOOKUP needs no read
 * permission on the object. Raw per-thread syscalls, as in creds.cc. Towards fsuid 0 the kernel
 * raises the filesystem capabilities from the permitted set; the way back to the guest's fsuid
 * needs CAP_SETUID, which that does not raise (creds.cc dropped every effective capability), so it
 * is raised for that one switch and then the caller's capability sets are put back exactly.
 */
class DaemonFsuid {
 public:
  DaemonFsuid() {
    prev_ = static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1)));
    const uid_t want = geteuid();
    if (prev_ == want || syscall(SYS_capget, &header_, saved_) != 0) return;  // as the caller, then
    switched_ = true;
    syscall(SYS_setfsuid, want);
  }
  ~DaemonFsuid() {
    if (!switched_) return;
    __user_cap_data_struct with[_LINUX_CAPABILITY_U32S_3];
    std::memcpy(with, saved_, sizeof with);
    with[CAP_TO_INDEX(CAP_SETUID)].effective |= CAP_TO_MASK(CAP_SETUID) & with[CAP_TO_INDEX(CAP_SETUID)].permitted;
    __user_cap_header_struct header = header_;
    bool ok = syscall(SYS_capset, &header, with) == 0;
    syscall(SYS_setfsuid, prev_);
    ok = ok && static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1))) == prev_;
    header = header_;
    ok = ok && syscall(SYS_capset, &header, saved_) == 0;
    if (!ok) {
      // as in creds.cc: never run another operation with the wrong identity
      std::fprintf(stderr, "manila_native: FATAL: could not restore the caller's fsuid, aborting\n");
      std::abort();
    }
  }
  DaemonFsuid(const DaemonFsuid&) = delete;
  DaemonFsuid& operator=(const DaemonFsuid&) = delete;

 private:
  uid_t prev_;
  bool switched_ = false;
  __user_cap_header_struct header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved_[_LINUX_CAPABILITY_U32S_3] = {};
};

/** getxattr through /proc/self/fd/<fd> (works on O_PATH fds; a symlink gives its own); size or -errno. */
ssize_t FdXattr(int fd, const char* name, void* buf, size_t size) {
  char path[32];
  ProcFdPath(fd, path, sizeof path);
  DaemonFsuid daemon;
  ssize_t n = RetryEintr([&] { return getxattr(path, name, buf, size); });
  return n < 0 ? -errno : n;
}

int GfidOfFd(int fd, unsigned char out[kGfidBytes]) {
  unsigned char buf[64];
  ssize_t n = FdXattr(fd, kGfidXattr, buf, sizeof buf);
  if (n < 0) return static_cast<int>(-n);
  if (n != static_cast<ssize_t>(kGfidBytes)) return EIO;
  std::memcpy(out, buf, kGfidBytes);
  return 0;
}

/** ".gfid/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
std::string GfidPath(const unsigned char* g) {
  char s[64];
  std::snprintf(s, sizeof s,
                ".gfid/%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
  return s;
}

bool SameObject(int a, int b) {
  struct stat sa, sb;
  return StatFd(a, &sa) == 0 && StatFd(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// The real directory behind a gfid: by its path from the volume root, beneath the mount root,
// following nothing, on the same mount, with the same gfid (else it moved meanwhile: try again).
int OpenGfidDirectory(int root, int virtualFd, const unsigned char* gfid, int flags, int* out) {
  for (int attempt = 0; attempt < 3; attempt++) {
    char path[PATH_MAX + 1];
    ssize_t n = FdXattr(virtualFd, kAncestryXattr, path, sizeof path - 1);
    if (n < 0) return n == -ERANGE ? ENAMETOOLONG : static_cast<int>(-n);
    while (n > 0 && path[n - 1] == '\0') n--;  // the value carries its NUL
    path[n] = '\0';
    const char* rel = path;
    while (*rel == '/') rel++;
    if (*rel == '\0') rel = ".";
    struct open_how how = {};
    how.flags = static_cast<uint64_t>(flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    Fd dir(static_cast<int>(RetryEintr([&] { return syscall(SYS_openat2, root, rel, &how, sizeof how); })));
    if (!dir.ok()) {
      if (errno == ENOENT || errno == EXDEV) continue;  // renamed meanwhile, or a mount on the way
      return errno;
    }
    unsigned char found[kGfidBytes] = {};
    int e = GfidOfFd(dir.get(), found);
    if (e != 0) return e;
    if (std::memcmp(found, gfid, kGfidBytes) == 0) {
      *out = dir.release();
      return 0;
    }
  }
  return ESTALE;
}

}  // namespace

// ---------------------------------------------------------------- used by common.cc and handles.cc

bool AnyGfidMount() { return g_count.load(std::memory_order_acquire) != 0; }

int GfidHandleAt(int dirfd, const char* name, int flags, HandleData* out) {
  if (!FindMount(out->mountId)) return 0;  // not a registered mount: the kernel handle stands
  Fd opened;
  int fd = dirfd;
  if (!((flags & AT_EMPTY_PATH) && name[0] == '\0')) {
    const int follow = (flags & AT_SYMLINK_FOLLOW) ? 0 : O_NOFOLLOW;
    opened.reset(RetryEintr([&] { return openat(dirfd, name, O_PATH | follow | O_CLOEXEC); }));
    if (!opened.ok()) {
      out->ok = false;
      return errno;
    }
    fd = opened.get();
  }
  unsigned char gfid[kGfidBytes] = {};
  int e = GfidOfFd(fd, gfid);
  if (e != 0) {
    out->ok = false;
    return e;
  }
  out->ok = true;
  out->type = kGfidHandleType;
  out->len = kGfidBytes;
  std::memcpy(out->bytes, gfid, kGfidBytes);
  return 0;
}

int GfidMountIdAt(int dirfd, const char* name, int flags, int* mountId) {
  return MountOf(dirfd, name, flags & AT_EMPTY_PATH, mountId, nullptr);
}

bool IsGfidAuxName(int dirfd, const char* name) {
  if (!AnyGfidMount() || std::strcmp(name, ".gfid") != 0) return false;
  int mountId = 0;
  bool isRoot = false;
  if (MountOf(dirfd, "", AT_EMPTY_PATH, &mountId, &isRoot) != 0) return true;  // unsure: refuse
  return isRoot && FindMount(mountId) != nullptr;
}

int OpenGfidHandle(int mountFd, const std::string& bytes, int flags, int* out) {
  *out = -1;
  if (bytes.size() != kGfidBytes) return EINVAL;
  int mountId = 0;
  int e = MountOf(mountFd, "", AT_EMPTY_PATH, &mountId, nullptr);
  if (e != 0) return e;
  std::shared_ptr<Fd> root = FindMount(mountId);
  if (!root) return ESTALE;
  const auto* gfid = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::string path = GfidPath(gfid);
  Fd obj(RetryEintr([&] { return openat(root->get(), path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC); }));
  if (!obj.ok()) return errno == ENOENT ? ESTALE : errno;  // ENOENT: no such gfid (any more)
  struct stat st;
  if ((e = StatFd(obj.get(), &st)) != 0) return e;
  if (S_ISDIR(st.st_mode)) return OpenGfidDirectory(root->get(), obj.get(), gfid, flags, out);
  if ((flags & ~(O_CLOEXEC | O_NOFOLLOW)) == O_PATH) {
    *out = obj.release();
    return 0;
  }
  Fd real(RetryEintr([&] { return openat(root->get(), path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC); }));
  if (!real.ok()) return errno == ENOENT ? ESTALE : errno;
  if (!SameObject(real.get(), obj.get())) return ESTALE;
  *out = real.release();
  return 0;
}

// ---------------------------------------------------------------- exports

namespace {

// registerGfidMount(rootFd): the mount id, or -errno.
Napi::Value RegisterGfidMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int rootFd;
  if (!ArgFd(info, 0, "rootFd", &rootFd)) return env.Undefined();
  auto fail = [&](int e) { return Napi::Number::New(env, -e); };
  auto root = std::make_shared<Fd>(fcntl(rootFd, F_DUPFD_CLOEXEC, 0));
  if (!root->ok()) return fail(errno);
  struct statfs sf;
  if (fstatfs(root->get(), &sf) != 0) return fail(errno);
  if (sf.f_type != kFuseSuperMagic) return fail(EINVAL);
  int mountId = 0;
  bool isRoot = false;
  if (int e = MountOf(root->get(), "", AT_EMPTY_PATH, &mountId, &isRoot)) return fail(e);
  if (!isRoot) return fail(EINVAL);  // .gfid resolves only at the root
  Fd aux(openat(root->get(), ".gfid", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!aux.ok()) return fail(errno);  // ENOENT: not mounted with aux-gfid-mount
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    GfidMount& m = g_mounts[mountId];
    if (!m.root) m.root = root;  // a second registration shares the first fd
    m.refs++;
    g_count.store(static_cast<unsigned>(g_mounts.size()), std::memory_order_release);
  }
  return Napi::Number::New(env, mountId);
}

// unregisterGfidMount(mountId): true if it was registered.
Napi::Value UnregisterGfidMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t mountId;
  if (!ArgUint32(info, 0, "mountId", &mountId)) return env.Undefined();
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_mounts.find(static_cast<int>(mountId));
  if (it == g_mounts.end()) return Napi::Boolean::New(env, false);
  if (--it->second.refs == 0) g_mounts.erase(it);  // the fd closes with its last user
  g_count.store(static_cast<unsigned>(g_mounts.size()), std::memory_order_release);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitGfid(Napi::Env env, Napi::Object exports) {
  Put(exports, "registerGfidMount", Napi::Function::New(env, RegisterGfidMount, "registerGfidMount"));
  Put(exports, "unregisterGfidMount", Napi::Function::New(env, UnregisterGfidMount, "unregisterGfidMount"));
}

}  // namespace manila
