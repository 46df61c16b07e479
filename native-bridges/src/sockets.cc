// Sockets Node lacks (see src/native/sockets.ts for the TypeScript contract):
//   vsockListen    an AF_VSOCK listening socket (the guest channel of DESIGN.md);
//   Acceptor       accepts on any listening stream socket from the event loop, handing each
//                  connection's fd and peer CID to JS (src/transport/stream-fd.ts makes it a Duplex);
//   unixListen, socketPair   AF_UNIX helpers, so tests run the same acceptor and stream code on a
//                  machine without vsock loopback;
//   sdNotify       one datagram to systemd's $NOTIFY_SOCKET (sd_notify(3) without libsystemd);
//   peerCid        the peer of an AF_VSOCK socket.
//
// Everything here runs on the main (event loop) thread: the syscalls are non-blocking. OS errors are
// returned as positive errno values, never thrown; only misuse (wrong argument types) throws.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
// <linux/vm_sockets.h> needs struct sockaddr from <sys/socket.h> first.
#include <linux/vm_sockets.h>
#include <uv.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "common.h"

namespace manila {

namespace {

// ---------------------------------------------------------------- helpers

/** { fd, err, syscall } — fd is -1 and syscall names the failing call when err != 0. */
Napi::Object FdResult(Napi::Env env, int fd, int err, const char* syscall) {
  Napi::Object o = Napi::Object::New(env);
  Put(o, "fd", Napi::Number::New(env, err ? -1 : fd));
  Put(o, "err", Napi::Number::New(env, err));
  if (err) Put(o, "syscall", Napi::String::New(env, syscall));
  return o;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out) {
  if (info.Length() > i && info[i].IsString()) {
    *out = info[i].As<Napi::String>().Utf8Value();
    return true;
  }
  ThrowType(info.Env(), std::string(what) + " must be a string");
  return false;
}

bool ArgFunction(const Napi::CallbackInfo& info, size_t i, const char* what, Napi::Function* out) {
  if (info.Length() > i && info[i].IsFunction()) {
    *out = info[i].As<Napi::Function>();
    return true;
  }
  ThrowType(info.Env(), std::string(what) + " must be a function");
  return false;
}

/**
 * An AF_UNIX address: an absolute or relative path, or "@name" for the abstract namespace (the '@'
 * becomes the leading NUL, and the length counts exactly the name's bytes: abstract names are not
 * NUL-terminated, so sizeof(sockaddr_un) would name a different socket). 0 or EINVAL/ENAMETOOLONG.
 */
int UnixAddress(const std::string& path, struct sockaddr_un* addr, socklen_t* len) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.empty()) return EINVAL;
  if (path[0] == '@') {
    if (path.size() > sizeof(addr->sun_path)) return ENAMETOOLONG;
    std::memcpy(addr->sun_path, path.data(), path.size());
    addr->sun_path[0] = '\0';
    *len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
    return 0;
  }
  if (path.find('\0') != std::string::npos) return EINVAL;
  if (path.size() >= sizeof(addr->sun_path)) return ENAMETOOLONG;
  std::memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);
  return 0;
}

// ---------------------------------------------------------------- vsockListen

/** vsockListen(cid, port, backlog) -> { fd, port, err, syscall? }; 0xFFFFFFFF = any CID / port. */
Napi::Value VsockListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t cid, port, backlog;
  if (!ArgUint32(info, 0, "cid", &cid) || !ArgUint32(info, 1, "port", &port) ||
      !ArgUint32(info, 2, "backlog", &backlog)) {
    return env.Undefined();
  }
  struct sockaddr_vm addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  socklen_t len = sizeof(addr);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const char* syscall = "socket";
  if (fd >= 0) {
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
      syscall = "bind";
    } else if (listen(fd, backlog > 0x7fffffff ? SOMAXCONN : static_cast<int>(backlog)) != 0) {
      syscall = "listen";
    } else if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&addr), &len) != 0) {
      syscall = "getsockname";
    } else {
      syscall = nullptr;
    }
  }
  int err = syscall ? errno : 0;
  if (err && fd >= 0) close(fd);
  Napi::Object o = FdResult(env, fd, err, syscall);  // on success the fd belongs to the caller
  Put(o, "port", Napi::Number::New(env, err ? 0 : addr.svm_port));
  Put(o, "cid", Napi::Number::New(env, err ? 0 : addr.svm_cid));
  return o;
}

