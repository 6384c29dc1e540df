// The worker pool.
#include "backends/llvm/worker_pool.h"

namespace vitc::llvmbe {

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
  if (n == 1 || work <= 1) {
    fn(0, 0, work);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    work_ = work;
    pending_ = n - 1;
    ++generation_;
  }
  wake_.notify_all();
  fn(0, 0, work / n);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void WorkerPool::loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int, int64_t, int64_t)> *job;
    int64_t work;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_)
        return;
      seen = generation_;
      job = job_;
      work = work_;
    }
    int n = size();
    int64_t begin = work * thread / n, end = work * (thread + 1) / n;
    if (begin < end)
      (*job)(thread, begin, end);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--pending_ == 0)
      done_.notify_one();
  }
}

} // namespace vitc::llvmbe
