// Zero-copy READ replies: splice(2) moves page-cache pages into a pipe while the backend is asked
// (readToPipe, inside the backend's gate), and from the pipe into the client's socket afterwards
// (sendSpliced). The data is never copied into user space: a 1 MiB READ costs the kernel's page
// references instead of two 1 MiB copies (pread into a buffer, write from it), which the seqread
// profile showed as over half of the daemon's CPU. The backend is done with once the pipe is
// full, so a client that reads slowly never holds a backend slot, and a hung backend never holds
// the connection's output.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>

#include <uv.h>

#include "common.h"

namespace manila {

namespace {

constexpr size_t kMaxSpliceRead = 1024 * 1024;  // NFS3_MAX_DATA: the pipe is sized for the whole read

// ------------------------------------------------------------------------------ readToPipe

struct ReadToPipeOp {
  Creds creds;
  int fd = -1;
  size_t length = 0;
  uint64_t position = 0;
  int err = 0;
  size_t count = 0;
  bool eof = false;
  OptStat after;
  int pipeFd = -1;  // the read end, owned by JS once Build() ran (closed by sendSpliced or close())
  bool pipeFull = false;
  bool reachedEnd = false;

  void Run() {
    struct stat st;
    if ((err = StatFd(fd, &st)) != 0) return;
    if ((err = RequireRegular(st)) != 0) return;
    if (length > kMaxSpliceRead) {
      err = EINVAL;
      return;
    }
    // The pipe must hold the whole read: a splice into a full pipe would wait for a reader that
    // only comes later. It is made and sized as the daemon (a pool thread may still act as the
    // last caller), so what the pipe can hold does not depend on who used the thread before.
    ActAsDaemon();
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) {
      err = ENOBUFS;  // no descriptor to be had: the caller copies instead
      return;
    }
    Fd readEnd(ends[0]), writeEnd(ends[1]);
    // A pipe holds whole pages: a read not aligned to a page spans one more page than its length,
    // and room beyond pipe-max-size (1 MiB) takes CAP_SYS_RESOURCE. Without it the last partial
    // page does not fit and the client gets a short read (RFC 1813 section 3.3.6 allows it; clients
    // ask again for the rest). A pipe that cannot even hold `length` (the per-user pipe quota is
    // spent) is ENOBUFS: the caller reads the usual way.
    if (length > 0) {
      const size_t need = length < 4096 ? 4096 : length;
      int got = fcntl(writeEnd.get(), F_SETPIPE_SZ, static_cast<int>(need + 2 * 4096));
      if (got < 0) got = fcntl(writeEnd.get(), F_SETPIPE_SZ, static_cast<int>(need));
      if (got < 0 || static_cast<size_t>(got) < need) {
        err = ENOBUFS;  // EPERM past the per-user quota, ENOMEM: the caller copies instead
        return;
      }
    }
    CredGuard guard(creds);
    if ((err = guard.err()) != 0) return;
    Fd file;
    if ((err = ReopenWithOwnerOverride(guard, creds, fd, O_RDONLY, st.st_uid, &file)) != 0) return;
    const size_t max = ReadableLength(position, length);
    loff_t at = static_cast<loff_t>(position);
    // Non-blocking on the pipe: a full pipe ends the read short instead of waiting for a reader
    // that only comes once this returns.
    while (count < max) {
      ssize_t n = splice(file.get(), &at, writeEnd.get(), nullptr, max - count, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN && count > 0) {
          pipeFull = true;
          break;
        }
        err = errno;
        break;
      }
      if (n == 0) {
        reachedEnd = true;
        break;
      }
      count += static_cast<size_t>(n);
    }
    StatFdOpt(file.get(), &after);
    if (err == 0) {
      // A short read because the pipe filled up is not the end of the file.
      eof = (reachedEnd && !pipeFull) || (after.ok && position + count >= static_cast<uint64_t>(after.st.st_size));
      pipeFd = readEnd.release();
    }
  }

  Napi::Value Build(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, err));
    Put(o, "count", Napi::Number::New(env, static_cast<double>(count)));
    Put(o, "eof", Napi::Boolean::New(env, eof));
    if (pipeFd >= 0) Put(o, "pipeFd", Napi::Number::New(env, pipeFd));
    SetStat(o, "after", after);
    return o;
  }
};