// ---------------------------------------------------------------- unixListen, socketPair

/** unixListen(path, backlog) -> { fd, err, syscall? }: a non-blocking AF_UNIX stream listener. */
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint32_t backlog;
  if (!ArgString(info, 0, "path", &path) || !ArgUint32(info, 1, "backlog", &backlog)) return env.Undefined();
  struct sockaddr_un addr;
  socklen_t len = 0;
  int err = UnixAddress(path, &addr, &len);
  if (err) return FdResult(env, -1, err, "bind");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return FdResult(env, -1, errno, "socket");
  const char* syscall = nullptr;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len) != 0) {
    syscall = "bind";
  } else if (listen(fd, backlog > 0x7fffffff ? SOMAXCONN : static_cast<int>(backlog)) != 0) {
    syscall = "listen";
  }
  if (syscall) {
    err = errno;
    close(fd);
    return FdResult(env, -1, err, syscall);
  }
  return FdResult(env, fd, 0, nullptr);
}

/** socketPair() -> { fds: [a, b], err }: a connected AF_UNIX stream pair (blocking, CLOEXEC). */
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2] = {-1, -1};
  int err = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : errno;
  Napi::Object o = Napi::Object::New(env);
  Napi::Array arr = Napi::Array::New(env, 2);
  arr.Set(0u, Napi::Number::New(env, fds[0]));
  arr.Set(1u, Napi::Number::New(env, fds[1]));
  Put(o, "fds", arr);
  Put(o, "err", Napi::Number::New(env, err));
  return o;
}

// ---------------------------------------------------------------- peerCid, sdNotify

/** peerCid(fd) -> { cid, port, err }: getpeername of an AF_VSOCK socket (EAFNOSUPPORT otherwise). */
Napi::Value PeerCid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int err = 0;
  double cid = -1, port = -1;
  if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) {
    err = errno;
  } else if (ss.ss_family != AF_VSOCK) {
    err = EAFNOSUPPORT;
  } else {
    const auto* vm = reinterpret_cast<const struct sockaddr_vm*>(&ss);
    cid = vm->svm_cid;
    port = vm->svm_port;
  }
  Napi::Object o = Napi::Object::New(env);
  Put(o, "cid", Napi::Number::New(env, cid));
  Put(o, "port", Napi::Number::New(env, port));
  Put(o, "err", Napi::Number::New(env, err));
  return o;
}

/**
 * sdNotify(socketPath, message) -> 0 or errno: one datagram, as sd_notify(3) sends it. Only the
 * two address forms systemd uses for services are accepted: an absolute path or "@abstract"
 * (others, e.g. systemd 254's "vsock:CID:PORT" for whole VMs, answer EAFNOSUPPORT).
 */
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, message;
  if (!ArgString(info, 0, "socketPath", &path) || !ArgString(info, 1, "message", &message)) return env.Undefined();
  if (path.empty() || (path[0] != '/' && path[0] != '@')) return Napi::Number::New(env, EAFNOSUPPORT);
  struct sockaddr_un addr;
  socklen_t len = 0;
  int err = UnixAddress(path, &addr, &len);
  if (err) return Napi::Number::New(env, err);
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.ok()) return Napi::Number::New(env, errno);
  ssize_t n = RetryEintr([&] {
    return sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr),
                  len);
  });
  if (n < 0) return Napi::Number::New(env, errno);
  if (static_cast<size_t>(n) != message.size()) return Napi::Number::New(env, EMSGSIZE);
  return Napi::Number::New(env, 0);
}

