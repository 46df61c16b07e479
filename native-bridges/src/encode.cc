// See encode.h.
#include "encode.h"

#include <atomic>

#include <sys/sysmacros.h>

#include <cmath>

#include "common.h"

namespace manila {

/** JS `d >>> 0` (XdrWriter.uint32) of an integral double. */
uint32_t JsUint32(double d) {
  if (d >= 0 && d < 18446744073709551616.0) return static_cast<uint32_t>(static_cast<uint64_t>(d));
  if (d < 0 && d >= -9223372036854775808.0) return static_cast<uint32_t>(static_cast<int64_t>(d));
  if (!std::isfinite(d)) return 0;
  double m = std::fmod(std::trunc(d), 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return static_cast<uint32_t>(m);
}

/** XdrWriter.uint64 of a number: the high and low words as it computes them. */
uint64_t JsUint64(double d) {
  if (d >= 0 && d < 18446744073709551616.0) return static_cast<uint64_t>(d);
  const double hi = std::floor(d / 4294967296.0);
  const double lo = d - hi * 4294967296.0;
  return (static_cast<uint64_t>(JsUint32(hi)) << 32) | JsUint32(lo);
}

/** ftypeOf (src/fs/attributes.ts): ftype3 of st_mode, NF3REG for anything unknown. */
uint32_t Ftype3Of(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 2;   // NF3DIR
    case S_IFBLK: return 3;   // NF3BLK
    case S_IFCHR: return 4;   // NF3CHR
    case S_IFLNK: return 5;   // NF3LNK
    case S_IFSOCK: return 6;  // NF3SOCK
    case S_IFIFO: return 7;   // NF3FIFO
    default: return 1;        // NF3REG
  }
}

/** encodeFattr3(toFattr3(stat, fsid)), the stat taken through doubles as StatToJs does. */
uint8_t* PutFattr3(uint8_t* p, const struct stat& st, uint64_t fsid) {
  p = Put32(p, Ftype3Of(st.st_mode));
  p = Put32(p, JsUint32(static_cast<double>(st.st_mode)) & 07777);
  p = Put32(p, JsUint32(static_cast<double>(st.st_nlink)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_uid)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_gid)));
  p = Put64(p, JsUint64(static_cast<double>(st.st_size)));
  p = Put64(p, JsUint64(static_cast<double>(st.st_blocks) * 512));
  p = Put32(p, JsUint32(static_cast<double>(major(st.st_rdev))));
  p = Put32(p, JsUint32(static_cast<double>(minor(st.st_rdev))));
  p = Put64(p, fsid);
  p = Put64(p, JsUint64(static_cast<double>(st.st_ino)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_atim.tv_sec)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_atim.tv_nsec)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_mtim.tv_sec)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_mtim.tv_nsec)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_ctim.tv_sec)));
  p = Put32(p, JsUint32(static_cast<double>(st.st_ctim.tv_nsec)));
  return p;
}

/** HandleCodec.encode into p (14 + length + 12 bytes); the caller checked length <= kMaxKernelHandle. */
size_t PutNfsHandle(uint8_t* p, const HmacSha256& hmac, const uint8_t* shareKey, int type, const uint8_t* bytes,
                    unsigned length) {
  p[0] = kHandleVersion;
  p[1] = static_cast<uint8_t>(length);
  std::memcpy(p + 2, shareKey, kShareKeyBytes);
  Put32(p + 10, static_cast<uint32_t>(type));
  std::memcpy(p + kHandleHeader, bytes, length);
  uint8_t tag[SHA256_DIGEST_LENGTH];
  hmac.Mac(p, kHandleHeader + length, tag);
  std::memcpy(p + kHandleHeader + length, tag, kHandleTag);
  return kHandleHeader + length + kHandleTag;
}

namespace {

/** A Buffer property of `o` of minLength to maxLength bytes, copied; false after throwing. */
bool PropBuffer(Napi::Object o, const char* key, size_t minLength, size_t maxLength, std::string* out) {
  Napi::Value v = o.Get(key);
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    if (b.Length() >= minLength && b.Length() <= maxLength) {
      out->assign(b.Data(), b.Length());
      return true;
    }
  }
  ThrowType(o.Env(), std::string("share.") + key + " must be a Buffer of " + std::to_string(minLength) + " to " +
                         std::to_string(maxLength) + " bytes");
  return false;
}

