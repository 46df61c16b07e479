// READ and WRITE: reopen the O_PATH fd for I/O as the caller (with the owner override), then
// pread/pwrite directly between the file and the caller's Buffer.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

#include "common.h"
#include "listing_cache.h"
#include "encode.h"

namespace manila {

int ReopenWithOwnerOverride(CredGuard& guard, const Creds& creds, int pathFd, int flags, uid_t owner, Fd* out) {
  char path[32];
  ProcFdPath(pathFd, path, sizeof path);
  const int oflags = flags | O_CLOEXEC | O_NOCTTY;
  out->reset(RetryEintr([&] { return open(path, oflags); }));
  if (out->ok()) return 0;
  int e = errno;
  if (e != EACCES || !creds.present || creds.uid != owner) return e;
  DaemonScope daemon(guard);
  out->reset(RetryEintr([&] { return open(path, oflags); }));
  e = out->ok() ? 0 : errno;
  int back = daemon.resume();
  if (back != 0) {
    out->reset();  // never go on as the daemon
    return back;
  }
  // The owner was read before the failed open; if the file changed hands since, the override
  // does not apply to the new owner's file.
  struct stat now;
  if (e == 0 && (fstat(out->get(), &now) != 0 || now.st_uid != creds.uid)) {
    out->reset();
    return EACCES;
  }
  return e;
}

int RequireRegular(const struct stat& st) {
  if (S_ISREG(st.st_mode)) return 0;
  return S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
}

namespace {

// ------------------------------------------------------------------------------ read

struct ReadOp {
  Creds creds;
  int fd = -1;
  Napi::ObjectReference keep;  // the Buffer stays alive while the thread writes into it
  char* data = nullptr;        // buffer + offset
  size_t length = 0;
  uint64_t position = 0;
  int err = 0;
  size_t count = 0;
  bool eof = false;
  OptStat after;
  // readEncode: the post_op_attr's fattr3 goes here (the reply's header), and Build gives a number.
  uint8_t* attrOut = nullptr;
  ShareRef share;
  bool attrWritten = false;

  void Run() {
    OptStat before;
    Read(&before);
    if (attrOut == nullptr) return;
    // The attributes after the read. For a failed READ without them (refused before the read:
    // EACCES, EISDIR), the object's as it was a moment ago, which is what the JS path's fresh fstat
    // (attrOf) says; a READ that succeeded without them has none, as there.
    const OptStat& attr = after.ok || err == 0 ? after : before;
    if (attr.ok) {
      PutFattr3(attrOut, attr.st, share->fsid);
      attrWritten = true;
    }
  }

  void Read(OptStat* before) {
    struct stat& st = before->st;
    if ((err = StatFd(fd, &st)) != 0) return;
    before->ok = true;
    if ((err = RequireRegular(st)) != 0) return;
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    Fd file;
    if ((err = ReopenWithOwnerOverride(guard, creds, fd, O_RDONLY, st.st_uid, &file)) != 0) return;
    const size_t max = ReadableLength(position, length);
    while (count < max) {
      ssize_t n = RetryEintr([&] {
        return pread(file.get(), data + count, max - count, static_cast<off_t>(position + count));
      });
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) break;
      count += static_cast<size_t>(n);
    }
    StatFdOpt(file.get(), &after);
    if (err == 0) {
      const uint64_t end = position + count;
      eof = count < length || (after.ok && end >= static_cast<uint64_t>(after.st.st_size));
    }
  }
  Napi::Value Build(Napi::Env env) {
    if (attrOut != nullptr) {
      // One number, no object (FsBridge.readEncode): count*4 + eof*2 + attr, or -(1 + err*2 + attr).
      const double attrBit = attrWritten ? 1 : 0;
      if (err != 0) return Napi::Number::New(env, -(1 + static_cast<double>(err) * 2 + attrBit));
      return Napi::Number::New(env, static_cast<double>(count) * 4 + (eof ? 2 : 0) + attrBit);
    }
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    Put(o, "count", Napi::Number::New(env, static_cast<double>(count)));
    Put(o, "eof", Napi::Boolean::New(env, eof));
    SetStat(o, "after", after);
    return o;
  }
};

Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReadOp op;
  uint32_t offset, length;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) return ThrowType(env, "buffer must be a Buffer");
  if (!ArgUint32(info, 3, "offset", &offset) || !ArgUint32(info, 4, "length", &length) ||
      !ArgU64(info, 5, "position", &op.position))
    return env.Undefined();
  auto buffer = info[2].As<Napi::Buffer<char>>();
  if (static_cast<uint64_t>(offset) + length > buffer.Length())
    return ThrowType(env, "offset + length is beyond the end of buffer");
  op.data = buffer.Data() + offset;
  op.length = length;
  op.keep = Napi::Persistent(buffer.As<Napi::Object>());
  return StartOp(env, std::move(op));
}

