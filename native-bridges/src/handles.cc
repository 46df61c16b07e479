// Kernel file handles and the small per-object operations: nameToHandle, openByHandle, openPath,
// close, fstat, lookup, accessMask, readlink, fsync, statfs, raiseFileLimit.
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common.h"

namespace manila {

namespace {

Napi::Object ErrObject(Napi::Env env, int err) {
  Napi::Object o = Napi::Object::New(env);
  Put(o, "err", Napi::Number::New(env, err));
  return o;
}

// ------------------------------------------------------------------------------ nameToHandle

struct NameToHandleOp {
  int dirFd;
  bool hasName;
  std::string name;
  int err = 0;
  HandleData handle;

  void Run() {
    if (hasName && (err = ValidateName(name, true)) != 0) return;
    err = HandleAt(dirFd, hasName ? name.c_str() : "", hasName ? 0 : AT_EMPTY_PATH, &handle);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    if (err == 0) {
      Put(o, "handle", HandleToJs(env, handle));
      Put(o, "mountId", Napi::Number::New(env, handle.mountId));
    }
    return o;
  }
};

Napi::Value NameToHandle(const Napi::CallbackInfo& info) {
  NameToHandleOp op;
  if (!ArgFd(info, 0, "dirFd", &op.dirFd)) return info.Env().Undefined();
  op.hasName = !(info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined());
  if (op.hasName && !ArgBytes(info, 1, "name", &op.name)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ open*

struct OpenResultOp {
  int err = 0;
  int fd = -1;
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    Put(o, "fd", Napi::Number::New(env, fd));
    return o;
  }
};

struct OpenByHandleOp : OpenResultOp {
  int mountFd;
  int type;
  std::string bytes;
  int flags;

  void Run() {
    if (bytes.empty() || bytes.size() > kMaxHandleBytes) {
      err = EINVAL;
      return;
    }
    if (type == kGfidHandleType) {  // a gluster gfid (gfid.cc), never a kernel handle
      err = OpenGfidHandle(mountFd, bytes, flags, &fd);
      return;
    }
    union {
      struct file_handle fh;
      unsigned char raw[sizeof(struct file_handle) + kMaxHandleBytes];
    } buf;
    buf.fh.handle_bytes = static_cast<unsigned>(bytes.size());
    buf.fh.handle_type = type;
    std::memcpy(buf.fh.f_handle, bytes.data(), bytes.size());
    // Always as the daemon: open_by_handle_at needs CAP_DAC_READ_SEARCH.
    fd = RetryEintr([&] { return open_by_handle_at(mountFd, &buf.fh, flags | O_CLOEXEC); });
    err = fd < 0 ? errno : 0;
    if (err == EBADF) RetryWithRealMountFd(&buf.fh);
  }

  // The kernel refuses an O_PATH mount_fd (EBADF): retry through a real descriptor of the same
  // directory or file, reopened through /proc/self/fd. Callers on a hot path should pass a
  // non-O_PATH mount fd (e.g. the share root opened O_RDONLY | O_DIRECTORY) to avoid this.
  void RetryWithRealMountFd(struct file_handle* fh) {
    int fl = fcntl(mountFd, F_GETFL);
    struct stat st;
    if (fl < 0 || !(fl & O_PATH) || StatFd(mountFd, &st) != 0) return;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) return;
    char path[32];
    ProcFdPath(mountFd, path, sizeof path);
    Fd real(RetryEintr([&] {
      return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
    }));
    if (!real.ok()) return;
    fd = RetryEintr([&] { return open_by_handle_at(real.get(), fh, flags | O_CLOEXEC); });
    err = fd < 0 ? errno : 0;
  }
};

Napi::Value OpenByHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenByHandleOp op;
  if (!ArgFd(info, 0, "mountFd", &op.mountFd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsObject()) return ThrowType(env, "handle must be { type, bytes }");
  Napi::Object h = info[1].As<Napi::Object>();
  Napi::Value type = h.Get("type");
  Napi::Value bytes = h.Get("bytes");
  if (!type.IsNumber() || !bytes.IsBuffer()) return ThrowType(env, "handle must be { type: number, bytes: Buffer }");
  op.type = type.As<Napi::Number>().Int32Value();
  auto b = bytes.As<Napi::Buffer<char>>();
  op.bytes.assign(b.Data(), b.Length());
  if (info.Length() < 3 || !info[2].IsNumber()) return ThrowType(env, "flags must be a number");
  op.flags = info[2].As<Napi::Number>().Int32Value();
  return StartOp(env, std::move(op));
}

struct OpenPathOp : OpenResultOp {
  std::string path;
  int flags;

