// READDIR / READDIRPLUS: getdents64 on a directory reopened as the caller, resumed at a cookie
// (the d_off of the last entry the client saw), with per-entry handle and attributes for plus.
//
// readdir() hands JS one object per entry (READDIR, and READDIRPLUS of callers that want
// objects); readdirPlusEncode() writes READDIRPLUS's dirlistplus3 straight into the reply buffer
// on the worker thread: the XDR of every entry, with its fattr3 and its NFS handle (tag included),
// so the main thread does the same small amount of work whatever the number of entries.
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "encode.h"
#include "listing_cache.h"

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

// getdents64 into a buffer sized for a page of maxEntries (most names are short; the kernel fills
// what fits), for READDIR and READDIRPLUS alike.
class DirentReader {
 public:
  explicit DirentReader(uint32_t maxEntries)
      : size_(std::clamp<size_t>(static_cast<size_t>(maxEntries) * 64 + 1024, 4096, 65536)), buf_(new char[size_]) {}
  /** Bytes of entries read into data() (0 at the end of the directory), or -1 with errno. */
  long Read(int dir) { return RetryEintr([&] { return syscall(SYS_getdents64, dir, buf_.get(), size_); }); }
  const char* data() const { return buf_.get(); }

 private:
  size_t size_;
  std::unique_ptr<char[]> buf_;
};

// ENOTDIR unless pathFd is a directory (checked as the daemon, before acting as the caller); *st
// is its fstat.
int RequireDirectory(int fd, struct stat* st) {
  if (int e = StatFd(fd, st)) return e;
  return S_ISDIR(st->st_mode) ? 0 : ENOTDIR;
}

