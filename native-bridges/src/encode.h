// NFSv3 XDR written straight into reply buffers by worker threads: the pieces READDIRPLUS, GETATTR
// and LOOKUP encode in place (readdir.cc, inplace.cc). Byte for byte what the JS path writes
// (src/nfs3/xdr.ts encodeFattr3 over src/fs/attributes.ts toFattr3, src/fs/handle.ts
// HandleCodec.encode); tests compare the two.
#pragma once

#define OPENSSL_SUPPRESS_DEPRECATED  // SHA256_Init/Update/Final: the HMAC below keeps their state
#include <napi.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

namespace manila {

// src/fs/handle.ts
constexpr unsigned kHandleVersion = 1;
constexpr unsigned kHandleHeader = 14;
constexpr unsigned kHandleTag = 12;
constexpr unsigned kNfsFhSize = 64;  // NFS3_FHSIZE
constexpr unsigned kMaxKernelHandle = kNfsFhSize - kHandleHeader - kHandleTag;  // MAX_KERNEL_HANDLE
constexpr unsigned kShareKeyBytes = 8;
// src/nfs3/xdr.ts, src/nfs3/readdir.ts
constexpr size_t kFattr3Size = 84;

inline size_t XdrPad(size_t n) { return (4 - (n & 3)) & 3; }
inline size_t OpaqueSize(size_t n) { return 4 + n + XdrPad(n); }

inline uint8_t* Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
  return p + 4;
}

inline uint8_t* Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  return Put32(p + 4, static_cast<uint32_t>(v));
}

/** An opaque's length, bytes and zero padding. */
inline uint8_t* PutOpaque(uint8_t* p, const void* data, size_t n) {
  p = Put32(p, static_cast<uint32_t>(n));
  std::memcpy(p, data, n);
  p += n;
  for (size_t i = XdrPad(n); i > 0; i--) *p++ = 0;
  return p;
}

/** JS `d >>> 0` (XdrWriter.uint32) of an integral double. */
uint32_t JsUint32(double d);
/** XdrWriter.uint64 of a number: the high and low words as it computes them. */
uint64_t JsUint64(double d);
/** ftypeOf (src/fs/attributes.ts): ftype3 of st_mode, NF3REG for anything unknown. */
uint32_t Ftype3Of(mode_t mode);
/** encodeFattr3(toFattr3(stat, fsid)), the stat taken through doubles as StatToJs does. */
uint8_t* PutFattr3(uint8_t* p, const struct stat& st, uint64_t fsid);

/**
 * HMAC-SHA256 with the key's two padded blocks hashed once (RFC 2104): a handle's tag then costs
 * two SHA-256 blocks. The low-level SHA256 functions take no lock (EVP fetches would, per call).
 * The states are as good as the key: wiped when dropped, never copied anywhere else.
 */
class HmacSha256 {
 public:
  HmacSha256() = default;
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  HmacSha256(HmacSha256&& other) noexcept { *this = std::move(other); }
  HmacSha256& operator=(HmacSha256&& other) noexcept {
    if (this != &other) {
      inner_ = other.inner_;
      outer_ = other.outer_;
      OPENSSL_cleanse(&other.inner_, sizeof other.inner_);
      OPENSSL_cleanse(&other.outer_, sizeof other.outer_);
    }
    return *this;
  }
  ~HmacSha256() {
    OPENSSL_cleanse(&inner_, sizeof inner_);
    OPENSSL_cleanse(&outer_, sizeof outer_);
  }

  void SetKey(const uint8_t* key, size_t length) {
    uint8_t block[SHA256_CBLOCK] = {};
    if (length > sizeof block) {
      SHA256_CTX c;
      SHA256_Init(&c);
      SHA256_Update(&c, key, length);
      SHA256_Final(block, &c);
      OPENSSL_cleanse(&c, sizeof c);
    } else {
      std::memcpy(block, key, length);
    }
    uint8_t pad[SHA256_CBLOCK];
    for (size_t i = 0; i < sizeof pad; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&inner_);
    SHA256_Update(&inner_, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&outer_);
    SHA256_Update(&outer_, pad, sizeof pad);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(block, sizeof block);
  }

  void Mac(const uint8_t* data, size_t length, uint8_t out[SHA256_DIGEST_LENGTH]) const {
    SHA256_CTX c = inner_;
    SHA256_Update(&c, data, length);
    uint8_t inner[SHA256_DIGEST_LENGTH];
    SHA256_Final(inner, &c);
    c = outer_;
    SHA256_Update(&c, inner, sizeof inner);
    SHA256_Final(out, &c);
  }

 private:
  SHA256_CTX inner_{};
  SHA256_CTX outer_{};
};

/** HandleCodec.encode into p (14 + length + 12 bytes); the caller checked length <= kMaxKernelHandle. */
size_t PutNfsHandle(uint8_t* p, const HmacSha256& hmac, const uint8_t* shareKey, int type, const uint8_t* bytes,
                    unsigned length);

/** What ShareFileService knows of the share a listing is in (readdirPlusEncode's `share`). */
struct ShareInfo {
  HmacSha256 hmac;
  uint8_t key[kShareKeyBytes] = {};
  double mountId = 0;
  double ino = 0;
  double dev = 0;
  uint64_t fsid = 0;
  std::string rootHandle;  // the share root's NFS handle: `..` of the root
  uint64_t id = 0;              // unique to this context: the listing cache's share key
  uint32_t listingCacheMs = 0;  // READDIRPLUS listings kept this long (0: not cached)
};

/**
 * A share's ShareInfo made once (shareContext) and shared by the operations that use it: an op
 * holds its own reference, so the pool thread's copy outlives whatever JS drops meanwhile.
 */
using ShareRef = std::shared_ptr<const ShareInfo>;
/** The ShareRef of a shareContext() value at argument i; false after throwing. */
bool ArgShareContext(const Napi::CallbackInfo& info, size_t i, ShareRef* out);

void InitEncode(Napi::Env env, Napi::Object exports);

}  // namespace manila
