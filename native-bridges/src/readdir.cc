// READDIR / READDIRPLUS: getdents64 on a directory reopened as the caller, resumed at a cookie
// (the d_off of the last entry the client saw), with per-entry handle and attributes for plus.
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"

namespace manila {

namespace {

// The kernel's struct linux_dirent64 (glibc does not declare it).
struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

struct Entry {
  std::string name;
  uint64_t ino = 0;
  unsigned type = 0;
  uint64_t cookie = 0;
  ObjectData obj;
};

// Making thousands of small objects property by property through N-API costs several
// microseconds per entry on the main thread; V8 makes object literals in JIT-compiled code far
// faster. So a page travels to JS packed (one Buffer of names and handle bytes, one Float64Array
// of numbers, one BigUint64Array of cookies) and this function, compiled once per environment,
// unpacks it into NativeDirEntry objects. Names and handle bytes are Buffer views of one blob.
constexpr int kWidth = 23;  // doubles per entry: ino, nameEnd, dtype, flags, handleEnd, handleType, mountId, 16 stat
const char kBuilderSource[] = R"JS(
(function manilaReaddirEntries(blob, f, cookies, n, plus) {
  'use strict';
  const out = new Array(n);
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const k = i * 23;
    const nameEnd = f[k + 1];
    const e = { name: blob.subarray(pos, nameEnd), ino: f[k], dtype: f[k + 2], cookie: cookies[i] };
    pos = nameEnd;
    if (plus) {
      const flags = f[k + 3];
      if (flags & 1) {
        const handleEnd = f[k + 4];
        e.handle = { type: f[k + 5], bytes: blob.subarray(pos, handleEnd) };
        e.mountId = f[k + 6];
        pos = handleEnd;
      }
      if (flags & 2) {
        e.stat = {
          dev: f[k + 7], ino: f[k + 8], mode: f[k + 9], nlink: f[k + 10], uid: f[k + 11], gid: f[k + 12],
          rdevMajor: f[k + 13], rdevMinor: f[k + 14], size: f[k + 15], blocks: f[k + 16],
          atimeSec: f[k + 17], atimeNsec: f[k + 18], mtimeSec: f[k + 19], mtimeNsec: f[k + 20],
          ctimeSec: f[k + 21], ctimeNsec: f[k + 22],
        };
      }
    }
    out[i] = e;
  }
  return out;
})
)JS";

void PackStat(const struct stat& st, double* f) {
  f[0] = static_cast<double>(st.st_dev);
  f[1] = static_cast<double>(st.st_ino);
  f[2] = static_cast<double>(st.st_mode);
  f[3] = static_cast<double>(st.st_nlink);
  f[4] = static_cast<double>(st.st_uid);
  f[5] = static_cast<double>(st.st_gid);
  f[6] = static_cast<double>(major(st.st_rdev));
  f[7] = static_cast<double>(minor(st.st_rdev));
  f[8] = static_cast<double>(st.st_size);
  f[9] = static_cast<double>(st.st_blocks);
  f[10] = static_cast<double>(st.st_atim.tv_sec);
  f[11] = static_cast<double>(st.st_atim.tv_nsec);
  f[12] = static_cast<double>(st.st_mtim.tv_sec);
  f[13] = static_cast<double>(st.st_mtim.tv_nsec);
  f[14] = static_cast<double>(st.st_ctim.tv_sec);
  f[15] = static_cast<double>(st.st_ctim.tv_nsec);
}

struct ReaddirOp {
  Creds creds;
  int fd = -1;
  uint64_t cookie = 0;
  uint32_t maxEntries = 0;
  bool plus = false;
  int err = 0;
  bool eof = false;
  std::vector<Entry> entries;
  OptStat dirStat;