// pathFd reopened for listing as the thread's current caller (the open checks their read
// permission) and positioned at `cookie`; 0 or errno (then dirStat is the directory's, if known).
int OpenListing(int fd, uint64_t cookie, Fd* dir, OptStat* dirStat) {
  char path[32];
  ProcFdPath(fd, path, sizeof path);
  dir->reset(RetryEintr([&] { return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
  if (!dir->ok()) return errno;
  if (cookie != 0 && lseek(dir->get(), static_cast<off_t>(cookie), SEEK_SET) < 0) {
    const int e = errno;
    StatFdOpt(dir->get(), dirStat);
    return e;
  }
  return 0;
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
    if ((err = RequireDirectory(fd, &st)) != 0) return;
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    Fd dir;
    if ((err = OpenListing(fd, cookie, &dir, &dirStat)) != 0) return;
    DirentReader dirents(maxEntries);
    entries.reserve(std::min<uint32_t>(maxEntries, 4096));
    for (;;) {
      const long n = dirents.Read(dir.get());
      if (n < 0) {
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
        const auto* d = reinterpret_cast<const LinuxDirent64*>(dirents.data() + pos);
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
        StatToDoubles(e.obj.stat.st, row + 7);
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

// ---------------------------------------------------------------- READDIRPLUS, encoded in place
//
// Byte for byte what the JS path makes (src/nfs3/readdirplus.ts encodeReaddirplus3Res over
// ShareFileService.list, src/fs/attributes.ts toFattr3, src/nfs3/xdr.ts encodeFattr3 and
// src/fs/handle.ts HandleCodec.encode): the same entries, budgets, eof, handles and attributes.
// Numbers go through a double on the JS path (NativeStat fields), so they do here too (JsUint32,
// JsUint64): a fileid past 2^53 must read the same in READDIRPLUS as in GETATTR.

constexpr size_t kDirlistTail = 8;  // DIRLIST3_TAIL: no next entry, eof

struct ReaddirPlusOp {
  Creds creds;
  int fd = -1;
  uint64_t cookie = 0;
  bool isRoot = false;      // the listed directory is the share root (as the service knows it)
  uint32_t maxEntries = 0;  // the service's cap, as for readdir()
  uint32_t dircount = 0;    // 0: no separate limit
  uint32_t budget = 0;      // maxcount (at most NFS3_READDIR_MAX), counted from the status word
  Napi::ObjectReference keep;  // the reply buffer stays alive while the thread writes into it
  uint8_t* out = nullptr;      // where the dirlistplus3 goes: buffer + offset, `budget` bytes of room
  ShareRef share;

  int err = 0;
  bool tooSmall = false;
  bool eof = false;
  uint32_t count = 0;
  size_t bytes = 0;
  OptStat dirStat;  // the directory's attributes for the reply (the listing's fstat, else pathFd's)

  // while running
  OptStat listed_;  // fstat of the opened directory itself: `..` of the share root, and atRoot
  bool atRoot_ = false;
  size_t used_ = 0;  // bytes of the reply from the status word on, as encodeReaddirplus3Res counts
  size_t dirUsed_ = 0;
  uint8_t* p_ = nullptr;

  void Run() {
    RunListing();
    if (err != 0) {
      count = 0;
      bytes = 0;
      eof = false;
      tooSmall = false;
    }
    // The service answered an unusable listing's attributes with a second fstat of pathFd.
    if (!dirStat.ok) StatFdOpt(fd, &dirStat);
  }

  void RunListing() {
    struct stat st;
    if ((err = RequireDirectory(fd, &st)) != 0) return;
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    if (share->listingCacheMs > 0 && ServeCached(st)) return;
    Fd dir;
    if ((err = OpenListing(fd, cookie, &dir, &dirStat)) != 0) return;
    DirentReader dirents(maxEntries);
    p_ = out;
    bool started = false;
    bool unfit = false;  // an entry was left out for want of room
    for (;;) {
      const long n = dirents.Read(dir.get());
      if (n < 0) {
        err = errno;
        break;
      }
      if (!started) {
        started = true;
        if (!Start(dir.get())) return;
      }
      if (n == 0) {
        eof = true;  // nothing after the last entry sent
        break;
      }
      if (count >= maxEntries) break;  // a peek past a full page: more entries exist
      bool stop = false;
      for (long pos = 0; pos < n;) {
        const auto* d = reinterpret_cast<const LinuxDirent64*>(dirents.data() + pos);
        if (count >= maxEntries || !AddEntry(dir.get(), d->d_name, std::strlen(d->d_name), d->d_ino,
                                             static_cast<uint64_t>(d->d_off))) {
          unfit = count < maxEntries;
          stop = true;  // eof stays false: entries remain in this very batch
          break;
        }
        pos += d->d_reclen;
      }
      if (stop) break;
    }
    if (!started) StatFdOpt(dir.get(), &dirStat);
    if (err != 0) return;
    Finish(unfit);
  }

  /** The end of dirlistplus3, or TOOSMALL when not even one entry fit. */
  void Finish(bool unfit) {
    if (unfit && count == 0) {
      tooSmall = true;  // not even one entry fits: NFS3ERR_TOOSMALL
      return;
    }
    p_ = Put32(p_, 0);  // no next entry
    p_ = Put32(p_, eof ? 1 : 0);
    bytes = static_cast<size_t>(p_ - out);
  }

  /** The directory's attributes decide the header's size; false (TOOSMALL) when not even it fits. */
  bool Header() {
    // status, post_op_attr, cookieverf
    used_ = 4 + (dirStat.ok ? 4 + kFattr3Size : 4) + 8;
    if (used_ + kDirlistTail > budget) {
      tooSmall = true;
      return false;
    }
    return true;
  }

  /** After the first getdents: the listed directory's own attributes. */
  bool Start(int dirfd) {
    StatFdOpt(dirfd, &listed_);
    dirStat = listed_;
    if (!dirStat.ok) StatFdOpt(fd, &dirStat);
    atRoot_ = AtRoot(listed_);
    return Header();
  }

  bool AtRoot(const OptStat& listed) const {
    return isRoot || (listed.ok && static_cast<double>(listed.st.st_ino) == share->ino &&
                      static_cast<double>(listed.st.st_dev) == share->dev);
  }

  /** One entry as found: what Encode writes and the sizes the budget counts. */
  struct Found {
    const char* name = nullptr;
    size_t nameLength = 0;
    uint64_t cookie = 0;
    double fileid = 0;
    const struct stat* attr = nullptr;
    OptStat found;
    HandleData kernel;
    const uint8_t* rootFh = nullptr;
    bool handle = false;
    size_t fhLength = 0;
    size_t dirSize = 0;  // entryplus3DirSize
    size_t size = 0;     // the whole entryplus3, from value-follows on
  };

  static size_t DirSizeOf(size_t nameLength) { return 8 + OpaqueSize(nameLength) + 8; }

  /** The lookups of one entry of dirfd (never a JS value: any thread). `found` must not move after. */
  void Look(int dirfd, const char* name, size_t nameLength, uint64_t dIno, uint64_t dOff, Found* f) const {
    f->name = name;
    f->nameLength = nameLength;
    f->cookie = dOff;
    f->dirSize = DirSizeOf(nameLength);
    const bool dotdot = nameLength == 2 && name[0] == '.' && name[1] == '.';
    f->fileid = static_cast<double>(dIno);
    if (dotdot && atRoot_) {
      // `..` of a share root is the root itself: nothing above the share is ever named
      f->fileid = share->ino;
      f->rootFh = reinterpret_cast<const uint8_t*>(share->rootHandle.data());
      if (listed_.ok) f->attr = &listed_.st;
    } else if (dotdot) {
      // elsewhere the parent's handle is left to LOOKUP (which checks it is still in the share)
      f->found.ok = fstatat(dirfd, name, &f->found.st, AT_SYMLINK_NOFOLLOW) == 0;
      if (f->found.ok) f->fileid = static_cast<double>(f->found.st.st_ino);
    } else if (!IsGfidAuxName(dirfd, name)) {
      // Of an entry gone since getdents: no attributes, no handle, d_ino as its fileid.
      f->found.ok = fstatat(dirfd, name, &f->found.st, AT_SYMLINK_NOFOLLOW) == 0;
      if (f->found.ok) f->fileid = static_cast<double>(f->found.st.st_ino);
      // On another mount (a mount point inside the share): no handle, so no attributes either.
      HandleAt(dirfd, name, 0, &f->kernel);  // as LookupObject: a handle when had, whatever else failed
      f->handle = f->kernel.ok && static_cast<double>(f->kernel.mountId) == share->mountId &&
                  f->kernel.len <= kMaxKernelHandle;
      if (f->found.ok && f->handle) f->attr = &f->found.st;
    }
    f->fhLength = f->handle ? kHandleHeader + f->kernel.len + kHandleTag : f->rootFh ? share->rootHandle.size() : 0;
    f->size = 4 + f->dirSize + (f->attr ? 4 + kFattr3Size : 4) + (f->handle || f->rootFh ? 4 + OpaqueSize(f->fhLength) : 4);
  }

  /** Writes f's entryplus3 (f->size bytes) at p. */
  uint8_t* Encode(uint8_t* p, const Found& f) const {
    p = Put32(p, 1);  // value follows
    p = Put64(p, JsUint64(f.fileid));
    p = PutOpaque(p, f.name, f.nameLength);
    p = Put64(p, f.cookie);
    if (f.attr) {
      p = Put32(p, 1);
      p = PutFattr3(p, *f.attr, share->fsid);
    } else {
      p = Put32(p, 0);
    }
    if (f.handle) {
      p = Put32(p, 1);
      p = Put32(p, static_cast<uint32_t>(f.fhLength));
      PutNfsHandle(p, share->hmac, share->key, f.kernel.type, f.kernel.bytes, f.kernel.len);
      p += f.fhLength;
      for (size_t i = XdrPad(f.fhLength); i > 0; i--) *p++ = 0;
    } else if (f.rootFh) {
      p = Put32(p, 1);
      p = PutOpaque(p, f.rootFh, f.fhLength);
    } else {
      p = Put32(p, 0);
    }
    return p;
  }

  /** Whether an entry of these sizes fits the reply's budgets (maxcount, dircount). */
  bool Fits(size_t size, size_t dirSize) const {
    if (count > 0 && dircount != 0 && dirUsed_ + dirSize > dircount) return false;
    return used_ + size + kDirlistTail <= budget;
  }

  void Account(uint8_t* end, size_t size, size_t dirSize) {
    p_ = end;
    used_ += size;
    dirUsed_ += dirSize;
    count++;
  }

  /** Looks up and writes one entryplus3 if it fits; false (nothing written) if not. */
  bool AddEntry(int dirfd, const char* name, size_t nameLength, uint64_t dIno, uint64_t dOff) {
    const size_t dirSize = DirSizeOf(nameLength);
    // the smallest this entry can be (no attributes, no handle): no lookup for one that cannot fit
    if (!Fits(4 + dirSize + 4 + 4, dirSize)) return false;
    Found f;
    Look(dirfd, name, nameLength, dIno, dOff, &f);
    if (!Fits(f.size, f.dirSize)) return false;
    Account(Encode(p_, f), f.size, f.dirSize);
    return true;
  }

  // ---- the listing cache (listing_cache.h)

  /**
   * Answers from the share's cached listing of the directory (filling it first when the directory
   * is listed again), as the caller; false when the listing must be read as usual (nothing of the
   * reply written then). `st` is the directory's fstat of this call.
   */
  bool ServeCached(const struct stat& st) {
    const uint64_t now = MonotonicNs();
    const uint64_t ttl = TtlNs();
    const DirIdentity identity = DirIdentity::Of(st);
    ListingRef listing = listing_cache::Find(share->id, st.st_dev, st.st_ino);
    const bool valid = listing && listing->dir == identity &&
                       now - listing->filledNs < (listing->uncacheable ? listing_cache::kUncacheableNs : ttl) &&
                       !ChangedSince(st.st_dev, st.st_ino, listing->filledNs);
    if (valid && listing->uncacheable) return false;
    if (!valid && (Racy(st) || !listing_cache::ClaimFill(share->id, st.st_dev, st.st_ino, now, ttl))) return false;
    // The caller's right to list it, and to look its entries up, checked on every call that is
    // served or fills (not before: most uncached calls need no such syscall). The uncached path
    // would open it for reading and fstatat in it.
    if (faccessat(fd, "", R_OK | X_OK, AT_EMPTY_PATH | AT_EACCESS) != 0) {
      if (!valid) listing_cache::Abandon(share->id, st.st_dev, st.st_ino, 0);
      return false;
    }
    if (!valid) {
      listing = Fill(st, now);
      if (!listing) return false;
    }
    if (listing->uncacheable) return false;
    if (!ServeFrom(*listing, st)) return false;
    listing_cache::CountHit();
    return true;
  }

  /** The share's listingCacheMs in nanoseconds. */
  uint64_t TtlNs() const { return static_cast<uint64_t>(share->listingCacheMs) * 1'000'000u; }

  /** The directory changed within kRacyNs (by the realtime clock its ctime comes from), or will. */
  static bool Racy(const struct stat& st) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t ageNs = (static_cast<int64_t>(now.tv_sec) - st.st_ctim.tv_sec) * 1'000'000'000LL +
                          (now.tv_nsec - st.st_ctim.tv_nsec);
    return ageNs < static_cast<int64_t>(listing_cache::kRacyNs);
  }

  /** Reads the whole directory into a new listing and stores it; null if it cannot be read. */
  ListingRef Fill(const struct stat& st, uint64_t startNs) {
    auto listing = std::make_shared<Listing>();
    listing->shareId = share->id;
    listing->dir = DirIdentity::Of(st);  // taken before the entries: a change while filling shows
    listing->filledNs = startNs;         // a MarkChanged from now on re-looks its entry up
    Fd dir;
    OptStat unused;
    if (OpenListing(fd, 0, &dir, &unused) != 0) {
      listing_cache::Abandon(share->id, st.st_dev, st.st_ino, TtlNs());
      return nullptr;
    }
    StatFdOpt(dir.get(), &listed_);
    atRoot_ = AtRoot(listed_);
    listing->atRoot = atRoot_;
    DirentReader dirents(4096);
    bool done = false;
    while (!done) {
      const long n = dirents.Read(dir.get());
      if (n < 0) {
        listing_cache::Abandon(share->id, st.st_dev, st.st_ino, TtlNs());
        return nullptr;
      }
      if (n == 0) break;
      for (long pos = 0; pos < n && !done; pos += reinterpret_cast<const LinuxDirent64*>(dirents.data() + pos)->d_reclen) {
        const auto* d = reinterpret_cast<const LinuxDirent64*>(dirents.data() + pos);
        if (listing->entries.size() >= listing_cache::kMaxListingEntries || listing->blob.size() >= listing_cache::kMaxListingBytes ||
            !listing->after.emplace(static_cast<uint64_t>(d->d_off), static_cast<uint32_t>(listing->entries.size() + 1)).second) {
          listing->uncacheable = true;  // too large, or two entries share a cookie
          done = true;
          break;
        }
        Found f;
        Look(dir.get(), d->d_name, std::strlen(d->d_name), d->d_ino, static_cast<uint64_t>(d->d_off), &f);
        CachedEntry c;
        c.offset = static_cast<uint32_t>(listing->blob.size());
        c.size = static_cast<uint32_t>(f.size);
        c.dirSize = static_cast<uint32_t>(f.dirSize);
        c.nameLength = static_cast<uint32_t>(f.nameLength);
        c.dIno = d->d_ino;
        c.cookie = f.cookie;
        c.object = f.found.ok;
        if (f.found.ok) {
          c.objDev = f.found.st.st_dev;
          c.objIno = f.found.st.st_ino;
        }
        listing->blob.resize(c.offset + f.size);
        Encode(listing->blob.data() + c.offset, f);
        listing->entries.push_back(c);
      }
    }
    if (listing->uncacheable) {
      listing->blob = {};
      listing->entries = {};
      listing->after = {};
    } else {
      listing->blob.shrink_to_fit();
      listing->entries.shrink_to_fit();
    }
    listing_cache::Store(listing);
    return listing;
  }

  /** This call's reply from `listing`; false (nothing written) when its cookie is not one of it. */
  bool ServeFrom(const Listing& listing, const struct stat& st) {
    size_t i = 0;
    if (cookie != 0) {
      auto it = listing.after.find(cookie);
      if (it == listing.after.end()) return false;
      i = it->second;
    }
    listed_.ok = true;
    listed_.st = st;
    dirStat = listed_;
    atRoot_ = listing.atRoot;
    if (!Header()) return true;
    p_ = out;
    bool unfit = false;
    const size_t n = listing.entries.size();
    for (; i < n; i++) {
      if (count >= maxEntries) break;
      const CachedEntry& c = listing.entries[i];
      if (c.object && ChangedSince(c.objDev, c.objIno, listing.filledNs)) {
        // changed through this gateway since the fill: this entry as it is now
        const std::string name(reinterpret_cast<const char*>(listing.blob.data()) + c.offset + 16, c.nameLength);
        if (!AddEntry(fd, name.c_str(), c.nameLength, c.dIno, c.cookie)) {
          unfit = true;
          break;
        }
        continue;
      }
      if (!Fits(c.size, c.dirSize)) {
        unfit = true;
        break;
      }
      std::memcpy(p_, listing.blob.data() + c.offset, c.size);
      Account(p_ + c.size, c.size, c.dirSize);
    }
    eof = i == n;
    Finish(unfit);
    return true;
  }

  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    Put(o, "tooSmall", Napi::Boolean::New(env, tooSmall));
    Put(o, "bytes", Napi::Number::New(env, static_cast<double>(bytes)));
    Put(o, "entries", Napi::Number::New(env, count));
    Put(o, "eof", Napi::Boolean::New(env, eof));
    SetStat(o, "dirStat", dirStat);
    return o;
  }
};

// readdirPlusEncode(creds, pathFd, cookie, isRoot, maxEntries, dircount, maxcount, buffer, offset,
// length, share) -> Promise<{ err, tooSmall, bytes, entries, eof, dirStat? }>
Napi::Value ReaddirPlusEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReaddirPlusOp op;
  uint32_t offset, length;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd) || !ArgU64(info, 2, "cookie", &op.cookie) ||
      !ArgBool(info, 3, "isRoot", &op.isRoot) || !ArgUint32(info, 4, "maxEntries", &op.maxEntries) ||
      !ArgUint32(info, 5, "dircount", &op.dircount) || !ArgUint32(info, 6, "maxcount", &op.budget))
    return env.Undefined();
  if (info.Length() < 8 || !info[7].IsBuffer()) return ThrowType(env, "buffer must be a Buffer");
  if (!ArgUint32(info, 8, "offset", &offset) || !ArgUint32(info, 9, "length", &length)) return env.Undefined();
  auto buffer = info[7].As<Napi::Buffer<uint8_t>>();
  if (static_cast<uint64_t>(offset) + length > buffer.Length())
    return ThrowType(env, "offset + length is beyond the end of buffer");
  if (length < op.budget) return ThrowType(env, "length must be at least maxcount");
  if (!ArgShareContext(info, 10, &op.share)) return env.Undefined();
  op.out = buffer.Data() + offset;
  op.keep = Napi::Persistent(buffer.As<Napi::Object>());
  return StartOp(env, std::move(op));
}

// encodeNfsHandle(secret, shareKey, type, bytes): HandleCodec.encode as readdirPlusEncode makes
// it, null when the kernel handle is too long (tests compare the two).
Napi::Value EncodeNfsHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string secret, key, bytes;
  if (!ArgBytes(info, 0, "secret", &secret) || !ArgBytes(info, 1, "shareKey", &key)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsNumber()) return ThrowType(env, "type must be a number");
  const int type = info[2].As<Napi::Number>().Int32Value();
  if (!ArgBytes(info, 3, "bytes", &bytes)) return env.Undefined();
  if (secret.size() < 32 || key.size() != kShareKeyBytes) return ThrowType(env, "secret or shareKey of a wrong size");
  if (bytes.size() > kMaxKernelHandle) return env.Null();
  HmacSha256 hmac;
  hmac.SetKey(reinterpret_cast<const uint8_t*>(secret.data()), secret.size());
  OPENSSL_cleanse(&secret[0], secret.size());
  uint8_t out[kNfsFhSize];
  const size_t n = PutNfsHandle(out, hmac, reinterpret_cast<const uint8_t*>(key.data()), type,
                                reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  return Napi::Buffer<uint8_t>::Copy(env, out, n);
}

// encodeFattr3(stat, fsid): the 84 bytes readdirPlusEncode writes for a NativeStat-shaped object
// (tests compare them with encodeFattr3(toFattr3(...))).
Napi::Value EncodeFattr3(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsBigInt()) return ThrowType(env, "encodeFattr3(stat, fsid)");
  Napi::Object o = info[0].As<Napi::Object>();
  auto num = [&](const char* key) { return o.Get(key).ToNumber().DoubleValue(); };
  struct stat st = {};
  st.st_dev = static_cast<dev_t>(num("dev"));
  st.st_ino = static_cast<ino_t>(num("ino"));
  st.st_mode = static_cast<mode_t>(num("mode"));
  st.st_nlink = static_cast<nlink_t>(num("nlink"));
  st.st_uid = static_cast<uid_t>(num("uid"));
  st.st_gid = static_cast<gid_t>(num("gid"));
  st.st_rdev = makedev(static_cast<unsigned>(num("rdevMajor")), static_cast<unsigned>(num("rdevMinor")));
  st.st_size = static_cast<off_t>(num("size"));
  st.st_blocks = static_cast<blkcnt_t>(num("blocks"));
  st.st_atim.tv_sec = static_cast<time_t>(num("atimeSec"));
  st.st_atim.tv_nsec = static_cast<long>(num("atimeNsec"));
  st.st_mtim.tv_sec = static_cast<time_t>(num("mtimeSec"));
  st.st_mtim.tv_nsec = static_cast<long>(num("mtimeNsec"));
  st.st_ctim.tv_sec = static_cast<time_t>(num("ctimeSec"));
  st.st_ctim.tv_nsec = static_cast<long>(num("ctimeNsec"));
  bool lossless = false;
  const uint64_t fsid = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  uint8_t out[kFattr3Size];
  PutFattr3(out, st, fsid);
  return Napi::Buffer<uint8_t>::Copy(env, out, sizeof out);
}

