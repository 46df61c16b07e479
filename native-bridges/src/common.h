// Shared pieces of the addon: the promise worker, argument parsing, result conversion and the
// small syscall helpers every operation uses.
//
// Threading rule: everything named Run()/…Fd()/Lookup…() runs on a libuv threadpool thread and
// touches no JS value; everything taking a Napi::Env runs on the main thread.
#pragma once

#include <napi.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "creds.h"
#include "pool.h"

namespace manila {

constexpr unsigned kMaxHandleBytes = 128;  // MAX_HANDLE_SZ

// A GlusterFS handle (gfid.cc): the object's 16-byte gfid, on a mount registered with
// registerGfidMount. "GFID" in ASCII: kernel handle types are FILEID_* values below 0x100, plus the
// flag bits 0x10000/0x20000 since Linux 6.13, so no kernel handle has this type.
constexpr int kGfidHandleType = 0x47464944;
constexpr unsigned kGfidBytes = 16;

// ---------------------------------------------------------------- worker-side data and helpers

/** A struct stat that may be missing (its fstat failed). */
struct OptStat {
  bool ok = false;
  struct stat st;
};

struct HandleData {
  bool ok = false;
  int type = 0;
  unsigned len = 0;
  int mountId = 0;
  unsigned char bytes[kMaxHandleBytes];
};

/** An ObjectResult: err plus what could be had of handle and attributes. */
struct ObjectData {
  bool present = false;  // include it in the JS result at all
  int err = 0;
  HandleData handle;
  OptStat stat;
};

/** Owns a file descriptor; closes it (once) on every path. */
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void reset(int fd = -1);
  /** Gives up ownership: returns the fd, which this no longer closes. */
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

/** CLOCK_MONOTONIC in nanoseconds. */
uint64_t MonotonicNs();

/** fstatat(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); 0 or errno. */
int StatFd(int fd, struct stat* st);
/** As StatFd, into an OptStat (absent on failure). */
void StatFdOpt(int fd, OptStat* out);
/**
 * name_to_handle_at(dirfd, name, ..., flags); 0 or errno. On a mount registered with
 * registerGfidMount the handle is the object's gfid instead (kGfidHandleType), mountId unchanged.
 */
int HandleAt(int dirfd, const char* name, int flags, HandleData* out);
/**
 * Finds `name` in `dirfd` without following a symlink: one O_PATH open, so the handle and the
 * attributes are of the same object even if the name is replaced concurrently. Fills `out`
 * (present = true) and returns out->err.
 */
int LookupObject(int dirfd, const char* name, ObjectData* out);
/** Handle and attributes of an already open fd. */
int ObjectOfFd(int fd, ObjectData* out);
/**
 * Opens the regular file behind O_PATH `pathFd` (through /proc/self/fd) with `flags`, as the
 * guard's caller, with the NFS owner override: if the caller is refused (EACCES) but owns the file
 * (`owner`), it is opened as the daemon instead, as knfsd does (RFC 1813 4.4: the owner may read
 * and write a file whose mode denies it). The caller must have checked that pathFd is a regular
 * file: the reopen follows the magic link. 0 or errno.
 */
int ReopenWithOwnerOverride(CredGuard& guard, const Creds& creds, int pathFd, int flags, uid_t owner, Fd* out);
/** The largest file offset (off_t): READ stops short of it, WRITE past it is EFBIG. */
constexpr uint64_t kMaxOffset = INT64_MAX;
/** READ and WRITE take regular files only: EISDIR for a directory, EINVAL for anything else. */
int RequireRegular(const struct stat& st);
/** Of `length` bytes a READ asks for at `position`, those below kMaxOffset (none from it on). */
inline size_t ReadableLength(uint64_t position, size_t length) {
  if (position >= kMaxOffset) return 0;
  return static_cast<uint64_t>(length) > kMaxOffset - position ? static_cast<size_t>(kMaxOffset - position) : length;
}
/** "/proc/self/fd/<fd>" into buf (at least 32 bytes). */
void ProcFdPath(int fd, char* buf, size_t size);
/** EINVAL unless `name` is one path component: non-empty, <= 255 bytes, no '/', no NUL;
 *  "." and ".." only when allowDots. */
int ValidateName(const std::string& name, bool allowDots);
/** Retries a syscall-style call while it fails with EINTR. */
template <class F>
auto RetryEintr(F f) -> decltype(f()) {
  decltype(f()) r;
  do {
    r = f();
  } while (r < 0 && errno == EINTR);
  return r;
}

// ---------------------------------------------------------------- GlusterFS gfid handles (gfid.cc)

/** Whether any mount is registered (no lock: the common case costs one atomic load). */
bool AnyGfidMount();
/** If out->mountId is registered, replaces the kernel handle in `out` by the object's gfid; 0 or errno. */
int GfidHandleAt(int dirfd, const char* name, int flags, HandleData* out);
/** statx's mount id of dirfd/name (flags: AT_EMPTY_PATH or 0; never follows); 0 or errno. */
int GfidMountIdAt(int dirfd, const char* name, int flags, int* mountId);
/** True for ".gfid" in the root of a registered mount: gluster's door to every object, never a name. */
bool IsGfidAuxName(int dirfd, const char* name);
/** openByHandle for kGfidHandleType: opens the gfid under mountFd's registered mount; 0 or errno. */
int OpenGfidHandle(int mountFd, const std::string& bytes, int flags, int* out);

// ---------------------------------------------------------------- main-thread conversion

/** The 16 numbers of a stat object, in StatToJs's order (dev, ino, mode, ... ctimeNsec). */
void StatToDoubles(const struct stat& st, double* f);
Napi::Object StatToJs(Napi::Env env, const struct stat& st);
/** Sets obj[key] to the stat when present. */
void SetStat(Napi::Object obj, const char* key, const OptStat& st);
/**
 * obj[key] = value with the key's JS string made once per environment: napi_set_named_property
 * decodes and internalizes the C string on every call, which profiles showed as a tenth of the
 * main thread. `key` must be a string literal (cached by address).
 */
void Put(Napi::Object obj, const char* key, Napi::Value value);
Napi::Object HandleToJs(Napi::Env env, const HandleData& h);
/** Sets handle/mountId/stat of `o` on obj (err not included). */
void SetObjectFields(Napi::Object obj, const ObjectData& o);
/** An ObjectResult object ({ err, handle?, mountId?, stat? }). */
Napi::Object ObjectToJs(Napi::Env env, const ObjectData& o);

// ---------------------------------------------------------------- argument parsing
// Each returns false after throwing a TypeError (misuse of the API, a bug in the caller).

bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* what, int* out);
bool ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* what, uint32_t* out);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out);
bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out);
/** A Buffer/Uint8Array copied into a string (names, symlink targets). */
bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out);
/** null/undefined (act as the daemon) or Uint32Array [uid, gid, ...groups]. */
bool ArgCreds(const Napi::CallbackInfo& info, size_t i, Creds* out);
Napi::Value ThrowType(Napi::Env env, const std::string& message);