  void Run() {
    struct stat st;
    if ((err = StatFd(fd, &st)) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
      err = ENOTDIR;
      return;
    }
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    char path[32];
    ProcFdPath(fd, path, sizeof path);
    Fd dir(RetryEintr([&] { return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
    if (!dir.ok()) {
      err = errno;
      return;
    }
    if (cookie != 0 && lseek(dir.get(), static_cast<off_t>(cookie), SEEK_SET) < 0) {
      err = errno;
      StatFdOpt(dir.get(), &dirStat);
      return;
    }
    // Sized for the request (most names are short); getdents64 fills what fits.
    const size_t bufsize = std::clamp<size_t>(static_cast<size_t>(maxEntries) * 64 + 1024, 4096, 65536);
    std::unique_ptr<char[]> buf(new char[bufsize]);
    entries.reserve(std::min<uint32_t>(maxEntries, 4096));
    for (;;) {
      long n = syscall(SYS_getdents64, dir.get(), buf.get(), bufsize);
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      if (n == 0) {
        eof = true;  // nothing after the last entry returned
        break;
      }
      if (entries.size() >= maxEntries) break;  // a peek past a full page: more entries exist
      bool full_mid_batch = false;
      for (long pos = 0; pos < n;) {
        const auto* d = reinterpret_cast<const LinuxDirent64*>(buf.get() + pos);
        if (entries.size() >= maxEntries) {
          full_mid_batch = true;
          break;
        }
        Entry e;
        e.name.assign(d->d_name);
        e.ino = d->d_ino;
        e.type = d->d_type;
        e.cookie = static_cast<uint64_t>(d->d_off);
        entries.push_back(std::move(e));
        pos += d->d_reclen;
      }
      if (full_mid_batch) break;  // eof stays false: entries remain in this very batch
    }
    StatFdOpt(dir.get(), &dirStat);
    if (plus && err == 0) {
      for (Entry& e : entries) LookupObject(dir.get(), e.name.c_str(), &e.obj);
    }
  }

  Napi::Value Entries(Napi::Env env) {
    const size_t n = entries.size();
    size_t blob_size = 0;
    for (const Entry& e : entries) blob_size += e.name.size() + (plus && e.obj.handle.ok ? e.obj.handle.len : 0);
    Napi::Buffer<char> blob = Napi::Buffer<char>::New(env, blob_size);
    Napi::ArrayBuffer fbuf = Napi::ArrayBuffer::New(env, std::max<size_t>(n, 1) * kWidth * sizeof(double));
    Napi::ArrayBuffer cbuf = Napi::ArrayBuffer::New(env, std::max<size_t>(n, 1) * sizeof(uint64_t));
    char* b = blob.Data();
    auto* f = static_cast<double*>(fbuf.Data());
    auto* c = static_cast<uint64_t*>(cbuf.Data());
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
      const Entry& e = entries[i];
      double* row = f + i * kWidth;
      std::memcpy(b + pos, e.name.data(), e.name.size());
      pos += e.name.size();
      row[0] = static_cast<double>(e.ino);
      row[1] = static_cast<double>(pos);
      row[2] = e.type;
      c[i] = e.cookie;
      if (!plus) continue;
      int flags = 0;
      if (e.obj.handle.ok) {
        flags |= 1;
        std::memcpy(b + pos, e.obj.handle.bytes, e.obj.handle.len);
        pos += e.obj.handle.len;
        row[4] = static_cast<double>(pos);
        row[5] = e.obj.handle.type;
        row[6] = e.obj.handle.mountId;
      }
      if (e.obj.stat.ok) {
        flags |= 2;
        PackStat(e.obj.stat.st, row + 7);
      }
      row[3] = flags;
    }
    auto farr = Napi::Float64Array::New(env, n * kWidth, fbuf, 0);
    auto carr = Napi::TypedArrayOf<uint64_t>::New(env, n, cbuf, 0, napi_biguint64_array);
    Napi::Function builder = GetAddonData(env)->readdirBuilder.Value();
    Napi::Value list = builder.Call({blob, farr, carr, Napi::Number::New(env, static_cast<double>(n)),
                                     Napi::Boolean::New(env, plus)});
    if (list.IsEmpty() || !list.IsArray()) {
      // Cannot happen short of an engine failure (out of memory): report EIO, no entries.
      if (env.IsExceptionPending()) env.GetAndClearPendingException();
      err = EIO;
      return Napi::Array::New(env, 0);
    }
    return list;
  }

  Napi::Value Build(Napi::Env env) {
    Napi::Value list = err == 0 ? Entries(env) : Napi::Array::New(env, 0);
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    Put(o, "entries", list);
    Put(o, "eof", Napi::Boolean::New(env, err == 0 && eof));
    SetStat(o, "dirStat", dirStat);
    return o;
  }
};

Napi::Value Readdir(const Napi::CallbackInfo& info) {
  ReaddirOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd) || !ArgU64(info, 2, "cookie", &op.cookie) ||
      !ArgUint32(info, 3, "maxEntries", &op.maxEntries) || !ArgBool(info, 4, "plus", &op.plus))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

}  // namespace

void InitReaddir(Napi::Env env, Napi::Object exports) {
  Napi::Value builder = env.RunScript(kBuilderSource);
  if (builder.IsEmpty() || !builder.IsFunction()) return;  // exception pending: the require fails
  GetAddonData(env)->readdirBuilder = Napi::Persistent(builder.As<Napi::Function>());
  Put(exports, "readdir", Napi::Function::New(env, Readdir, "readdir"));
}

}  // namespace manila
