#include "pool.h"

#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "common.h"

namespace manila {

namespace {

// Started on demand: an idle daemon has a few. Room for the 32 slots (max_inflight) of seven
// backends hung at once, with the rest still served (as 64 was for slots of 8).
constexpr unsigned kDefaultThreads = 256;
constexpr unsigned kMaxThreads = 1024;

// A thread with no work for this long exits, down to kMinThreads: the threads a burst started (and
// their stacks and malloc arenas' pages) follow demand, not the busiest moment since the start. A
// thread is started whenever a job waits and none is idle at that instant, so without this their
// number only ever grew: 32 -> 42 in a 10-minute mixed soak, with the RSS rising alongside.
constexpr unsigned kMinThreads = 4;
constexpr unsigned kDefaultIdleExitMs = 30'000;

/** A whole number from the environment variable `name` in [min, max] (clamped above), else `fallback`. */
unsigned long EnvNumber(const char* name, unsigned long fallback, unsigned long min, unsigned long max) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const unsigned long n = std::strtoul(text, &end, 10);
  if (*end != '\0' || n < min) return fallback;
  return n > max ? max : n;
}

std::chrono::milliseconds IdleExit() {
  // at most a day: a larger count would overflow the wait's deadline
  return std::chrono::milliseconds(EnvNumber("MANILA_POOL_IDLE_MS", kDefaultIdleExitMs, 10, 86'400'000));
}

/**
 * Names the calling thread (top -H, ps -L: "manila-pool") and makes it SCHED_BATCH. A batch thread
 * that wakes does not preempt the one running: the event loop, which every request passes through
 * twice, is no longer pushed off its core by each worker that wakes up. In alternating randread
 * runs at queue depth 32 the main thread's involuntary switches fell from 0.091 to 0.018 per READ,
 * and p99 was lower or equal in 6 of 6 pairs (2192 -> 1957 µs on average). CPU shares stay as
 * they were (same nice value); on a hypervisor the workers also stop preempting guests' vCPUs.
 */
void MarkAsBatchWorker() {
  pthread_setname_np(pthread_self(), "manila-pool");
  sched_param param{};
  param.sched_priority = 0;
  sched_setscheduler(0, SCHED_BATCH, &param);  // best effort: a refusal leaves it SCHED_OTHER
}

unsigned ThreadBound() { return static_cast<unsigned>(EnvNumber("MANILA_POOL_THREADS", kDefaultThreads, 1, kMaxThreads)); }

}  // namespace

/** A singly linked FIFO of jobs (intrusive: no allocation per job). */
struct JobList {
  PoolJob* head = nullptr;
  PoolJob* tail = nullptr;
};

/**
 * One idle thread's place in the stack of waiters. Each thread sleeps on its own condition
 * variable so that a wake-up goes to the thread that went idle last (LIFO): under a steady load
 * the same few threads take turns and the ones below them wait out MANILA_POOL_IDLE_MS and exit.
 * With one shared condition variable, notify_one spread wake-ups over every sleeper, so none
 * stayed idle long enough to leave and a 10-minute soak kept the 39-41 threads its peaks started.
 * Never freed (kept on a free list for the next thread): a notify made after the lock is released
 * may land after its thread has gone on, and it must land on live memory.
 */
struct Waiter {
  std::condition_variable cv;
  bool woken = false;      // a wake-up was handed to this thread (under mu_)
  Waiter* above = nullptr;  // towards the top of the stack: more recently idle
  Waiter* below = nullptr;
};