// listingCacheStats() -> { hits, fills, bytes, listings }: READDIRPLUS replies served from the
// listing cache, listings filled, and what the cache holds now (metrics and tests).
Napi::Value ListingCacheStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const listing_cache::Stats st = listing_cache::GetStats();
  Napi::Object o = Napi::Object::New(env);
  Put(o, "hits", Napi::Number::New(env, static_cast<double>(st.hits)));
  Put(o, "fills", Napi::Number::New(env, static_cast<double>(st.fills)));
  Put(o, "bytes", Napi::Number::New(env, static_cast<double>(st.bytes)));
  Put(o, "listings", Napi::Number::New(env, static_cast<double>(st.listings)));
  return o;
}

}  // namespace

void InitReaddir(Napi::Env env, Napi::Object exports) {
  Napi::Value builder = env.RunScript(kBuilderSource);
  if (builder.IsEmpty() || !builder.IsFunction()) return;  // exception pending: the require fails
  GetAddonData(env)->readdirBuilder = Napi::Persistent(builder.As<Napi::Function>());
  Put(exports, "readdir", Napi::Function::New(env, Readdir, "readdir"));
  Put(exports, "readdirPlusEncode", Napi::Function::New(env, ReaddirPlusEncode, "readdirPlusEncode"));
  Put(exports, "encodeNfsHandle", Napi::Function::New(env, EncodeNfsHandle, "encodeNfsHandle"));
  Put(exports, "encodeFattr3", Napi::Function::New(env, EncodeFattr3, "encodeFattr3"));
  Put(exports, "listingCacheStats", Napi::Function::New(env, ListingCacheStats, "listingCacheStats"));
}

}  // namespace manila