  void Run() {
    if (path.empty() || path.find('\0') != std::string::npos) {
      err = path.empty() ? ENOENT : EINVAL;
      return;
    }
    fd = RetryEintr([&] { return open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | flags); });
    err = fd < 0 ? errno : 0;
  }
};

Napi::Value OpenPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenPathOp op;
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "path must be a string");
  op.path = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() < 2 || !info[1].IsNumber()) return ThrowType(env, "flags must be a number");
  op.flags = info[1].As<Napi::Number>().Int32Value();
  return StartOp(env, std::move(op));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return info.Env().Undefined();
  close(fd);
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------ fstat

struct FstatOp {
  int fd;
  int err = 0;
  OptStat st;
  void Run() {
    err = StatFd(fd, &st.st);
    st.ok = err == 0;
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    SetStat(o, "stat", st);
    return o;
  }
};

Napi::Value Fstat(const Napi::CallbackInfo& info) {
  FstatOp op;
  if (!ArgFd(info, 0, "fd", &op.fd)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ effectiveCaps

// Diagnostics for tests: the effective capability mask a thread has while acting as `creds`.
struct EffectiveCapsOp {
  Creds creds;
  int err = 0;
  uint64_t caps = 0;
  void Run() {
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) {
      err = errno;
      return;
    }
    caps = (static_cast<uint64_t>(data[1].effective) << 32) | data[0].effective;
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    Put(o, "effective", Napi::BigInt::New(env, caps));
    return o;
  }
};

Napi::Value EffectiveCaps(const Napi::CallbackInfo& info) {
  EffectiveCapsOp op;
  if (!ArgCreds(info, 0, &op.creds)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ lookup

struct LookupOp {
  Creds creds;
  int dirFd;
  std::string name;
  ObjectData obj;
  // LOOKUP answers with the directory's attributes too: taken here, before the lookup, so one
  // threadpool round trip does what took two.
  OptStat dirStat;

  void Run() {
    StatFdOpt(dirFd, &dirStat);
    if ((obj.err = ValidateName(name, true)) != 0) return;
    CredGuard guard(creds);
    if ((obj.err = guard.err()) != 0) return;
    LookupObject(dirFd, name.c_str(), &obj);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ObjectToJs(env, obj);
    SetStat(o, "dirStat", dirStat);
    return o;
  }
};

Napi::Value Lookup(const Napi::CallbackInfo& info) {
  LookupOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "dirFd", &op.dirFd) ||
      !ArgBytes(info, 2, "name", &op.name))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ accessMask

// faccessat2 with AT_EMPTY_PATH checks the object an O_PATH fd refers to with the thread's
// fsuid/fsgid/groups/capabilities (AT_EACCESS); 0 or errno. There is no fallback: before Linux 5.8
// glibc emulates AT_EACCESS from the effective uid, which is the daemon's (root), so an emulated
// answer would grant everything. Such a kernel gets ENOSYS (SERVERFAULT) instead of a wrong yes.
int AccessFd(int fd, int mode) {
  if (syscall(SYS_faccessat2, fd, "", mode, AT_EACCESS | AT_EMPTY_PATH) == 0) return 0;
  return errno;
}

struct AccessMaskOp {
  Creds creds;
  int fd;
  int err = 0;
  int mask = 0;

  void Run() {
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    static const int kModes[] = {R_OK, W_OK, X_OK};
    for (int mode : kModes) {
      int e = AccessFd(fd, mode);
      if (e == 0) {
        mask |= mode;
      } else if (e != EACCES && e != EPERM && e != EROFS && e != ETXTBSY) {
        err = e;  // the object itself is unusable (EBADF, ESTALE, EIO, ...)
        mask = 0;
        return;
      }
    }
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    Put(o, "mask", Napi::Number::New(env, mask));
    return o;
  }
};

Napi::Value AccessMask(const Napi::CallbackInfo& info) {
  AccessMaskOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ readlink

struct ReadlinkOp {
  Creds creds;
  int fd;
  int err = 0;
  OptStat st;
  std::string target;

  void Run() {
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    if ((err = StatFd(fd, &st.st)) != 0) return;
    st.ok = true;
    if (!S_ISLNK(st.st.st_mode)) {
      err = EINVAL;
      return;
    }
    char buf[4097];
    ssize_t n = readlinkat(fd, "", buf, sizeof buf);
    if (n < 0) {
      err = errno;
    } else if (static_cast<size_t>(n) >= sizeof buf) {
      err = ENAMETOOLONG;
    } else {
      target.assign(buf, static_cast<size_t>(n));
    }
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    if (err == 0) Put(o, "target", Napi::Buffer<char>::Copy(env, target.data(), target.size()));
    SetStat(o, "stat", st);
    return o;
  }
};

Napi::Value Readlink(const Napi::CallbackInfo& info) {
  ReadlinkOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ fsync

struct FsyncOp {
  int fd;
  int err = 0;
  OptStat before, after;

  void Run() {
    if ((err = StatFd(fd, &before.st)) != 0) return;
    before.ok = true;
    mode_t type = before.st.st_mode & S_IFMT;
    // Only regular files and directories are reopened: opening a device or FIFO has side effects
    // (or blocks); their data has nothing for COMMIT to flush here.
    if (type == S_IFREG || type == S_IFDIR) {
      char path[32];
      ProcFdPath(fd, path, sizeof path);
      Fd rfd(RetryEintr([&] {
        return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (type == S_IFDIR ? O_DIRECTORY : 0));
      }));
      if (!rfd.ok()) {
        err = errno;
      } else if (fsync(rfd.get()) != 0) {
        err = errno;
      }
    }
    StatFdOpt(fd, &after);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    SetStat(o, "before", before);
    SetStat(o, "after", after);
    return o;
  }
};

Napi::Value Fsync(const Napi::CallbackInfo& info) {
  FsyncOp op;
  if (!ArgFd(info, 0, "pathFd", &op.fd)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ statfs

struct StatfsOp {
  int fd;
  int err = 0;
  struct statfs sf;

  void Run() { err = RetryEintr([&] { return fstatfs(fd, &sf); }) == 0 ? 0 : errno; }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    if (err != 0) return o;
    double unit = static_cast<double>(sf.f_frsize ? sf.f_frsize : sf.f_bsize);
    Put(o, "totalBytes", Napi::Number::New(env, static_cast<double>(sf.f_blocks) * unit));
    Put(o, "freeBytes", Napi::Number::New(env, static_cast<double>(sf.f_bfree) * unit));
    Put(o, "availBytes", Napi::Number::New(env, static_cast<double>(sf.f_bavail) * unit));
    Put(o, "totalFiles", Napi::Number::New(env, static_cast<double>(sf.f_files)));
    Put(o, "freeFiles", Napi::Number::New(env, static_cast<double>(sf.f_ffree)));
    Put(o, "nameMax", Napi::Number::New(env, static_cast<double>(sf.f_namelen)));
    return o;
  }
};

Napi::Value Statfs(const Napi::CallbackInfo& info) {
  StatfsOp op;
  if (!ArgFd(info, 0, "pathFd", &op.fd)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ trimMemory

// glibc keeps memory freed by the daemon's threads in its arenas (the main thread's brk heap and
// one per pool thread), fragmented by buffers of many lifetimes: under a rotating mixed load the
// RSS crept up by tens of MiB that were free (a soak here: malloc_trim gave back 29 of 324 MiB).
// malloc_trim(0) hands free pages inside every arena back to the kernel; it runs on a pool thread,
// so the event loop waits for no arena lock it takes.
// After the trim it reads glibc's own totals over every arena (mallinfo2, glibc 2.33): what is
// allocated and what is free but kept tells a leak (in use grows) from fragmentation (free grows),
// which the RSS alone cannot. Read here, the walk of the free lists also stays off the event loop.
struct TrimMemoryOp {
  double seconds = 0;
  bool released = false;
  struct mallinfo2 heap = {};

  void Run() {
    const uint64_t start = MonotonicNs();
    released = malloc_trim(0) == 1;
    seconds = static_cast<double>(MonotonicNs() - start) / 1e9;
    heap = mallinfo2();
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "released", Napi::Boolean::New(env, released));
    Put(o, "seconds", Napi::Number::New(env, seconds));
    Put(o, "arenaBytes", Napi::Number::New(env, static_cast<double>(heap.arena)));
    Put(o, "inUseBytes", Napi::Number::New(env, static_cast<double>(heap.uordblks)));
    Put(o, "freeBytes", Napi::Number::New(env, static_cast<double>(heap.fordblks)));
    Put(o, "mmappedBytes", Napi::Number::New(env, static_cast<double>(heap.hblkhd)));
    return o;
  }
};

Napi::Value TrimMemory(const Napi::CallbackInfo& info) { return StartOp(info.Env(), TrimMemoryOp()); }

}  // namespace

// The message buffers (src/rpc/buffers.ts: 68 KiB and 1.06 MiB, pooled and let go when idle) get
// mappings of their own instead of arena space. glibc raises its mmap threshold to the size of any
// mapped block freed, so after the first pooled buffer was let go the rest were carved from the
// arenas among small allocations of every lifetime: in a 30-minute mixed soak the arenas' free
// space grew 34 -> 77 MiB (+1 MiB/min) with what was in use flat. A fixed threshold also stops
// that raise. The pool reuses its buffers, so the mmap per new buffer is rare. An operator's
// MALLOC_MMAP_THRESHOLD_ (glibc's own variable) is left to rule.
void TuneMalloc() {
  constexpr int kOwnMappingFrom = 64 * 1024;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, kOwnMappingFrom);
}

namespace {

// ------------------------------------------------------------------------------ beneath

// Whether a directory still lies beneath a share root: walk ".." as the daemon until the root's
// (dev, ino) is met (true), or a directory is its own parent, i.e. the top of the namespace (false).
// Guards LOOKUP ".." against a directory that was moved out of its share after its handle was given.
struct BeneathOp {
  int fd;
  uint64_t rootDev = 0;
  uint64_t rootIno = 0;
  int err = 0;
  bool beneath = false;

  void Run() {
    struct stat st;
    if ((err = StatFd(fd, &st)) != 0) return;
    Fd current;  // the directory being looked at, once it is not `fd` itself
    // A path deeper than this is not worth walking: refuse rather than spin.
    for (int depth = 0; depth < 4096; depth++) {
      if (static_cast<uint64_t>(st.st_dev) == rootDev && static_cast<uint64_t>(st.st_ino) == rootIno) {
        beneath = true;
        return;
      }
      const int at = current.ok() ? current.get() : fd;
      const int up_fd = RetryEintr([&] { return openat(at, "..", O_PATH | O_DIRECTORY | O_CLOEXEC); });
      if (up_fd < 0) {
        err = errno;
        return;
      }
      current.reset(up_fd);  // closes the previous level
      struct stat up;
      if ((err = StatFd(current.get(), &up)) != 0) return;
      if (up.st_dev == st.st_dev && up.st_ino == st.st_ino) return;  // the top: not beneath
      st = up;
    }
    err = ELOOP;
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = ErrObject(env, err);
    Put(o, "beneath", Napi::Boolean::New(env, beneath));
    return o;
  }
};

Napi::Value Beneath(const Napi::CallbackInfo& info) {
  BeneathOp op;
  if (!ArgFd(info, 0, "pathFd", &op.fd)) return info.Env().Undefined();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(info.Env(), "beneath(pathFd, rootDev, rootIno): numbers expected").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  op.rootDev = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  op.rootIno = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ raiseFileLimit

Napi::Value RaiseFileLimit(const Napi::CallbackInfo& info) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return Napi::Number::New(info.Env(), -1);
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (want.rlim_cur == RLIM_INFINITY) {
      // RLIMIT_NOFILE can never exceed fs.nr_open.
      unsigned long nr_open = 1048576;
      if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
        if (std::fscanf(f, "%lu", &nr_open) != 1) nr_open = 1048576;
        std::fclose(f);
      }
      want.rlim_cur = nr_open;
    }
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return Napi::Number::New(info.Env(), static_cast<double>(rl.rlim_cur));
}

}  // namespace

void InitHandles(Napi::Env env, Napi::Object exports) {
  Put(exports, "nameToHandle", Napi::Function::New(env, NameToHandle, "nameToHandle"));
  Put(exports, "openByHandle", Napi::Function::New(env, OpenByHandle, "openByHandle"));
  Put(exports, "openPath", Napi::Function::New(env, OpenPath, "openPath"));
  Put(exports, "close", Napi::Function::New(env, Close, "close"));
  Put(exports, "fstat", Napi::Function::New(env, Fstat, "fstat"));
  Put(exports, "beneath", Napi::Function::New(env, Beneath, "beneath"));
  Put(exports, "effectiveCaps", Napi::Function::New(env, EffectiveCaps, "effectiveCaps"));
  Put(exports, "lookup", Napi::Function::New(env, Lookup, "lookup"));
  Put(exports, "accessMask", Napi::Function::New(env, AccessMask, "accessMask"));
  Put(exports, "readlink", Napi::Function::New(env, Readlink, "readlink"));
  Put(exports, "fsync", Napi::Function::New(env, Fsync, "fsync"));
  Put(exports, "trimMemory", Napi::Function::New(env, TrimMemory, "trimMemory"));
  Put(exports, "statfs", Napi::Function::New(env, Statfs, "statfs"));
  Put(exports, "raiseFileLimit", Napi::Function::New(env, RaiseFileLimit, "raiseFileLimit"));
}

}  // namespace manila