class OpPool {
 public:
  OpPool(napi_env env, uv_loop_t* loop, napi_ref resource, napi_async_context context)
      : env_(env), resource_(resource), context_(context), max_threads_(ThreadBound()), idle_exit_(IdleExit()) {
    uv_async_init(loop, &async_, &OpPool::OnDone);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));  // only pending jobs keep the loop alive
  }

  Napi::Value Submit(Napi::Env env, PoolJob* job) {
    napi_value promise;
    if (napi_create_promise(env, &job->deferred_, &promise) != napi_ok) {
      delete job;
      return env.Undefined();  // exception pending
    }
    if (pending_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    Waiter* wake = nullptr;
    bool run_inline = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Push(&queue_, job);
      wake = WakeOneLocked();
      run_inline = threads_ == 0;  // not even one thread could be started: better slow than never
    }
    if (wake) wake->cv.notify_one();  // outside the lock: the woken thread does not block on it
    if (run_inline) RunQueuedInline();
    return Napi::Value(env, promise);
  }

  /** The environment is going away: threads stop taking jobs; nothing is resolved any more. */
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      for (Waiter* w = top_; w; w = w->below) w->cv.notify_one();
    }
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      done_closed_ = true;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    // The pool itself is never freed: a thread stuck in a hung backend's syscall still points at
    // it, and the jobs it holds own Napi references that may only be released on the main thread.
  }

  unsigned threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }
  unsigned max_threads() const { return max_threads_; }

 private:
  static void Push(JobList* list, PoolJob* job) {
    job->next_ = nullptr;
    if (list->tail) list->tail->next_ = job;
    else list->head = job;
    list->tail = job;
  }

  static PoolJob* Pop(JobList* list) {
    PoolJob* job = list->head;
    if (job) {
      list->head = job->next_;
      if (!list->head) list->tail = nullptr;
      job->next_ = nullptr;
    }
    return job;
  }

  /**
   * Makes sure one more thread will look at the queue, unless one is already on its way: the most
   * recently idle thread is woken (returned, for the caller to notify) or a new one started. One
   * wake-up at a time: a burst of 32 GETATTRs is mostly run by the first thread woken, at one
   * fstat each, instead of waking 32 threads for a microsecond of work apiece. A thread that takes a job while more wait calls this
   * again before running it, so a job stuck in a hung backend never holds up the ones behind it.
   */
  Waiter* WakeOneLocked() {
    if (signaled_ > 0 || stopping_) return nullptr;
    if (top_) {
      Waiter* w = top_;
      Unlink(w);
      w->woken = true;
      signaled_++;
      return w;
    }
    if (threads_ < max_threads_) {
      // A thread starts with its creator's credentials: a pool thread between operations may
      // still be a guest, so it becomes the daemon again before it creates one.
      ActAsDaemon();
      pthread_t thread;
      if (pthread_create(&thread, nullptr, &OpPool::Worker, this) == 0) {
        pthread_detach(thread);
        threads_++;
        signaled_++;  // the new thread takes it back when it starts looking
      }
    }
    return nullptr;
  }

  void PushWaiter(Waiter* w) {
    w->woken = false;
    w->above = nullptr;
    w->below = top_;
    if (top_) top_->above = w;
    top_ = w;
  }

  void Unlink(Waiter* w) {
    if (w->above) w->above->below = w->below;
    else top_ = w->below;
    if (w->below) w->below->above = w->above;
    w->above = w->below = nullptr;
  }

  static void* Worker(void* arg) {
    static_cast<OpPool*>(arg)->Loop();
    return nullptr;
  }

  void Loop() {
    MarkAsBatchWorker();
    KeepCredsBetweenOps();
    RequireDaemonCreds();
    std::unique_lock<std::mutex> lock(mu_);
    if (signaled_ > 0) signaled_--;  // started by WakeOneLocked()
    Waiter* self = TakeWaiterLocked();
    for (;;) {
      while (queue_.head == nullptr && !stopping_) {
        PushWaiter(self);
        self->cv.wait_for(lock, idle_exit_, [&] { return self->woken || stopping_; });
        if (self->woken) {
          signaled_--;  // the waker unlinked it
          continue;
        }
        Unlink(self);  // timed out (or stopping): no wake-up is owed to this thread
        if (queue_.head == nullptr && !stopping_ && threads_ > kMinThreads) {
          // No job waits and none is owed a thread: nothing is left behind by leaving.
          threads_--;
          self->below = free_waiters_;
          free_waiters_ = self;
          return;
        }
      }
      if (stopping_) return;
      PoolJob* job = Pop(&queue_);
      Waiter* wake = queue_.head != nullptr ? WakeOneLocked() : nullptr;
      lock.unlock();
      if (wake) wake->cv.notify_one();
      Execute(job);
      lock.lock();
    }
  }

  /** A waiter for a starting thread: one a thread that exited left behind, else a new one. */
  Waiter* TakeWaiterLocked() {
    Waiter* w = free_waiters_;
    if (!w) return new Waiter();
    free_waiters_ = w->below;
    w->below = nullptr;
    return w;
  }

  void Execute(PoolJob* job) {
    PrepareCredsFor(job->JobCreds());
    job->Run();
    std::lock_guard<std::mutex> lock(done_mu_);
    if (done_closed_) return;  // the environment is gone: the job is let go, unfinished
    Push(&done_, job);
    uv_async_send(&async_);  // under the lock: Stop() cannot close the handle in between
  }

  void RunQueuedInline() {
    for (;;) {
      PoolJob* job;
      {
        std::lock_guard<std::mutex> lock(mu_);
        job = Pop(&queue_);
      }
      if (!job) return;
      // The main thread never keeps a caller's identity: act as it and come back (CredGuard).
      job->Run();
      std::lock_guard<std::mutex> lock(done_mu_);
      Push(&done_, job);
      uv_async_send(&async_);
    }
  }

  static void OnDone(uv_async_t* handle) { static_cast<OpPool*>(handle->data)->Complete(); }

  /** Every job finished since the last wake-up, resolved under one callback scope. */
  void Complete() {
    PoolJob* job;
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      job = done_.head;
      done_ = JobList{};
    }
    if (!job) return;
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    napi_value resource;
    napi_get_reference_value(env_, resource_, &resource);
    napi_callback_scope callback_scope = nullptr;
    // Closing the callback scope runs the microtasks and nextTicks the resolutions queued.
    const bool scoped = napi_open_callback_scope(env_, resource, context_, &callback_scope) == napi_ok;
    while (job) {
      PoolJob* next = job->next_;
      {
        Napi::HandleScope inner(env);
        Napi::Value value = job->Build(env);
        if (env.IsExceptionPending()) {
          napi_value error = env.GetAndClearPendingException().Value();
          napi_reject_deferred(env_, job->deferred_, error);
        } else {
          napi_resolve_deferred(env_, job->deferred_, value.IsEmpty() ? env.Undefined() : value);
        }
      }
      delete job;
      if (--pending_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
      job = next;
    }
    if (scoped) napi_close_callback_scope(env_, callback_scope);
  }

  napi_env env_;
  napi_ref resource_;
  napi_async_context context_;
  uv_async_t async_;
  const unsigned max_threads_;
  const std::chrono::milliseconds idle_exit_;

  std::mutex mu_;
  JobList queue_;
  unsigned threads_ = 0;
  Waiter* top_ = nullptr;           // idle threads, the most recently idle on top
  Waiter* free_waiters_ = nullptr;  // left by threads that exited (linked through `below`)
  unsigned signaled_ = 0;           // wake-ups handed out and not yet taken by their thread
  bool stopping_ = false;

  std::mutex done_mu_;
  JobList done_;
  bool done_closed_ = false;

  size_t pending_ = 0;  // main thread only: submitted and not yet resolved
};

