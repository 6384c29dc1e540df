#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "backends/llvm/worker_pool.h"

using namespace vitc;

TEST(WorkerPool, RunsEveryItemOnceOnAnyNumberOfThreads) {
  for (int threads : {1, 2, 3, 5}) {
    llvmbe::WorkerPool pool(threads);
    for (int64_t work : {0, 1, 2, 7, 64, 1001}) {
      std::vector<std::atomic<int>> runs(static_cast<size_t>(work));
      pool.run(work, [&](int thread, int64_t begin, int64_t end) {
        EXPECT_GE(thread, 0);
        EXPECT_LT(thread, threads);
        EXPECT_LT(begin, end);
        for (int64_t i = begin; i < end; ++i)
          runs[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < work; ++i)
        EXPECT_EQ(runs[static_cast<size_t>(i)].load(), 1) << threads << " threads, item " << i;
    }
  }
}

TEST(WorkerPool, ASlowThreadLeavesItsShareToTheOthers) {
  // Thread 1 stalls on its first part; the caller takes the rest instead of waiting for it, as a
  // fixed split (half each) would have had to.
  llvmbe::WorkerPool pool(2);
  std::atomic<int64_t> byCaller{0}, bySlow{0};
  pool.run(16, [&](int thread, int64_t begin, int64_t end) {
    if (thread == 1) {
      bySlow += end - begin;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } else {
      byCaller += end - begin;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  EXPECT_EQ(byCaller + bySlow, 16);
  EXPECT_GT(byCaller.load(), 8);
}
