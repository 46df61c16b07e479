// Namespace and attribute changes: create, mkdir, mknod, symlink, unlink, rename, link, setattr.
// Each runs as the caller so the kernel applies permissions, sticky/setgid directories and the
// ownership of what is created; directory attributes are taken around the change (wcc_data).
#include <errno.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdint>
#include <optional>

#include "common.h"
#include "listing_cache.h"

namespace manila {

namespace {

constexpr mode_t kPermMask = 07777;

/** The common shape of a directory-changing op: creds, directory, name, wcc stats, new object. */
struct DirChangeBase {
  Creds creds;
  int dirFd = -1;
  std::string name;
  int err = 0;
  OptStat dirBefore, dirAfter;
  ObjectData object;

  Napi::Object BuildBase(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    SetStat(o, "dirBefore", dirBefore);
    SetStat(o, "dirAfter", dirAfter);
    if (object.present) Put(o, "object", ObjectToJs(env, object));
    return o;
  }
  Napi::Value Build(Napi::Env env) { return BuildBase(env); }
};

/**
 * Validates the name, switches credentials (with umask 0 when `creating`), stats the directory,
 * runs `change` (returns 0 or errno), stats the directory again; on success and when `lookup`,
 * `object` is the name found again.
 */
template <class Op, class F>
void RunDirChange(Op& op, bool creating, bool lookup, F change) {
  if ((op.err = ValidateName(op.name, false)) != 0) return;
  std::optional<UmaskZero> umask_zero;
  if (creating) umask_zero.emplace();
  CredGuard guard(op.creds);
  if ((op.err = guard.err()) != 0) return;
  StatFdOpt(op.dirFd, &op.dirBefore);
  op.err = change();
  StatFdOpt(op.dirFd, &op.dirAfter);
  MarkChangedOpt(op.dirAfter.ok ? op.dirAfter : op.dirBefore);  // its cached listings are stale
  if (op.err == 0 && lookup) LookupObject(op.dirFd, op.name.c_str(), &op.object);
}

bool ArgsCredsDirName(const Napi::CallbackInfo& info, DirChangeBase* op) {
  return ArgCreds(info, 0, &op->creds) && ArgFd(info, 1, "dirFd", &op->dirFd) && ArgBytes(info, 2, "name", &op->name);
}

// ------------------------------------------------------------------------------ create

struct CreateOp : DirChangeBase {
  uint32_t mode = 0;
  bool exclusive = false;

