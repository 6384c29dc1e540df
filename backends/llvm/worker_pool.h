// Threads that split one kernel call's work items between them (intra-op parallelism).
//
// Every kernel takes a range [begin, end) of work items (row and column blocks of a matmul, heads
// of an attention, rows of the rest), so a call splits into parts: the threads, the calling one
// first, take parts of a few items in turn from a shared counter until none are left, and the
// caller waits for the others. A thread that is late (woken late, or slowed by its neighbours on
// a shared machine) takes fewer parts instead of holding up the call. In a quiet run a call of
// as many items as threads (a matmul split by rows) still gives item 0 to the caller and item 1
// to the first worker, as a fixed split did. A
// forward pass is hundreds of calls of tens of microseconds each, about what waking a sleeping
// thread costs, so workers (and the caller, waiting for them) spin for a while before they sleep:
// during a pass they never do.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vitc::llvmbe {

class WorkerPool {
public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool &) = delete;
  WorkerPool &operator=(const WorkerPool &) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(thread, begin, end) on the parts of [0, work); returns when every part is done.
  void run(int64_t work, const std::function<void(int, int64_t, int64_t)> &fn);

private:
  void loop(int thread);
  // Takes parts of the current call and runs them on `thread` until none are left.
  void drain(int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_; // guards job_ and work_, and the sleeping on the condition variables
  std::condition_variable wake_, done_;
  const std::function<void(int, int64_t, int64_t)> *job_ = nullptr; // read only during its call
  int64_t work_ = 0, grain_ = 1;        // the current call's items, and how many a part has
  std::atomic<int64_t> next_{0};        // the first item no thread has taken yet
  std::atomic<uint64_t> generation_{0}; // one more for every call
  std::atomic<int> pending_{0};         // workers still on the current call
  std::atomic<bool> stop_{false};
};

} // namespace vitc::llvmbe
