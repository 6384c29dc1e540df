// Checks against a model, normalization, one-hot labels, and Fashion-MNIST as Debian ships it.
#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/train/train_test_util.h"
#include "train/dataset.h"

namespace vitc::train {
namespace {

using namespace testing_util;

// `count` images of channels×height×width whose pixels are 0, 1, 2, ... and labels 0, 1, 2, ...
Dataset counting(int64_t count, int64_t channels = 1, int64_t height = 2, int64_t width = 2) {
  Dataset d;
  d.source = "data/x.npz";
  d.count = count, d.channels = channels, d.height = height, d.width = width;
  for (int64_t i = 0; i < count * channels * height * width; ++i)
    d.images.push_back(static_cast<float>(i));
  for (int64_t i = 0; i < count; ++i)
    d.labels.push_back(static_cast<int32_t>(i));
  return d;
}

TEST(Dataset, ClassesIsOnePastTheLargestLabel) {
  Dataset d;
  EXPECT_EQ(d.classes(), 0);
  d.labels = {3, 0, 7, 2};
  EXPECT_EQ(d.classes(), 8);
}

TEST(Dataset, CheckAgainstTheModel) {
  Dataset d = counting(4);
  EXPECT_TRUE(checkDataset(d, 1, 2, 2, 4));
  EXPECT_EQ(checkDataset(d, 3, 32, 32, 10).error().str(),
            "data/x.npz: error: images are 1x2x2 but the model takes 3x32x32");
  EXPECT_EQ(checkDataset(d, 1, 2, 2, 3).error().str(),
            "data/x.npz: error: label 3 of image 3 is out of range for a model with 3 classes");
  d.labels[1] = -2;
  EXPECT_EQ(checkDataset(d, 1, 2, 2, 4).error().str(),
            "data/x.npz: error: label -2 of image 1 is out of range for a model with 4 classes");
}

TEST(Dataset, CheckBatchSize) {
  Dataset d = counting(4);
  EXPECT_TRUE(checkBatchSize(d, 4));
  EXPECT_TRUE(checkBatchSize(d, 1));
  EXPECT_EQ(checkBatchSize(d, 5).error().str(),
            "data/x.npz: error: a batch of 5 images is larger than the 4 images of the data");
  EXPECT_EQ(checkBatchSize(d, 0).error().str(),
            "data/x.npz: error: the batch size must be positive, not 0");
}

TEST(Dataset, NormalizePerChannelAndForAll) {
  // Two images of two channels of 2x2 pixels: 0..15.
  Dataset d = counting(2, 2);
  normalize(d, {1, 2}, {2, 4});
  std::vector<float> want;
  for (int i = 0; i < 16; ++i) {
    int channel = (i / 4) % 2;
    want.push_back((static_cast<float>(i) - (channel ? 2.0f : 1.0f)) / (channel ? 4.0f : 2.0f));
  }
  EXPECT_EQ(d.images, want);
  Dataset e = counting(2, 2);
  normalize(e, {0.5f}, {0.25f});
  for (size_t i = 0; i < 16; ++i)
    EXPECT_EQ(e.images[i], (static_cast<float>(i) - 0.5f) / 0.25f);
}

TEST(Dataset, OneHotWithAndWithoutSmoothing) {
  int32_t labels[] = {2, 0};
  std::vector<float> out(8, -1);
  oneHot(labels, 2, 4, 0, out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 0, 1, 0, 1, 0, 0, 0}));
  // big_vision: onehot * (1 - s) + s / classes.
  oneHot(labels, 2, 4, 0.1f, out.data());
  float off = 0.1f / 4, on = 0.9f + off;
  EXPECT_EQ(out, (std::vector<float>{off, off, on, off, on, off, off, off}));
  float sum = 0;
  for (int i = 0; i < 4; ++i)
    sum += out[static_cast<size_t>(i)];
  EXPECT_FLOAT_EQ(sum, 1.0f);
}

// Debian's dataset-fashion-mnist package (scripts/install-deps.sh installs it): the data set the
// Fashion-MNIST example trains on.
TEST(Dataset, FashionMnistFromDebian) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir))
    GTEST_SKIP() << dir << " is absent (Debian package dataset-fashion-mnist)";
  auto start = std::chrono::steady_clock::now();
  auto splits = loadDataset(dir);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(splits) << splits.error().str();
  // Reported, not checked (tests check results, not timings): 0.3 to 0.7 s on two busy cores.
  std::printf("loaded Fashion-MNIST in %.3f s\n", seconds);
  const Dataset &train = splits->train;
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ((std::vector<int64_t>{train.channels, train.height, train.width}),
            (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(train.images.size(), 60000u * 28 * 28);
  EXPECT_EQ(train.classes(), 10);
  EXPECT_TRUE(checkDataset(train, 1, 28, 28, 10));
  ASSERT_TRUE(splits->test);
  EXPECT_EQ(splits->test->count, 10000);
  EXPECT_EQ(splits->test->classes(), 10);
  EXPECT_TRUE(checkDataset(*splits->test, 1, 28, 28, 10));
  // Fashion-MNIST is balanced: 6000 training and 1000 test images of each class.
  std::vector<int> perClass(10);
  for (int32_t l : train.labels)
    ++perClass[static_cast<size_t>(l)];
  EXPECT_EQ(perClass, std::vector<int>(10, 6000));
  for (float x : train.images)
    ASSERT_TRUE(x >= 0 && x <= 1) << x;
}

} // namespace
} // namespace vitc::train
