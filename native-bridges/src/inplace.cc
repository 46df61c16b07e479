// GETATTR and LOOKUP replies written by the worker thread straight into the reply buffer.
//
// Why: at tens of thousands of requests a second, turning each result into a JS object (a stat of
// 16 numbers, a handle Buffer, a second stat for LOOKUP's directory) and then into fattr3 XDR was
// a fifth of the main thread, and its garbage most of what the young-generation collections had
// to sweep. Here the worker does the syscalls and the XDR; the main thread gets one number.
//
// Each op resolves with a number and writes only past the status word, which is the caller's:
//   getattrEncode: 0 (fattr3, 84 bytes, written), an errno, or kUnlinked.
//   lookupEncode: > 0 (NFS3_OK: that many bytes written: object handle, obj post_op_attr, dir
//     post_op_attr), or <= 0 (LOOKUP3resfail: the dir post_op_attr is written, 4 or 88 bytes, as
//     its first word says): -errno, or one of the kLookup* codes below.
// Same answers as ShareFileService.getattr and lookupIn (src/fs/service.ts) for names other than
// "." and "..", which stay on that path; tests compare the two byte for byte.
#include <errno.h>
#include <sys/stat.h>

#include "common.h"
#include "encode.h"

namespace manila {

namespace {

constexpr int kUnlinked = -1;          // nlink 0 and not a directory: NFS3ERR_STALE
constexpr int kLookupNotDir = -100001;   // the "directory" is not one: NFS3ERR_NOTDIR
constexpr int kLookupOtherMount = -100002;  // the name is on another mount: NFS3ERR_ACCES
constexpr int kLookupNoHandle = -100003;    // no handle that fits one NFS handle: NFS3ERR_SERVERFAULT

/** post_op_attr: false, or true and the fattr3. */
uint8_t* PutPostOpAttr(uint8_t* p, const OptStat& st, uint64_t fsid) {
  if (!st.ok) return Put32(p, 0);
  return PutFattr3(Put32(p, 1), st.st, fsid);
}

struct GetattrEncodeOp {
  int fd = -1;
  ShareRef share;
  Napi::ObjectReference keep;  // the reply buffer
  uint8_t* out = nullptr;
  int result = 0;

  void Run() {
    struct stat st;
    if ((result = StatFd(fd, &st)) != 0) return;
    // Unlinked on the host while we held it open: gone, as knfsd would say (the JS path's rule).
    if (st.st_nlink == 0 && !S_ISDIR(st.st_mode)) {
      result = kUnlinked;
      return;
    }
    PutFattr3(out, st, share->fsid);
  }
  Napi::Value Build(Napi::Env env) { return Napi::Number::New(env, result); }
};

struct LookupEncodeOp {
  Creds creds;
  int dirFd = -1;
  std::string name;
  ShareRef share;
  Napi::ObjectReference keep;  // the reply buffer
  uint8_t* out = nullptr;
  int result = 0;