// ---------------------------------------------------------------- Acceptor

/** Errors of accept4 that concern one connection (already gone, or a network error Linux passes
 *  on, accept(2) "Error handling"): skip it and accept the next. Anything else (EPERM or EACCES from
 *  a security module included, which would refuse the same connection again) pauses accepting. */
bool TransientAcceptError(int e) {
  switch (e) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

constexpr int kMaxAcceptsPerWakeup = 256;  // then let the loop run; the poll is level-triggered
constexpr uint64_t kBackoffMs = 100;       // pause after EMFILE and other errors that would repeat

/**
 * Acceptor(listeningFd, onConnection(fd, peerCid, peerPort), onError(errno)): watches a listening
 * stream socket with a uv_poll_t and, when it is readable, accepts (accept4, non-blocking and
 * CLOEXEC) until EAGAIN. peerCid/peerPort are the sockaddr_vm's for AF_VSOCK, -1 otherwise.
 * Errors that would repeat at once (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...) are reported and
 * accepting pauses for kBackoffMs, so a full fd table is not a busy loop.
 *
 * Owns the listening fd from construction. start() -> 0 or errno; close() stops watching, closes
 * the uv handles and the fd (idempotent); an open acceptor holds a strong reference to itself, so it
 * is never collected while it listens, and a collected one (never started, or closed) closes too.
 */
class Acceptor : public Napi::ObjectWrap<Acceptor> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Acceptor",
                       {
                           InstanceMethod<&Acceptor::Start>("start"),
                           InstanceMethod<&Acceptor::Close>("close"),
                           InstanceAccessor<&Acceptor::GetClosed>("closed"),
                       });
  }

  explicit Acceptor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Acceptor>(info) {
    int fd;
    Napi::Function onConnection, onError;
    if (!ArgFd(info, 0, "listeningFd", &fd)) return;
    if (!ArgFunction(info, 1, "onConnection", &onConnection) || !ArgFunction(info, 2, "onError", &onError)) return;
    fd_ = fd;
    onConnection_ = Napi::Persistent(onConnection);
    onError_ = Napi::Persistent(onError);
    context_ = std::make_unique<Napi::AsyncContext>(info.Env(), "manila_native.Acceptor", info.This().As<Napi::Object>());
  }

  ~Acceptor() override {
    // Collected (never started or already closed), or the environment is going away: in the latter
    // case the reference is being deleted, so it must not be unref'd here.
    refd_ = false;
    Shutdown();
  }

 private:
  /** The uv handles live apart from the wrapper: they must outlive it until uv_close completes. */
  struct Handles {
    uv_poll_t poll;
    uv_timer_t timer;
    Acceptor* owner = nullptr;
    bool pollInited = false;
    int open = 0;  // handles not yet closed
    // Registered while the handles exist: when the environment goes away (a worker thread ending)
    // Node waits for its removal before unloading the addon, whose code the close callbacks are.
    napi_async_cleanup_hook_handle cleanupHook = nullptr;
  };

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || handles_ != nullptr) return Napi::Number::New(env, fd_ < 0 ? EBADF : EALREADY);
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return Napi::Number::New(env, EINVAL);
    auto* h = new Handles();
    h->owner = this;
    h->poll.data = h;
    h->timer.data = h;
    uv_timer_init(loop, &h->timer);  // cannot fail
    h->open = 1;
    handles_ = h;
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, h, &h->cleanupHook) != napi_ok) h->cleanupHook = nullptr;
    int r = uv_poll_init(loop, &h->poll, fd_);
    if (r == 0) {
      h->pollInited = true;
      h->open = 2;
      r = uv_poll_start(&h->poll, UV_READABLE, OnPoll);
    }
    if (r != 0) {
      CloseHandles();
      return Napi::Number::New(env, -r);  // libuv errors are negated errnos on Linux
    }
    Ref();  // kept alive while it listens
    refd_ = true;
    return Napi::Number::New(env, 0);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

  void CloseHandles() {
    Handles* h = handles_;
    if (h == nullptr) return;
    handles_ = nullptr;
    h->owner = nullptr;
    // uv_close of a poll handle removes the fd from epoll at once (uv__platform_invalidate_fd), so
    // the fd may be closed right after, and the port is free when close() returns.
    if (h->pollInited) uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&h->timer), OnHandleClosed);
  }

  void Shutdown() {
    CloseHandles();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    if (refd_) {
      refd_ = false;
      Unref();
    }
  }

  static void OnHandleClosed(uv_handle_t* handle) {
    auto* h = static_cast<Handles*>(handle->data);
    if (--h->open > 0) return;
    if (h->cleanupHook != nullptr) napi_remove_async_cleanup_hook(h->cleanupHook);
    delete h;
  }

  /** The environment is being torn down with the acceptor open: close it now (handles included). */
  static void OnEnvCleanup(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
    auto* h = static_cast<Handles*>(arg);
    // Without an owner, close() already ran and OnHandleClosed will remove the hook.
    if (h->owner != nullptr) h->owner->Shutdown();
  }

  static void OnPoll(uv_poll_t* poll, int status, int /*events*/) {
    auto* h = static_cast<Handles*>(poll->data);
    Acceptor* self = h->owner;
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // A callback may close this acceptor (and drop its self-reference): stay alive until we return.
    self->Ref();
    if (status < 0) {
      self->Backoff();
      self->CallError(-status);
    } else {
      self->AcceptAll();
    }
    self->Unref();
  }

  static void OnTimer(uv_timer_t* timer) {
    auto* h = static_cast<Handles*>(timer->data);
    if (h->owner != nullptr && h->pollInited) uv_poll_start(&h->poll, UV_READABLE, OnPoll);
  }

  /** Stop polling for kBackoffMs. */
  void Backoff() {
    if (handles_ == nullptr) return;
    uv_poll_stop(&handles_->poll);
    uv_timer_start(&handles_->timer, OnTimer, kBackoffMs, 0);
  }

  void AcceptAll() {
    for (int i = 0; i < kMaxAcceptsPerWakeup && fd_ >= 0; i++) {
      struct sockaddr_storage ss;
      socklen_t len = sizeof(ss);
      int cfd = accept4(fd_, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) return;
        if (TransientAcceptError(e)) continue;
        Backoff();
        CallError(e);
        return;
      }
      double cid = -1, port = -1;
      if (ss.ss_family == AF_VSOCK && len >= sizeof(struct sockaddr_vm)) {
        const auto* vm = reinterpret_cast<const struct sockaddr_vm*>(&ss);
        cid = vm->svm_cid;
        port = vm->svm_port;
      }
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      Call(onConnection_, {Napi::Number::New(env, cfd), Napi::Number::New(env, cid), Napi::Number::New(env, port)});
    }
  }

  void CallError(int err) {
    Napi::Env env = Env();
    Call(onError_, {Napi::Number::New(env, err)});
  }

  /**
   * Calls into JS as an event-loop callback (MakeCallback: async hooks, then the nextTick and
   * microtask queues run). A throwing callback becomes an uncaught exception, as a throwing
   * listener of a net.Server's 'connection' would.
   */
  void Call(Napi::FunctionReference& fn, std::initializer_list<napi_value> args) {
    if (fn.IsEmpty() || !context_) return;
    Napi::Env env = Env();
    fn.MakeCallback(Value(), args, *context_);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  int fd_ = -1;
  bool refd_ = false;
  Handles* handles_ = nullptr;
  Napi::FunctionReference onConnection_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  Put(exports, "vsockListen", Napi::Function::New(env, VsockListen, "vsockListen"));
  Put(exports, "unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  Put(exports, "socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  Put(exports, "peerCid", Napi::Function::New(env, PeerCid, "peerCid"));
  Put(exports, "sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  Put(exports, "Acceptor", Acceptor::Define(env));
}

}  // namespace manila