Napi::Value ReadToPipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReadToPipeOp op;
  uint32_t length;
  if (!ArgCreds(info, 0, &op.creds) || !ArgFd(info, 1, "pathFd", &op.fd) || !ArgUint32(info, 2, "length", &length) ||
      !ArgU64(info, 3, "position", &op.position))
    return env.Undefined();
  op.length = length;
  return StartOp(env, std::move(op));
}

// ------------------------------------------------------------------------------ sendSpliced

// Runs on the main thread, driven by libuv: a socket that is full makes it wait for writability
// (uv_poll on our own dup of the descriptor), so a client that reads slowly costs no thread.
extern napi_ref g_resource;
extern napi_async_context g_context;

class SplicedSend {
 public:
  static uint32_t next_id;

  SplicedSend(Napi::Env env, int sock, int pipeFd, std::string header, size_t count, uint32_t pad)
      : env_(env), id_(next_id++), sock_(sock), pipe_(pipeFd), header_(std::move(header)), count_(count), pad_(pad),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  uint32_t id() const { return id_; }
  Napi::Promise promise() const { return deferred_.Promise(); }

  /** Sends what the socket takes now; waits for writability for the rest. */
  void Start() {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env_, &loop);
    if (loop == nullptr || uv_poll_init(loop, &poll_, sock_) != 0) {
      Finish(EIO);
      return;
    }
    polling_ = true;
    poll_.data = this;
    Step();
  }

  /** The connection closed: stop now (the socket's last reference, ours, is closed). */
  void Cancel() { Finish(ECANCELED); }

 private:
  static void OnWritable(uv_poll_t* handle, int status, int) {
    auto* self = static_cast<SplicedSend*>(handle->data);
    // Called by libuv, outside any JS callback: a callback scope makes the promise's reactions run
    // as soon as this returns (closing it drains the microtasks).
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    napi_value resource;
    napi_callback_scope callback_scope = nullptr;
    const bool scoped = napi_get_reference_value(self->env_, g_resource, &resource) == napi_ok &&
                        napi_open_callback_scope(self->env_, resource, g_context, &callback_scope) == napi_ok;
    if (status < 0) self->Finish(EPIPE);
    else self->Step();
    if (scoped) napi_close_callback_scope(env, callback_scope);
  }

  // 0: all sent; EAGAIN: the socket is full; else the errno.
  int Push() {
    static const char zeros[4] = {0, 0, 0, 0};
    while (header_done_ < header_.size()) {
      // MSG_MORE only while something follows: a last segment flagged so can wait for an ACK.
      const int more = (count_ > 0 || pad_ > 0) ? MSG_MORE : 0;
      ssize_t n = send(sock_, header_.data() + header_done_, header_.size() - header_done_, MSG_NOSIGNAL | MSG_DONTWAIT | more);
      if (n < 0) return errno == EINTR ? EINTR : errno;
      header_done_ += static_cast<size_t>(n);
    }
    while (sent_ < count_) {
      const unsigned more = pad_ > 0 ? SPLICE_F_MORE : 0;
      ssize_t n = splice(pipe_, nullptr, sock_, nullptr, count_ - sent_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK | more);
      if (n < 0) return errno == EINTR ? EINTR : errno;
      if (n == 0) return EPIPE;  // the pipe holds count bytes: cannot run dry
      sent_ += static_cast<size_t>(n);
    }
    while (pad_done_ < pad_) {
      ssize_t n = send(sock_, zeros, pad_ - pad_done_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) return errno == EINTR ? EINTR : errno;
      pad_done_ += static_cast<uint32_t>(n);
    }
    return 0;
  }

  void Step() {
    int e;
    do e = Push();
    while (e == EINTR);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (!waiting_) {
        waiting_ = true;
        uv_poll_start(&poll_, UV_WRITABLE, &SplicedSend::OnWritable);
      }
      return;
    }
    Finish(e);
  }

  void Finish(int err) {
    if (finished_) return;
    finished_ = true;
    Live().erase(id_);
    if (pipe_ >= 0) close(pipe_);
    pipe_ = -1;
    // The dup is closed only after the poll handle is: libuv must not watch a closed descriptor.
    Napi::HandleScope scope(env_);
    Napi::Object o = Napi::Object::New(env_);
    Put(o, "err", Napi::Number::New(env_, err));
    deferred_.Resolve(o);
    if (polling_) {
      uv_poll_stop(&poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* handle) {
        auto* self = static_cast<SplicedSend*>(handle->data);
        close(self->sock_);
        delete self;
      });
    } else {
      close(sock_);
      delete this;
    }
  }

 public:
  static std::unordered_map<uint32_t, SplicedSend*>& Live() {
    static std::unordered_map<uint32_t, SplicedSend*> live;  // main thread only
    return live;
  }

 private:
  napi_env env_;
  uint32_t id_;
  int sock_;
  int pipe_;
  std::string header_;
  size_t count_;
  uint32_t pad_;
  size_t header_done_ = 0;
  size_t sent_ = 0;
  uint32_t pad_done_ = 0;
  uv_poll_t poll_;
  bool polling_ = false;
  bool waiting_ = false;
  bool finished_ = false;
  Napi::Promise::Deferred deferred_;
};