  void Run() {
    RunDirChange(*this, true, false, [&]() -> int {
      // Always O_EXCL first: it never follows a symlink and never opens an existing object (an
      // existing FIFO would block a write open, a device would be opened, and a caller without
      // write permission would be refused an UNCHECKED create that knfsd grants).
      Fd fd(RetryEintr([&] {
        return openat(dirFd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                      static_cast<mode_t>(mode & kPermMask));
      }));
      if (fd.ok()) {
        ObjectOfFd(fd.get(), &object);
        return 0;
      }
      int e = errno;
      if (e != EEXIST) return e;
      // The name exists: report what it is. UNCHECKED (not exclusive) succeeds on a regular file;
      // EXCLUSIVE/GUARDED get EEXIST with the object (to compare an exclusive create's verifier).
      LookupObject(dirFd, name.c_str(), &object);
      if (!exclusive && object.err == 0 && object.stat.ok && S_ISREG(object.stat.st.st_mode)) return 0;
      return EEXIST;
    });
  }
};

Napi::Value Create(const Napi::CallbackInfo& info) {
  CreateOp op;
  if (!ArgsCredsDirName(info, &op) || !ArgUint32(info, 3, "mode", &op.mode) ||
      !ArgBool(info, 4, "exclusive", &op.exclusive))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ mkdir

struct MkdirOp : DirChangeBase {
  uint32_t mode = 0;
  void Run() {
    RunDirChange(*this, true, true, [&]() -> int {
      return mkdirat(dirFd, name.c_str(), static_cast<mode_t>(mode & kPermMask)) == 0 ? 0 : errno;
    });
  }
};

Napi::Value Mkdir(const Napi::CallbackInfo& info) {
  MkdirOp op;
  if (!ArgsCredsDirName(info, &op) || !ArgUint32(info, 3, "mode", &op.mode)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ mknod

struct MknodOp : DirChangeBase {
  uint32_t mode = 0, major_ = 0, minor_ = 0;
  void Run() {
    const mode_t type = static_cast<mode_t>(mode) & S_IFMT;
    if (type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) {
      err = EINVAL;
      return;
    }
    const dev_t dev = (type == S_IFCHR || type == S_IFBLK) ? makedev(major_, minor_) : 0;
    RunDirChange(*this, true, true, [&]() -> int {
      return mknodat(dirFd, name.c_str(), type | (static_cast<mode_t>(mode) & kPermMask), dev) == 0 ? 0 : errno;
    });
  }
};

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  MknodOp op;
  if (!ArgsCredsDirName(info, &op) || !ArgUint32(info, 3, "mode", &op.mode) ||
      !ArgUint32(info, 4, "major", &op.major_) || !ArgUint32(info, 5, "minor", &op.minor_))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ symlink

struct SymlinkOp : DirChangeBase {
  std::string target;
  void Run() {
    if (target.find('\0') != std::string::npos) {
      err = EINVAL;
      return;
    }
    if (target.size() >= 4096) {
      err = ENAMETOOLONG;
      return;
    }
    RunDirChange(*this, true, true, [&]() -> int {
      return symlinkat(target.c_str(), dirFd, name.c_str()) == 0 ? 0 : errno;
    });
  }
};

Napi::Value Symlink(const Napi::CallbackInfo& info) {
  SymlinkOp op;
  if (!ArgsCredsDirName(info, &op) || !ArgBytes(info, 3, "target", &op.target)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ unlink

struct UnlinkOp : DirChangeBase {
  bool isDir = false;
  void Run() {
    RunDirChange(*this, false, false, [&]() -> int {
      return unlinkat(dirFd, name.c_str(), isDir ? AT_REMOVEDIR : 0) == 0 ? 0 : errno;
    });
  }
};

Napi::Value Unlink(const Napi::CallbackInfo& info) {
  UnlinkOp op;
  if (!ArgsCredsDirName(info, &op) || !ArgBool(info, 3, "isDir", &op.isDir)) return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ link

struct LinkOp : DirChangeBase {
  int pathFd = -1;
  OptStat objectAfter;
  void Run() {
    RunDirChange(*this, false, true, [&]() -> int {
      char path[32];
      ProcFdPath(pathFd, path, sizeof path);
      return linkat(AT_FDCWD, path, dirFd, name.c_str(), AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
    });
    StatFdOpt(pathFd, &objectAfter);
    MarkChangedOpt(objectAfter);  // its nlink, in every cached listing that has it
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = BuildBase(env);
    SetStat(o, "objectAfter", objectAfter);
    return o;
  }
};

Napi::Value Link(const Napi::CallbackInfo& info) {
  LinkOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.pathFd) ||
      !ArgFd(info, 2, "dirFd", &op.dirFd) || !ArgBytes(info, 3, "name", &op.name))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ rename

struct RenameOp {
  Creds creds;
  int fromDirFd = -1, toDirFd = -1;
  std::string fromName, toName;
  int err = 0;
  OptStat fromBefore, fromAfter, toBefore, toAfter;

  void Run() {
    if ((err = ValidateName(fromName, false)) != 0 || (err = ValidateName(toName, false)) != 0) return;
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    StatFdOpt(fromDirFd, &fromBefore);
    StatFdOpt(toDirFd, &toBefore);
    err = renameat(fromDirFd, fromName.c_str(), toDirFd, toName.c_str()) == 0 ? 0 : errno;
    StatFdOpt(fromDirFd, &fromAfter);
    StatFdOpt(toDirFd, &toAfter);
    MarkChangedOpt(fromAfter.ok ? fromAfter : fromBefore);
    MarkChangedOpt(toAfter.ok ? toAfter : toBefore);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    SetStat(o, "fromDirBefore", fromBefore);
    SetStat(o, "fromDirAfter", fromAfter);
    SetStat(o, "toDirBefore", toBefore);
    SetStat(o, "toDirAfter", toAfter);
    return o;
  }
};

Napi::Value Rename(const Napi::CallbackInfo& info) {
  RenameOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "fromDirFd", &op.fromDirFd) ||
      !ArgBytes(info, 2, "fromName", &op.fromName) || !ArgFd(info, 3, "toDirFd", &op.toDirFd) ||
      !ArgBytes(info, 4, "toName", &op.toName))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// ------------------------------------------------------------------------------ setattr

struct TimeArg {
  bool set = false;
  struct timespec ts = {0, UTIME_OMIT};
};

struct SetattrOp {
  Creds creds;
  int fd = -1;
  bool hasMode = false, hasUid = false, hasGid = false, hasSize = false, hasGuard = false;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  TimeArg atime, mtime;
  int64_t guardSec = 0, guardNsec = 0;
  int err = 0;
  OptStat before, after;

  int Apply(CredGuard& guard) {
    struct stat st = before.st;
    if (hasGuard && (st.st_ctim.tv_sec != guardSec || st.st_ctim.tv_nsec != guardNsec)) return -1;  // NOT_SYNC
    if (hasUid || hasGid) {
      const uid_t u = hasUid ? static_cast<uid_t>(uid) : static_cast<uid_t>(-1);
      const gid_t g = hasGid ? static_cast<gid_t>(gid) : static_cast<gid_t>(-1);
      if (fchownat(fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
      if (int e = StatFd(fd, &st)) return e;  // the owner may have changed (owner override below)
    }
    char path[32];
    ProcFdPath(fd, path, sizeof path);
    if (hasMode) {
      if (S_ISLNK(st.st_mode)) return EOPNOTSUPP;  // Linux has no mode on symlinks
      if (chmod(path, static_cast<mode_t>(mode & kPermMask)) != 0) return errno;
    }
    if (hasSize) {
      if (S_ISDIR(st.st_mode)) return EISDIR;
      if (!S_ISREG(st.st_mode)) return EINVAL;
      if (size > static_cast<uint64_t>(INT64_MAX)) return EFBIG;
      Fd file;
      if (int e = ReopenWithOwnerOverride(guard, creds, fd, O_WRONLY, st.st_uid, &file)) return e;
      if (RetryEintr([&] { return ftruncate(file.get(), static_cast<off_t>(size)); }) != 0) return errno;
    }
    if (atime.set || mtime.set) {
      const struct timespec ts[2] = {atime.ts, mtime.ts};
      if (utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        int e = errno;
        // Kernels without AT_EMPTY_PATH for utimensat: through the magic link (not for symlinks,
        // whose magic link would be followed to nothing useful).
        if ((e != EINVAL && e != ENOENT) || S_ISLNK(st.st_mode)) return e;
        if (utimensat(AT_FDCWD, path, ts, 0) != 0) return errno;
      }
    }
    return 0;
  }

  void Run() {
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    if ((err = StatFd(fd, &before.st)) != 0) return;
    before.ok = true;
    err = Apply(guard);
    MarkChanged(before.st);
    StatFdOpt(fd, &after);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    SetStat(o, "before", before);
    SetStat(o, "after", after);
    return o;
  }
};

// Reads an optional non-negative integer property; false after throwing.
bool PropUint(Napi::Env env, Napi::Object req, const char* key, double max, bool* has, double* out) {
  Napi::Value v = req.Get(key);
  *has = false;
  if (v.IsUndefined() || v.IsNull()) return true;
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d >= 0 && d <= max && d == static_cast<double>(static_cast<uint64_t>(d))) {
      *has = true;
      *out = d;
      return true;
    }
  }
  ThrowType(env, std::string("setattr: ") + key + " must be a non-negative integer");
  return false;
}

// [sec, nsec] with nsec < 1e9; false after throwing.
bool PropPair(Napi::Env env, Napi::Value v, const char* key, int64_t* sec, int64_t* nsec) {
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    if (a.Length() == 2 && a.Get(0u).IsNumber() && a.Get(1u).IsNumber()) {
      double s = a.Get(0u).As<Napi::Number>().DoubleValue();
      double n = a.Get(1u).As<Napi::Number>().DoubleValue();
      if (s == static_cast<double>(static_cast<int64_t>(s)) && n >= 0 && n < 1e9 &&
          n == static_cast<double>(static_cast<int64_t>(n))) {
        *sec = static_cast<int64_t>(s);
        *nsec = static_cast<int64_t>(n);
        return true;
      }
    }
  }
  ThrowType(env, std::string("setattr: ") + key + " must be [sec, nsec] integers with 0 <= nsec < 1e9");
  return false;
}

bool PropTime(Napi::Env env, Napi::Object req, const char* key, TimeArg* out) {
  Napi::Value v = req.Get(key);
  if (v.IsUndefined() || v.IsNull()) return true;
  out->set = true;
  if (v.IsString() && v.As<Napi::String>().Utf8Value() == "now") {
    out->ts.tv_sec = 0;
    out->ts.tv_nsec = UTIME_NOW;
    return true;
  }
  int64_t sec, nsec;
  if (!PropPair(env, v, key, &sec, &nsec)) return false;
  out->ts.tv_sec = static_cast<time_t>(sec);
  out->ts.tv_nsec = static_cast<long>(nsec);
  return true;
}

Napi::Value Setattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SetattrOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsObject()) return ThrowType(env, "setattr: request must be an object");
  Napi::Object req = info[2].As<Napi::Object>();
  double d = 0;
  if (!PropUint(env, req, "mode", 4294967295.0, &op.hasMode, &d)) return env.Undefined();
  op.mode = static_cast<uint32_t>(d);
  if (!PropUint(env, req, "uid", 4294967294.0, &op.hasUid, &d)) return env.Undefined();
  op.uid = static_cast<uint32_t>(d);
  if (!PropUint(env, req, "gid", 4294967294.0, &op.hasGid, &d)) return env.Undefined();
  op.gid = static_cast<uint32_t>(d);
  if (!PropUint(env, req, "size", 9223372036854775808.0, &op.hasSize, &d)) return env.Undefined();
  op.size = static_cast<uint64_t>(d);
  if (!PropTime(env, req, "atime", &op.atime) || !PropTime(env, req, "mtime", &op.mtime)) return env.Undefined();
  Napi::Value guard = req.Get("guardCtime");
  if (!guard.IsUndefined() && !guard.IsNull()) {
    if (!PropPair(env, guard, "guardCtime", &op.guardSec, &op.guardNsec)) return env.Undefined();
    op.hasGuard = true;
  }
  return StartOp(env, std::move(op));
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  Put(exports, "create", Napi::Function::New(env, Create, "create"));
  Put(exports, "mkdir", Napi::Function::New(env, Mkdir, "mkdir"));
  Put(exports, "mknod", Napi::Function::New(env, Mknod, "mknod"));
  Put(exports, "symlink", Napi::Function::New(env, Symlink, "symlink"));
  Put(exports, "unlink", Napi::Function::New(env, Unlink, "unlink"));
  Put(exports, "rename", Napi::Function::New(env, Rename, "rename"));
  Put(exports, "link", Napi::Function::New(env, Link, "link"));
  Put(exports, "setattr", Napi::Function::New(env, Setattr, "setattr"));
}

}  // namespace manila