// ---------------------------------------------------------------- operations

template <class T, class = void>
struct HasCreds : std::false_type {};
template <class T>
struct HasCreds<T, std::void_t<decltype(std::declval<T&>().creds)>> : std::true_type {};

/**
 * The generic job: `Op` is a plain struct with `void Run()` (worker thread) and
 * `Napi::Value Build(Napi::Env)` (main thread), and a `Creds creds` member if it acts as a caller.
 * Napi references it holds (kept-alive Buffers) are released on the main thread with the job.
 */
template <class Op>
class OpJob final : public PoolJob {
 public:
  explicit OpJob(Op&& op) : op_(std::move(op)) {}
  void Run() override { op_.Run(); }
  Napi::Value Build(Napi::Env env) override { return op_.Build(env); }
  const Creds* JobCreds() const override {
    if constexpr (HasCreds<Op>::value) return &op_.creds;
    return nullptr;
  }

 private:
  Op op_;
};

/** Runs `op` on the addon's worker pool (pool.h); returns a promise of its Build(). Never rejects. */
template <class Op>
Napi::Value StartOp(Napi::Env env, Op&& op) {
  return SubmitJob(env, new OpJob<Op>(std::forward<Op>(op)));
}

// ---------------------------------------------------------------- per-environment data

/** What the addon keeps per Node environment (main thread or worker), as instance data. */
class OpPool;

struct AddonData {
  /** The worker threads of this environment (pool.cc). */
  OpPool* pool = nullptr;
  /** Builds a READDIR page's entry objects from packed arrays in one call (see readdir.cc). */
  Napi::FunctionReference readdirBuilder;
  /** Builds one stat object from statScratch (see StatToJs). */
  Napi::FunctionReference statBuilder;
  Napi::Reference<Napi::Float64Array> statScratch;
  double* statScratchData = nullptr;
  /**
   * Property-name strings (see Put): made once into keyStrings (N-API before version 10 cannot
   * reference a string directly), found by the address of their literal.
   */
  Napi::Reference<Napi::Array> keyStrings;
  std::unordered_map<const char*, uint32_t> keys;
};

/** Makes the stat builder; false with a JS exception pending if it cannot be compiled. */
bool InitStatBuilder(Napi::Env env);

AddonData* GetAddonData(Napi::Env env);

// ---------------------------------------------------------------- exports of each file

void InitHandles(Napi::Env env, Napi::Object exports);
/** Sets glibc malloc's fixed mmap threshold (handles.cc says why); before any buffer is pooled. */
void TuneMalloc();
void InitIo(Napi::Env env, Napi::Object exports);
void InitFsOps(Napi::Env env, Napi::Object exports);
void InitReaddir(Napi::Env env, Napi::Object exports);
void InitEncode(Napi::Env env, Napi::Object exports);
void InitInPlace(Napi::Env env, Napi::Object exports);
void InitSockets(Napi::Env env, Napi::Object exports);
void InitGfid(Napi::Env env, Napi::Object exports);
void InitSplice(Napi::Env env, Napi::Object exports);

}  // namespace manila
