// The worker pool.
#include "backends/llvm/worker_pool.h"

#include <algorithm>
#include <chrono>
#include <immintrin.h>

namespace vitc::llvmbe {
namespace {

// How long a thread polls before it sleeps: longer than the gap between two kernel calls of a
// pass, short enough that an idle program gives its cores back at once.
constexpr std::chrono::microseconds kSpin{200};

// Polls `done` until it holds or kSpin has passed; returns whether it holds.
template <typename Done> bool spinUntil(Done done) {
  auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done())
      return true;
    _mm_pause();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until)
      return done();
  }
}

} // namespace

WorkerPool::WorkerPool(int threads) {
  for (int t = 1; t < threads; ++t)
    workers_.emplace_back([this, t] { loop(t); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &w : workers_)
    w.join();
}

void WorkerPool::run(int64_t work, const std::function<void(int, int64_t, int64_t)> &fn) {
  int n = size();
  if (work <= 0)
    return;
  if (n == 1 || work == 1) {
    fn(0, 0, work);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    work_ = work;
    // About four parts a thread: enough to even out a late thread, few enough that a kernel's
    // per-call set-up (a matmul packing its B) is not repeated much.
    grain_ = std::max<int64_t>(1, work / (4 * n));
    next_.store(0, std::memory_order_relaxed);
    pending_.store(n - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all(); // no system call when every worker is still spinning
  drain(0);
  auto finished = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spinUntil(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
}

void WorkerPool::drain(int thread) {
  // job_, work_ and grain_ were set before this call's generation was published, and stay until
  // every worker has reported the call done.
  for (;;) {
    int64_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
    if (begin >= work_)
      return;
    (*job_)(thread, begin, std::min(begin + grain_, work_));
  }
}

void WorkerPool::loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    auto called = [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; };
    spinUntil(called);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, called);
      if (stop_)
        return;
      seen = generation_.load(std::memory_order_relaxed);
    }
    drain(thread);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Under the lock, so that a caller between its check and its sleep cannot miss this.
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

} // namespace vitc::llvmbe
