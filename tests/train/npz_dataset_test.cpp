// .npz data sets: uint8 N×H×W and N×H×W×C images, float32 N×C×H×W images, labels of any integer
// dtype, the test split, and the arrays that are refused.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "tests/train/train_test_util.h"
#include "train/dataset.h"

namespace vitc::train {
namespace {

using namespace testing_util;

struct NpzDataTest : ::testing::Test {
  std::string dir = testDir();
  std::string path = dir + "/data.npz";
  // Two labels as little-endian int64, the dtype numpy gives np.array([...]) of Python ints.
  std::string labels = npyOf({2}, "<i8", le<int64_t>({3, 1}));
};

TEST_F(NpzDataTest, Uint8GrayImagesAreScaled) {
  writeNpzOf(path, {{"images", npyOf({2, 2, 3}, "|u1", countingBytes(12))}, {"labels", labels}});
  auto splits = loadDataset(path);
  ASSERT_TRUE(splits) << splits.error().str();
  const Dataset &d = splits->train;
  EXPECT_EQ(d.source, path);
  EXPECT_EQ((std::vector<int64_t>{d.count, d.channels, d.height, d.width}),
            (std::vector<int64_t>{2, 1, 2, 3}));
  for (size_t i = 0; i < 12; ++i)
    EXPECT_EQ(d.images[i], static_cast<float>(i) / 255.0f);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(d.classes(), 4);
  EXPECT_FALSE(splits->test);
}

TEST_F(NpzDataTest, Uint8ChannelsLastImagesAreTransposedToNchw) {
  // Two 2x2 images of 3 channels; pixel (n, y, x, c) holds n*12 + (y*2 + x)*3 + c.
  writeNpzOf(path, {{"images", npyOf({2, 2, 2, 3}, "|u1", countingBytes(24))}, {"labels", labels}});
  auto splits = loadDataset(path);
  ASSERT_TRUE(splits) << splits.error().str();
  const Dataset &d = splits->train;
  EXPECT_EQ((std::vector<int64_t>{d.count, d.channels, d.height, d.width}),
            (std::vector<int64_t>{2, 3, 2, 2}));
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 4; ++p)
        EXPECT_EQ(d.images[static_cast<size_t>(n * 12 + c * 4 + p)],
                  static_cast<float>(n * 12 + p * 3 + c) / 255.0f)
            << n << " " << c << " " << p;
}

TEST_F(NpzDataTest, Float32NchwImagesAreTakenAsGivenWithATestSplit) {
  std::vector<float> pixels = {-1.5f, 0, 0.25f, 2, 7, 8, 9, 10};
  std::string bytes(reinterpret_cast<const char *>(pixels.data()), pixels.size() * 4);
  // Labels of other integer dtypes, and float32 labels that hold integers.
  writeNpzOf(path, {{"images", npyOf({2, 2, 1, 2}, "<f4", bytes)},
                    {"labels", npyOf({2}, ">u2", be<uint16_t>({9, 0}))},
                    {"test_images", npyOf({1, 2, 1, 2}, "<f4", bytes.substr(0, 16))},
                    {"test_labels", npyOf({1}, "<f4", le<float>({4}))}});
  auto splits = loadDataset(path);
  ASSERT_TRUE(splits) << splits.error().str();
  EXPECT_EQ(splits->train.images, pixels);
  EXPECT_EQ(
      (std::vector<int64_t>{splits->train.channels, splits->train.height, splits->train.width}),
      (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(splits->train.labels, (std::vector<int32_t>{9, 0}));
  ASSERT_TRUE(splits->test);
  EXPECT_EQ(splits->test->source, path + ":test_images.npy");
  EXPECT_EQ(splits->test->images, std::vector<float>(pixels.begin(), pixels.begin() + 4));
  EXPECT_EQ(splits->test->labels, (std::vector<int32_t>{4}));
}

TEST_F(NpzDataTest, MissingFileAndArrays) {
  EXPECT_TRUE(
      failsWith(loadDataset(dir + "/none.npz"), dir + "/none.npz", "no such file or folder"));
  writeBytes(path, "this is not a zip archive, but long enough");
  EXPECT_TRUE(failsWith(loadDataset(path), path, "cannot read the zip archive"));
  writeNpzOf(path, {{"x", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), path, "no array named 'images' (the archive holds: x)"));
  writeNpzOf(path, {{"images", npyOf({2, 2, 3}, "|u1", countingBytes(12))}});
  EXPECT_TRUE(failsWith(loadDataset(path), path, "no array named 'labels'"));
  writeNpzOf(path, {{"images", npyOf({2, 2, 3}, "|u1", countingBytes(12))},
                    {"labels", labels},
                    {"test_images", npyOf({2, 2, 3}, "|u1", countingBytes(12))}});
  EXPECT_TRUE(failsWith(loadDataset(path), path,
                        "the archive has 'test_images' but no 'test_labels': a test split needs "
                        "both"));
}

TEST_F(NpzDataTest, ImagesOfWrongDtypeOrRank) {
  const std::string images = path + ":images.npy";
  writeNpzOf(path,
             {{"images", npyOf({2, 2, 3}, "<i4", std::string(48, '\0'))}, {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images, "images of dtype '<i4' are not supported"));
  writeNpzOf(path, {{"images", npyOf({2, 6}, "|u1", countingBytes(12))}, {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images,
                        "uint8 images have shape [2, 6]; they must be N×H×W or N×H×W×C"));
  writeNpzOf(path,
             {{"images", npyOf({2, 2, 3}, "<f4", std::string(48, '\0'))}, {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images,
                        "float32 images have shape [2, 2, 3]; they must be N×C×H×W"));
  writeNpzOf(path, {{"images", npyOf({2, 0, 3}, "|u1", "")}, {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images, "images of shape [2, 0, 3] have no pixels"));
  std::string fortran = npyOf({2, 2, 3}, "|u1", countingBytes(12));
  fortran.replace(fortran.find("False"), 5, "True ");
  writeNpzOf(path, {{"images", fortran}, {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images, "the images are stored in Fortran order"));
  float nan = std::numeric_limits<float>::quiet_NaN();
  writeNpzOf(path, {{"images", npyOf({2, 1, 1, 2}, "<f4", le<float>({0, 1, 2, nan}))},
                    {"labels", labels}});
  EXPECT_TRUE(failsWith(loadDataset(path), images, "image 1 holds nan at element 1"));
}

TEST_F(NpzDataTest, BadLabels) {
  const std::string images = npyOf({2, 2, 3}, "|u1", countingBytes(12));
  const std::string where = path + ":labels.npy";
  writeNpzOf(path, {{"images", images}, {"labels", npyOf({2}, "<i4", le<int32_t>({0, -1}))}});
  EXPECT_TRUE(failsWith(loadDataset(path), where, "label -1 of image 1 is negative"));
  writeNpzOf(path, {{"images", images},
                    {"labels", npyOf({2}, "<u8", le<uint64_t>({1, uint64_t(1) << 40}))}});
  EXPECT_TRUE(failsWith(loadDataset(path), where,
                        "label 1099511627776 of image 1 is too large for a class index"));
  writeNpzOf(path, {{"images", images}, {"labels", npyOf({2}, "<f4", le<float>({2.5f, 1}))}});
  EXPECT_TRUE(failsWith(loadDataset(path), where, "label 2.5 of image 0 is not an integer"));
  writeNpzOf(path, {{"images", images}, {"labels", npyOf({2, 1}, "<i8", le<int64_t>({0, 1}))}});
  EXPECT_TRUE(failsWith(loadDataset(path), where,
                        "labels have shape [2, 1]; they must be a vector of one label per image"));
  writeNpzOf(path, {{"images", images}, {"labels", npyOf({3}, "<i8", le<int64_t>({0, 1, 2}))}});
  EXPECT_TRUE(
      failsWith(loadDataset(path), path, "'labels' holds 3 labels for the 2 images of 'images'"));
  writeNpzOf(path, {{"images", images}, {"labels", npyOf({2}, "<c8", std::string(16, '\0'))}});
  EXPECT_TRUE(failsWith(loadDataset(path), where, "unsupported dtype '<c8'"));
  writeNpzOf(path, {{"images", npyOf({0, 2, 3}, "|u1", "")}, {"labels", npyOf({0}, "<i8", "")}});
  EXPECT_TRUE(failsWith(loadDataset(path), path, "'images' holds no images"));
}

} // namespace
} // namespace vitc::train