bool PropNumber(Napi::Object o, const char* key, double* out) {
  Napi::Value v = o.Get(key);
  if (v.IsNumber()) {
    *out = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(*out)) return true;
  }
  ThrowType(o.Env(), std::string("share.") + key + " must be a finite number");
  return false;
}

/** `share` of shareContext (a NativeShareInfo: { secret, key, mountId, ino, dev, handle, fsid }). */
bool ArgShare(const Napi::CallbackInfo& info, size_t i, ShareInfo* out) {
  if (info.Length() <= i || !info[i].IsObject()) {
    ThrowType(info.Env(), "share must be an object");
    return false;
  }
  Napi::Object o = info[i].As<Napi::Object>();
  std::string secret, key;
  if (!PropBuffer(o, "secret", 32, 1 << 16, &secret)) return false;
  out->hmac.SetKey(reinterpret_cast<const uint8_t*>(secret.data()), secret.size());
  OPENSSL_cleanse(&secret[0], secret.size());
  if (!PropBuffer(o, "key", kShareKeyBytes, kShareKeyBytes, &key)) return false;
  std::memcpy(out->key, key.data(), kShareKeyBytes);
  if (!PropNumber(o, "mountId", &out->mountId) || !PropNumber(o, "ino", &out->ino) ||
      !PropNumber(o, "dev", &out->dev) || !PropBuffer(o, "handle", 1, kNfsFhSize, &out->rootHandle))
    return false;
  Napi::Value fsid = o.Get("fsid");
  bool lossless = false;
  if (fsid.IsBigInt()) out->fsid = fsid.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    ThrowType(info.Env(), "share.fsid must be a bigint in [0, 2^64)");
    return false;
  }
  Napi::Value cacheMs = o.Get("listingCacheMs");
  if (!cacheMs.IsUndefined()) {
    double ms = -1;
    if (cacheMs.IsNumber()) ms = cacheMs.As<Napi::Number>().DoubleValue();
    if (!(ms >= 0 && ms <= 3'600'000) || ms != static_cast<double>(static_cast<uint32_t>(ms))) {
      ThrowType(info.Env(), "share.listingCacheMs must be an integer from 0 to 3600000");
      return false;
    }
    out->listingCacheMs = static_cast<uint32_t>(ms);
  }
  return true;
}

// ---------------------------------------------------------------- shareContext

// Marks the externals shareContext makes, so no other External passes for one (N-API 8 type tags).
constexpr napi_type_tag kShareContextTag = {0x6d616e696c612d67ULL, 0x7368617265637478ULL};

}  // namespace

bool ArgShareContext(const Napi::CallbackInfo& info, size_t i, ShareRef* out) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() > i && info[i].IsExternal() &&
      napi_check_object_type_tag(env, info[i], &kShareContextTag, &tagged) == napi_ok && tagged) {
    *out = *info[i].As<Napi::External<ShareRef>>().Data();
    return true;
  }
  ThrowType(env, "share must be a value of shareContext()");
  return false;
}

namespace {

// shareContext(share: NativeShareInfo) -> an opaque value for the in-place encoders: the share
// parsed (and its HMAC key prepared) once, not per request.
Napi::Value ShareContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static std::atomic<uint64_t> nextId{1};
  auto parsed = std::make_shared<ShareInfo>();
  if (!ArgShare(info, 0, parsed.get())) return env.Undefined();
  parsed->id = nextId.fetch_add(1, std::memory_order_relaxed);
  auto* ref = new ShareRef(std::move(parsed));
  auto external = Napi::External<ShareRef>::New(env, ref, [](Napi::Env, ShareRef* r) { delete r; });
  if (napi_type_tag_object(env, external, &kShareContextTag) != napi_ok) return ThrowType(env, "shareContext: cannot tag the value");
  return external;
}

}  // namespace

void InitEncode(Napi::Env env, Napi::Object exports) {
  Put(exports, "shareContext", Napi::Function::New(env, ShareContext, "shareContext"));
}

}  // namespace manila
