#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace manila {

// ---------------------------------------------------------------- worker side

void Fd::reset(int fd) {
  if (fd_ >= 0) close(fd_);  // never retried: on Linux the fd is gone even on EINTR
  fd_ = fd;
}

int StatFd(int fd, struct stat* st) {
  return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

void StatFdOpt(int fd, OptStat* out) { out->ok = StatFd(fd, &out->st) == 0; }

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

int HandleAt(int dirfd, const char* name, int flags, HandleData* out) {
  union {
    struct file_handle fh;
    unsigned char raw[sizeof(struct file_handle) + kMaxHandleBytes];
  } buf;
  buf.fh.handle_bytes = kMaxHandleBytes;
  int mount_id = 0;
  if (name_to_handle_at(dirfd, name, &buf.fh, &mount_id, flags) != 0) {
    const int e = errno;
    out->ok = false;
    // a registered gluster mount needs no kernel handle: its mount id is enough
    if (!AnyGfidMount() || GfidMountIdAt(dirfd, name, flags, &out->mountId) != 0) return e;
    const int ge = GfidHandleAt(dirfd, name, flags, out);
    return out->ok ? ge : (ge ? ge : e);
  }
  out->ok = true;
  out->type = buf.fh.handle_type;
  out->len = buf.fh.handle_bytes;
  out->mountId = mount_id;
  std::memcpy(out->bytes, buf.fh.f_handle, buf.fh.handle_bytes);
  return AnyGfidMount() ? GfidHandleAt(dirfd, name, flags, out) : 0;
}

int ObjectOfFd(int fd, ObjectData* out) {
  out->present = true;
  int e = StatFd(fd, &out->stat.st);
  out->stat.ok = e == 0;
  int he = HandleAt(fd, "", AT_EMPTY_PATH, &out->handle);
  out->err = e ? e : he;
  return out->err;
}

int LookupObject(int dirfd, const char* name, ObjectData* out) {
  out->present = true;
  if (IsGfidAuxName(dirfd, name)) {
    out->err = ENOENT;
    return out->err;
  }
  Fd fd(RetryEintr([&] { return openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC); }));
  if (!fd.ok()) {
    out->err = errno;
    return out->err;
  }
  return ObjectOfFd(fd.get(), out);
}

void ProcFdPath(int fd, char* buf, size_t size) { std::snprintf(buf, size, "/proc/self/fd/%d", fd); }

int ValidateName(const std::string& name, bool allowDots) {
  if (name.empty() || name.size() > 255) return EINVAL;
  if (name.find('/') != std::string::npos || name.find('\0') != std::string::npos) return EINVAL;
  if (!allowDots && (name == "." || name == "..")) return EINVAL;
  return 0;
}

// ---------------------------------------------------------------- main thread

namespace {
constexpr int kStatFields = 16;
const char* const kStatKeyNames[kStatFields] = {
    "dev",      "ino",       "mode",     "nlink",     "uid",      "gid",       "rdevMajor", "rdevMinor",
    "size",     "blocks",    "atimeSec", "atimeNsec", "mtimeSec", "mtimeNsec", "ctimeSec",  "ctimeNsec",
};
}  // namespace

// A stat object made property by property through N-API costs 16 named stores; a JS function
// compiled once per environment makes the same object as a literal (one hidden class, JIT-compiled)
// from a scratch Float64Array the main thread fills just before calling it.
const char kStatBuilderSource[] = R"JS(
(function manilaStatBuilder(f) {
  'use strict';
  return function manilaStat() {
    return {
      dev: f[0], ino: f[1], mode: f[2], nlink: f[3], uid: f[4], gid: f[5], rdevMajor: f[6], rdevMinor: f[7],
      size: f[8], blocks: f[9], atimeSec: f[10], atimeNsec: f[11], mtimeSec: f[12], mtimeNsec: f[13],
      ctimeSec: f[14], ctimeNsec: f[15],
    };
  };
})
)JS";

bool InitStatBuilder(Napi::Env env) {
  AddonData* data = GetAddonData(env);
  Napi::Float64Array scratch = Napi::Float64Array::New(env, kStatFields);
  Napi::Value factory = env.RunScript(kStatBuilderSource);
  if (factory.IsEmpty() || !factory.IsFunction()) return false;
  Napi::Value builder = factory.As<Napi::Function>().Call({scratch});
  if (builder.IsEmpty() || !builder.IsFunction()) return false;
  data->statScratch = Napi::Persistent(scratch);
  data->statScratchData = scratch.Data();
  data->statBuilder = Napi::Persistent(builder.As<Napi::Function>());
  return true;
}