// readEncode(creds, pathFd, buffer, offset, length, position, attrOffset, share) -> Promise<number>:
// read(), with the fattr3 of the post_op_attr written at buffer[attrOffset..+84] (see fsbridge.ts).
Napi::Value ReadEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReadOp op;
  uint32_t offset, length, attrOffset;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) return ThrowType(env, "buffer must be a Buffer");
  if (!ArgUint32(info, 3, "offset", &offset) || !ArgUint32(info, 4, "length", &length) ||
      !ArgU64(info, 5, "position", &op.position) || !ArgUint32(info, 6, "attrOffset", &attrOffset) ||
      !ArgShareContext(info, 7, &op.share))
    return env.Undefined();
  auto buffer = info[2].As<Napi::Buffer<char>>();
  if (static_cast<uint64_t>(offset) + length > buffer.Length())
    return ThrowType(env, "offset + length is beyond the end of buffer");
  const uint64_t attrEnd = static_cast<uint64_t>(attrOffset) + kFattr3Size;
  if (attrEnd > buffer.Length() || (attrOffset < static_cast<uint64_t>(offset) + length && attrEnd > offset))
    return ThrowType(env, "attrOffset: no room for the attributes outside the data");
  op.data = buffer.Data() + offset;
  op.length = length;
  op.attrOut = reinterpret_cast<uint8_t*>(buffer.Data()) + attrOffset;
  op.keep = Napi::Persistent(buffer.As<Napi::Object>());
  return StartOp(env, std::move(op));
}

// ------------------------------------------------------------------------------ write

struct WriteOp {
  Creds creds;
  int fd = -1;
  Napi::ObjectReference keep;
  const char* data = nullptr;
  size_t length = 0;
  uint64_t position = 0;
  uint32_t stable = 0;
  int err = 0;
  size_t count = 0;
  OptStat before, after;

  void Run() {
    if ((err = StatFd(fd, &before.st)) != 0) return;
    before.ok = true;
    if ((err = RequireRegular(before.st)) != 0) return;
    if (position > kMaxOffset || static_cast<uint64_t>(length) > kMaxOffset - position) {
      err = EFBIG;
      return;
    }
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    Fd file;
    if ((err = ReopenWithOwnerOverride(guard, creds, fd, O_WRONLY, before.st.st_uid, &file)) != 0) return;
    // The write itself runs as the caller, so the kernel clears setuid/setgid as it should.
    while (count < length) {
      ssize_t n = RetryEintr([&] {
        return pwrite(file.get(), data + count, length - count, static_cast<off_t>(position + count));
      });
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) {
        err = EIO;
        break;
      }
      count += static_cast<size_t>(n);
    }
    MarkChanged(before.st);  // its size and times, in every cached listing that has it
    if (err == 0 && stable == 1 && fdatasync(file.get()) != 0) err = errno;
    if (err == 0 && stable >= 2 && fsync(file.get()) != 0) err = errno;
    StatFdOpt(file.get(), &after);
  }
  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    Put(o, "count", Napi::Number::New(env, static_cast<double>(count)));
    SetStat(o, "before", before);
    SetStat(o, "after", after);
    return o;
  }
};

Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  WriteOp op;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsBuffer()) return ThrowType(env, "data must be a Buffer");
  if (!ArgU64(info, 3, "position", &op.position) || !ArgUint32(info, 4, "stable", &op.stable))
    return env.Undefined();
  auto data = info[2].As<Napi::Buffer<char>>();
  op.data = data.Data();
  op.length = data.Length();
  op.keep = Napi::Persistent(data.As<Napi::Object>());
  return StartOp(env, std::move(op));
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  Put(exports, "read", Napi::Function::New(env, Read, "read"));
  Put(exports, "readEncode", Napi::Function::New(env, ReadEncode, "readEncode"));
  Put(exports, "write", Napi::Function::New(env, Write, "write"));
}

}  // namespace manila
