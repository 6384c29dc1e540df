// BatchSampler: seeded permutations per epoch, resuming, full batches only, and file order.
#include <algorithm>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include "train/dataset.h"

namespace vitc::train {
namespace {

// `count` images of 1x1x2 whose pixels are (i, -i), labelled i % 7, so that an image tells
// which one it is.
Dataset numbered(int64_t count) {
  Dataset d;
  d.source = "numbered";
  d.count = count, d.channels = 1, d.height = 1, d.width = 2;
  for (int64_t i = 0; i < count; ++i) {
    d.images.push_back(static_cast<float>(i));
    d.images.push_back(-static_cast<float>(i));
    d.labels.push_back(static_cast<int32_t>(i % 7));
  }
  return d;
}

// The image indices of the next `batches` batches, checking that labels travel with images.
std::vector<int64_t> draw(BatchSampler &s, const Dataset &d, int64_t batch, int64_t batches) {
  std::vector<int64_t> seen;
  std::vector<float> images(static_cast<size_t>(batch * 2));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batches; ++b) {
    s.next(images.data(), labels.data());
    for (int64_t i = 0; i < batch; ++i) {
      auto index = static_cast<int64_t>(images[static_cast<size_t>(2 * i)]);
      EXPECT_EQ(images[static_cast<size_t>(2 * i + 1)], -static_cast<float>(index));
      EXPECT_EQ(labels[static_cast<size_t>(i)], d.labels[static_cast<size_t>(index)]);
      seen.push_back(index);
    }
  }
  return seen;
}

TEST(BatchSampler, SameSeedSameOrderOtherSeedOtherOrder) {
  Dataset d = numbered(100);
  BatchSampler a(d, 10, 42), b(d, 10, 42), c(d, 10, 43);
  std::vector<int64_t> fromA = draw(a, d, 10, 30), fromB = draw(b, d, 10, 30);
  EXPECT_EQ(fromA, fromB);
  EXPECT_NE(fromA, draw(c, d, 10, 30));
  // Each epoch has its own order.
  EXPECT_NE(std::vector<int64_t>(fromA.begin(), fromA.begin() + 100),
            std::vector<int64_t>(fromA.begin() + 100, fromA.begin() + 200));
}

TEST(BatchSampler, TheOrderFollowsTheStandardsGenerators) {
  // Orders computed by sampler_order.py, a model of std::seed_seq and std::mt19937_64 written from
  // the C++ standard's specification: the same on every platform. A change here changes every
  // run's batches, and so breaks resuming a checkpoint written before it.
  Dataset ten = numbered(10), twelve = numbered(12);
  EXPECT_EQ(BatchSampler(ten, 5, 0).epochOrder(0),
            (std::vector<int64_t>{8, 2, 3, 5, 1, 6, 9, 7, 0, 4}));
  EXPECT_EQ(BatchSampler(twelve, 5, 0xdeadbeefcafe).epochOrder(3),
            (std::vector<int64_t>{1, 0, 5, 11, 9, 7, 8, 10, 4, 2, 6, 3}));
}

TEST(BatchSampler, EveryEpochIsAPermutationAndThePartialBatchIsDropped) {
  Dataset d = numbered(103);
  BatchSampler s(d, 10, 7);
  EXPECT_EQ(s.batchesPerEpoch(), 10);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order = s.epochOrder(epoch);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(103);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << epoch;
    // The epoch's batches are the first 100 of its order; the last 3 images are not drawn.
    EXPECT_EQ(s.position().epoch, epoch);
    EXPECT_EQ(s.position().batch, 0);
    std::vector<int64_t> seen = draw(s, d, 10, 10);
    EXPECT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + 100)) << epoch;
    std::set<int64_t> distinct(seen.begin(), seen.end());
    EXPECT_EQ(distinct.size(), 100u);
  }
  EXPECT_EQ(s.position().epoch, 3);
}

TEST(BatchSampler, SeekReproducesTheUninterruptedRun) {
  Dataset d = numbered(50);
  BatchSampler whole(d, 8, 5);
  EXPECT_EQ(whole.batchesPerEpoch(), 6);
  std::vector<int64_t> all = draw(whole, d, 8, 20);
  // Resumed at epoch 1, batch 4 (step 10), in a new sampler as a resumed run would be.
  BatchSampler resumed(d, 8, 5);
  resumed.seek({1, 4});
  EXPECT_EQ(resumed.position().epoch, 1);
  EXPECT_EQ(resumed.position().batch, 4);
  EXPECT_EQ(draw(resumed, d, 8, 10), std::vector<int64_t>(all.begin() + 80, all.end()));
  // A global step counts on through the epochs.
  resumed.seek({0, 15});
  EXPECT_EQ(resumed.position().epoch, 2);
  EXPECT_EQ(resumed.position().batch, 3);
  EXPECT_EQ(draw(resumed, d, 8, 5), std::vector<int64_t>(all.begin() + 120, all.end()));
  // Seeking back reproduces too, after later epochs were drawn.
  resumed.seek({0, 0});
  EXPECT_EQ(draw(resumed, d, 8, 20), all);
}

TEST(BatchSampler, WithoutShufflingTheFileOrderIsKept) {
  Dataset d = numbered(25);
  BatchSampler s(d, 6, 99, /*shuffle=*/false);
  EXPECT_EQ(s.batchesPerEpoch(), 4);
  std::vector<int64_t> want;
  for (int epoch = 0; epoch < 2; ++epoch)
    for (int64_t i = 0; i < 24; ++i)
      want.push_back(i);
  EXPECT_EQ(draw(s, d, 6, 8), want);
}

TEST(BatchSampler, ABatchOfTheWholeData) {
  Dataset d = numbered(9);
  BatchSampler s(d, 9, 1);
  EXPECT_EQ(s.batchesPerEpoch(), 1);
  std::vector<int64_t> seen = draw(s, d, 9, 1);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(s.position().epoch, 1);
}

} // namespace
} // namespace vitc::train