void StatToDoubles(const struct stat& st, double* f) {
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

Napi::Object StatToJs(Napi::Env env, const struct stat& st) {
  AddonData* data = GetAddonData(env);
  double* v = data->statScratchData;
  StatToDoubles(st, v);
  Napi::Value o = data->statBuilder.Call({});
  if (o.IsEmpty() || !o.IsObject()) {
    // Only an engine failure (out of memory) gets here: fall back to the slow way.
    if (env.IsExceptionPending()) env.GetAndClearPendingException();
    Napi::Object slow = Napi::Object::New(env);
    for (int i = 0; i < kStatFields; i++) slow.Set(kStatKeyNames[i], Napi::Number::New(env, v[i]));
    return slow;
  }
  return o.As<Napi::Object>();
}

void Put(Napi::Object obj, const char* key, Napi::Value value) {
  Napi::Env env = obj.Env();
  AddonData* data = GetAddonData(env);
  auto& keys = data->keys;
  auto found = keys.find(key);
  if (found == keys.end()) {
    if (data->keyStrings.IsEmpty()) data->keyStrings = Napi::Persistent(Napi::Array::New(env));
    const uint32_t index = static_cast<uint32_t>(keys.size());
    data->keyStrings.Value().Set(index, Napi::String::New(env, key));
    found = keys.emplace(key, index).first;
  }
  obj.Set(data->keyStrings.Value().Get(found->second), value);
}

void SetStat(Napi::Object obj, const char* key, const OptStat& st) {
  if (st.ok) Put(obj, key, StatToJs(obj.Env(), st.st));  // key: a literal at every caller
}

Napi::Object HandleToJs(Napi::Env env, const HandleData& h) {
  Napi::Object o = Napi::Object::New(env);
  Put(o, "type", Napi::Number::New(env, h.type));
  Put(o, "bytes", Napi::Buffer<uint8_t>::Copy(env, h.bytes, h.len));
  return o;
}

void SetObjectFields(Napi::Object obj, const ObjectData& o) {
  Napi::Env env = obj.Env();
  if (o.handle.ok) {
    Put(obj, "handle", HandleToJs(env, o.handle));
    Put(obj, "mountId", Napi::Number::New(env, o.handle.mountId));
  }
  SetStat(obj, "stat", o.stat);
}

Napi::Object ObjectToJs(Napi::Env env, const ObjectData& o) {
  Napi::Object obj = Napi::Object::New(env);
  Put(obj, "err", Napi::Number::New(env, o.err));
  SetObjectFields(obj, o);
  return obj;
}

// ---------------------------------------------------------------- arguments

Napi::Value ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "manila_native: " + message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* what, int* out) {
  if (info.Length() > i && info[i].IsNumber()) {
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (d >= 0 && d <= 2147483647.0 && d == static_cast<double>(static_cast<int>(d))) {
      *out = static_cast<int>(d);
      return true;
    }
  }
  ThrowType(info.Env(), std::string(what) + " must be a file descriptor (a non-negative integer)");
  return false;
}

bool ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* what, uint32_t* out) {
  if (info.Length() > i && info[i].IsNumber()) {
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (d >= 0 && d <= 4294967295.0 && d == static_cast<double>(static_cast<uint32_t>(d))) {
      *out = static_cast<uint32_t>(d);
      return true;
    }
  }
  ThrowType(info.Env(), std::string(what) + " must be an unsigned 32-bit integer");
  return false;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out) {
  if (info.Length() > i && info[i].IsBoolean()) {
    *out = info[i].As<Napi::Boolean>().Value();
    return true;
  }
  ThrowType(info.Env(), std::string(what) + " must be a boolean");
  return false;
}

bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out) {
  if (info.Length() > i && info[i].IsBigInt()) {
    bool lossless = false;
    uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (lossless) {
      *out = v;
      return true;
    }
  }
  ThrowType(info.Env(), std::string(what) + " must be a bigint in [0, 2^64)");
  return false;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out) {
  if (info.Length() > i && info[i].IsBuffer()) {
    auto b = info[i].As<Napi::Buffer<char>>();
    out->assign(b.Data(), b.Length());
    return true;
  }
  ThrowType(info.Env(), std::string(what) + " must be a Buffer");
  return false;
}

bool ArgCreds(const Napi::CallbackInfo& info, size_t i, Creds* out) {
  out->present = false;
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return true;
  if (info[i].IsTypedArray()) {
    auto ta = info[i].As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_uint32_array) {
      auto arr = ta.As<Napi::Uint32Array>();
      size_t n = arr.ElementLength();
      if (n >= 2 && n <= 2 + kMaxGroups) {
        out->present = true;
        out->uid = arr[0];
        out->gid = arr[1];
        out->ngroups = static_cast<uint32_t>(n - 2);
        for (size_t g = 2; g < n; g++) out->groups[g - 2] = arr[g];
        return true;
      }
    }
  }
  ThrowType(info.Env(), "creds must be null or a Uint32Array [uid, gid, ...groups] with at most 32 groups");
  return false;
}

}  // namespace manila