  void Run() {
    // As LookupOp (handles.cc): the directory's attributes first, then the name as the caller.
    OptStat dirStat;
    ObjectData obj;
    StatFdOpt(dirFd, &dirStat);
    if ((obj.err = ValidateName(name, true)) == 0) {
      CredGuard guard(creds);
      if ((obj.err = guard.err()) == 0) LookupObject(dirFd, name.c_str(), &obj);
    }
    const ShareInfo& s = *share;
    if (dirStat.ok && !S_ISDIR(dirStat.st.st_mode)) return Fail(kLookupNotDir, dirStat);
    if (obj.err != 0 || !obj.stat.ok) return Fail(obj.err != 0 ? -obj.err : -EIO, dirStat);
    // Another filesystem mounted inside the share is not part of it (lookupAnswer's rule).
    const HandleData& h = obj.handle;
    if (static_cast<double>(h.mountId) != s.mountId) return Fail(kLookupOtherMount, dirStat);
    if (!h.ok || h.len > kMaxKernelHandle) return Fail(kLookupNoHandle, dirStat);
    uint8_t* p = out;
    const size_t fhLength = kHandleHeader + h.len + kHandleTag;
    p = Put32(p, static_cast<uint32_t>(fhLength));
    PutNfsHandle(p, s.hmac, s.key, h.type, h.bytes, h.len);
    p += fhLength;
    for (size_t i = XdrPad(fhLength); i > 0; i--) *p++ = 0;
    p = PutPostOpAttr(p, obj.stat, s.fsid);
    p = PutPostOpAttr(p, dirStat, s.fsid);
    result = static_cast<int>(p - out);
  }
  void Fail(int code, const OptStat& dirStat) {
    PutPostOpAttr(out, dirStat, share->fsid);
    result = code;
  }
  Napi::Value Build(Napi::Env env) { return Napi::Number::New(env, result); }
};

/** buffer (arg i) with `need` bytes from offset (arg i + 1): where the op writes; false after throwing. */
bool ArgOutput(const Napi::CallbackInfo& info, size_t i, size_t need, Napi::ObjectReference* keep, uint8_t** out) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    ThrowType(info.Env(), "buffer must be a Buffer");
    return false;
  }
  uint32_t offset;
  if (!ArgUint32(info, i + 1, "offset", &offset)) return false;
  auto buffer = info[i].As<Napi::Buffer<uint8_t>>();
  if (static_cast<uint64_t>(offset) + need > buffer.Length()) {
    ThrowType(info.Env(), "buffer has no room for the reply at offset");
    return false;
  }
  *keep = Napi::Persistent(buffer.As<Napi::Object>());
  *out = buffer.Data() + offset;
  return true;
}

// getattrEncode(pathFd, buffer, offset, share) -> Promise<number>; GETATTR_ENCODE_BYTES from offset.
Napi::Value GetattrEncode(const Napi::CallbackInfo& info) {
  GetattrEncodeOp op;
  if (!ArgFd(info, 0, "pathFd", &op.fd) || !ArgOutput(info, 1, kFattr3Size, &op.keep, &op.out) ||
      !ArgShareContext(info, 3, &op.share))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

// The most lookupEncode writes: a handle of NFS3_FHSIZE, then two post_op_attr with attributes.
constexpr size_t kLookupEncodeBytes = 4 + kNfsFhSize + 2 * (4 + kFattr3Size);

// lookupEncode(creds, dirFd, name, buffer, offset, share) -> Promise<number>; LOOKUP_ENCODE_BYTES from offset.
Napi::Value LookupEncode(const Napi::CallbackInfo& info) {
  LookupEncodeOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "dirFd", &op.dirFd) || !ArgBytes(info, 2, "name", &op.name) ||
      !ArgOutput(info, 3, kLookupEncodeBytes, &op.keep, &op.out) || !ArgShareContext(info, 5, &op.share))
    return info.Env().Undefined();
  return StartOp(info.Env(), std::move(op));
}

}  // namespace

void InitInPlace(Napi::Env env, Napi::Object exports) {
  Put(exports, "getattrEncode", Napi::Function::New(env, GetattrEncode, "getattrEncode"));
  Put(exports, "lookupEncode", Napi::Function::New(env, LookupEncode, "lookupEncode"));
  Napi::Object codes = Napi::Object::New(env);
  Put(codes, "unlinked", Napi::Number::New(env, kUnlinked));
  Put(codes, "notDir", Napi::Number::New(env, kLookupNotDir));
  Put(codes, "otherMount", Napi::Number::New(env, kLookupOtherMount));
  Put(codes, "noHandle", Napi::Number::New(env, kLookupNoHandle));
  Put(codes, "getattrBytes", Napi::Number::New(env, static_cast<double>(kFattr3Size)));
  Put(codes, "lookupBytes", Napi::Number::New(env, static_cast<double>(kLookupEncodeBytes)));
  Put(exports, "inPlaceCodes", codes);
}

}  // namespace manila