uint32_t SplicedSend::next_id = 1;
napi_ref g_resource = nullptr;
napi_async_context g_context = nullptr;

// sendSpliced(socketFd, header, pipeFd, count, pad) -> { id, done: Promise<{ err }> }. Writes
// header, then count bytes from the pipe, then pad zero bytes, to the socket; the pipe is closed
// when done. Never rejects. cancelSpliced(id) stops it (the connection closed).
Napi::Value SendSpliced(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int socketFd, pipeFd;
  uint32_t count, pad;
  if (!ArgFd(info, 0, "socketFd", &socketFd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBuffer()) return ThrowType(env, "header must be a Buffer");
  if (!ArgFd(info, 2, "pipeFd", &pipeFd) || !ArgUint32(info, 3, "count", &count) || !ArgUint32(info, 4, "pad", &pad))
    return env.Undefined();
  if (pad > 3) return ThrowType(env, "pad must be 0..3");
  auto header = info[1].As<Napi::Buffer<char>>();
  // Our own descriptor for the socket: Node may close its own while we wait for writability.
  struct stat st;
  int sock = fcntl(socketFd, F_DUPFD_CLOEXEC, 0);
  if (sock < 0 || fstat(sock, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    if (sock >= 0) close(sock);
    sock = -1;
  }
  auto* send = sock < 0 ? nullptr : new SplicedSend(env, sock, pipeFd, std::string(header.Data(), header.Length()), count, pad);
  Napi::Object out = Napi::Object::New(env);
  if (send == nullptr) {
    close(pipeFd);
    auto deferred = Napi::Promise::Deferred::New(env);
    Napi::Object o = Napi::Object::New(env);
    Put(o, "err", Napi::Number::New(env, ENOTSOCK));
    deferred.Resolve(o);
    Put(out, "id", Napi::Number::New(env, 0));
    Put(out, "done", deferred.Promise());
    return out;
  }
  SplicedSend::Live()[send->id()] = send;
  Put(out, "id", Napi::Number::New(env, send->id()));
  Put(out, "done", send->promise());
  send->Start();  // may finish (and free itself) at once
  return out;
}

Napi::Value CancelSpliced(const Napi::CallbackInfo& info) {
  uint32_t id;
  if (!ArgUint32(info, 0, "id", &id)) return info.Env().Undefined();
  auto& live = SplicedSend::Live();
  auto found = live.find(id);
  if (found != live.end()) found->second->Cancel();
  return info.Env().Undefined();
}

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) {
  Napi::Object resource = Napi::Object::New(env);
  napi_create_reference(env, resource, 1, &g_resource);
  napi_async_init(env, resource, Napi::String::New(env, "manila_splice"), &g_context);
  Put(exports, "readToPipe", Napi::Function::New(env, ReadToPipe, "readToPipe"));
  Put(exports, "sendSpliced", Napi::Function::New(env, SendSpliced, "sendSpliced"));
  Put(exports, "cancelSpliced", Napi::Function::New(env, CancelSpliced, "cancelSpliced"));
}

}  // namespace manila