namespace {

void StopPool(void* arg) { static_cast<OpPool*>(arg)->Stop(); }

}  // namespace

bool InitPool(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "manila_native: no event loop for the worker pool").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object resource = Napi::Object::New(env);
  napi_ref resource_ref;
  napi_async_context context;
  if (napi_create_reference(env, resource, 1, &resource_ref) != napi_ok ||
      napi_async_init(env, resource, Napi::String::New(env, "manila_native"), &context) != napi_ok) {
    if (!env.IsExceptionPending()) Napi::Error::New(env, "manila_native: cannot set up the worker pool").ThrowAsJavaScriptException();
    return false;
  }
  OpPool* pool = new OpPool(env, loop, resource_ref, context);
  GetAddonData(env)->pool = pool;
  napi_add_env_cleanup_hook(env, StopPool, pool);
  return true;
}

Napi::Value SubmitJob(Napi::Env env, PoolJob* job) { return GetAddonData(env)->pool->Submit(env, job); }

Napi::Value PoolStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpPool* pool = GetAddonData(env)->pool;
  Napi::Object o = Napi::Object::New(env);
  Put(o, "threads", Napi::Number::New(env, pool->threads()));
  Put(o, "maxThreads", Napi::Number::New(env, pool->max_threads()));
  return o;
}

}  // namespace manila
