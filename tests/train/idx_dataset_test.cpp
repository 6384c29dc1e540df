// MNIST-format IDX folders: plain and gzip-compressed files, the test split, and every way the
// files can lie.
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/train/train_test_util.h"
#include "train/dataset.h"

namespace vitc::train {
namespace {

using namespace testing_util;
using std::string_literals::operator""s;

const std::string kImages = "/train-images-idx3-ubyte", kLabels = "/train-labels-idx1-ubyte";
const std::string kTestImages = "/t10k-images-idx3-ubyte", kTestLabels = "/t10k-labels-idx1-ubyte";

struct IdxTest : ::testing::Test {
  std::string dir = testDir();

  // Three 2x3 images whose pixels count 0..17, labelled 1, 0, 2.
  void writeTrain(const std::string &suffix = "") {
    std::string images = idxBytes({3, 2, 3}, countingBytes(18));
    std::string labels = idxBytes({3}, "\x01\x00\x02"s);
    writeBytes(dir + kImages + suffix, suffix == ".gz" ? gzipped(images) : images);
    writeBytes(dir + kLabels + suffix, suffix == ".gz" ? gzipped(labels) : labels);
  }
};

void expectTrainSplit(const Dataset &d, const std::string &source) {
  EXPECT_EQ(d.source, source);
  EXPECT_EQ(d.count, 3);
  EXPECT_EQ(d.channels, 1);
  EXPECT_EQ(d.height, 2);
  EXPECT_EQ(d.width, 3);
  ASSERT_EQ(d.images.size(), 18u);
  for (size_t i = 0; i < 18; ++i)
    EXPECT_EQ(d.images[i], static_cast<float>(i) / 255.0f) << i;
  EXPECT_EQ(d.labels, (std::vector<int32_t>{1, 0, 2}));
  EXPECT_EQ(d.classes(), 3);
}

TEST_F(IdxTest, PlainFilesLoad) {
  writeTrain();
  auto splits = loadDataset(dir);
  ASSERT_TRUE(splits) << splits.error().str();
  expectTrainSplit(splits->train, dir);
  EXPECT_FALSE(splits->test);
}

TEST_F(IdxTest, GzipFilesAndTheTestSplitLoad) {
  writeTrain(".gz");
  writeBytes(dir + kTestImages + ".gz", gzipped(idxBytes({2, 2, 3}, std::string(12, '\xff'))));
  writeBytes(dir + kTestLabels + ".gz", gzipped(idxBytes({2}, "\x07\x00"s)));
  auto splits = loadDataset(dir);
  ASSERT_TRUE(splits) << splits.error().str();
  expectTrainSplit(splits->train, dir);
  ASSERT_TRUE(splits->test);
  EXPECT_EQ(splits->test->source, dir + kTestImages + ".gz");
  EXPECT_EQ(splits->test->count, 2);
  EXPECT_EQ(splits->test->images, std::vector<float>(12, 1.0f));
  EXPECT_EQ(splits->test->labels, (std::vector<int32_t>{7, 0}));
}

TEST_F(IdxTest, CompressionIsToldByContentAndConcatenatedMembersReadAsOne) {
  // gunzip reads concatenated members as one stream, and so does vitc; trailing zeros (tape
  // padding) are ignored as gunzip ignores them.
  std::string images = idxBytes({3, 2, 3}, countingBytes(18));
  writeBytes(dir + kImages + ".gz",
             gzipped(images.substr(0, 10)) + gzipped(images.substr(10)) + std::string(8, '\0'));
  // A compressed file without the .gz suffix still reads.
  writeBytes(dir + kLabels, gzipped(idxBytes({3}, "\x01\x00\x02"s)));
  auto splits = loadDataset(dir);
  ASSERT_TRUE(splits) << splits.error().str();
  expectTrainSplit(splits->train, dir);
}

TEST_F(IdxTest, MissingFolderAndFiles) {
  EXPECT_TRUE(failsWith(loadDataset(dir + "/nowhere"), dir + "/nowhere", "no such file or folder"));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir,
                        "no train-images-idx3-ubyte or train-images-idx3-ubyte.gz in this folder"));
  writeTrain();
  std::filesystem::remove(dir + kLabels);
  EXPECT_TRUE(failsWith(loadDataset(dir), dir, "no train-labels-idx1-ubyte or"));
  writeTrain();
  writeBytes(dir + kTestImages, idxBytes({1, 2, 3}, std::string(6, '\0')));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kTestImages,
                        "the test split needs t10k-labels-idx1-ubyte[.gz] beside this file"));
}

TEST_F(IdxTest, TruncatedHeader) {
  writeTrain();
  writeBytes(dir + kImages, idxBytes({3, 2, 3}, "").substr(0, 9));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "the data ends inside the IDX header, after 9 of its 16 bytes"));
  writeBytes(dir + kImages, "\0\0"s);
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "the data is 2 bytes, too short for an IDX header"));
}

TEST_F(IdxTest, WrongMagic) {
  writeTrain();
  // The files swapped: each is the other kind.
  writeBytes(dir + kImages, idxBytes({3}, "\x01\x00\x02"s));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "not an IDX file of images: it starts with 0x00000801, not 0x00000803 "
                        "(unsigned bytes in 3 dimensions) (this is a file of labels)"));
  writeTrain();
  writeBytes(dir + kLabels, "PK\x03\x04 not idx at all"s);
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kLabels,
                        "not an IDX file of labels: it starts with 0x504b0304, not 0x00000801"));
}

TEST_F(IdxTest, SizesThatDoNotMatchThePlainFile) {
  writeTrain();
  writeBytes(dir + kImages, idxBytes({4, 2, 3}, countingBytes(18)));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "the header's sizes 4x2x3 need 24 bytes after the header, but the file "
                        "holds 18"));
  writeBytes(dir + kImages, idxBytes({3, 2, 3}, countingBytes(19)));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "need 18 bytes after the header, but the file holds 19"));
  // Sizes whose product overflows 64 bits.
  writeBytes(dir + kImages, idxBytes({0xffffffff, 0xffffffff, 0xffffffff}, countingBytes(18)));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kImages,
                        "the header's sizes 4294967295x4294967295x4294967295 need"));
}

TEST_F(IdxTest, SizesThatDoNotMatchTheGzipData) {
  writeTrain(".gz");
  std::string images = dir + kImages + ".gz";
  writeBytes(images, gzipped(idxBytes({4, 2, 3}, countingBytes(18))));
  writeBytes(dir + kLabels + ".gz", gzipped(idxBytes({4}, "\x01\x00\x02\x03"s)));
  EXPECT_TRUE(
      failsWith(loadDataset(dir), images,
                "the data ends after 18 of the 24 bytes that the header's sizes 4x2x3 need"));
  writeTrain(".gz");
  writeBytes(images, gzipped(idxBytes({3, 2, 3}, countingBytes(19))));
  EXPECT_TRUE(
      failsWith(loadDataset(dir), images,
                "the data holds more than the 18 bytes that the header's sizes 3x2x3 need"));
  // A small file that claims gigabytes is refused before anything is allocated.
  writeBytes(images, gzipped(idxBytes({60000, 2800, 2800}, countingBytes(18))));
  EXPECT_TRUE(failsWith(loadDataset(dir), images,
                        "the header's sizes 60000x2800x2800 need 470400000000 bytes, more than a "
                        "gzip file of"));
}

TEST_F(IdxTest, BrokenGzip) {
  writeTrain(".gz");
  std::string images = dir + kImages + ".gz";
  std::string good = gzipped(idxBytes({3, 2, 3}, countingBytes(18)));
  writeBytes(images, good.substr(0, good.size() - 12));
  EXPECT_TRUE(failsWith(loadDataset(dir), images, "the gzip data is truncated"));
  // The trailer's CRC no longer matches.
  std::string corrupt = good;
  corrupt[corrupt.size() - 6] ^= 0x55;
  writeBytes(images, corrupt);
  EXPECT_TRUE(failsWith(loadDataset(dir), images,
                        "cannot inflate the gzip data after 34 bytes: incorrect data check"));
  // A block type that does not exist.
  corrupt = good;
  corrupt[10] = '\xff';
  writeBytes(images, corrupt);
  EXPECT_TRUE(failsWith(loadDataset(dir), images, "cannot inflate the gzip data after 0 bytes"));
}

TEST_F(IdxTest, LabelsAndImagesOfDifferentCounts) {
  writeTrain();
  writeBytes(dir + kLabels, idxBytes({2}, "\x01\x00"s));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir,
                        "train-labels-idx1-ubyte holds 2 labels for the 3 images of "
                        "train-images-idx3-ubyte"));
}

TEST_F(IdxTest, EmptyDataAndImagesWithoutPixels) {
  writeBytes(dir + kImages, idxBytes({0, 28, 28}, ""));
  writeBytes(dir + kLabels, idxBytes({0}, ""));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir,
                        "train-images-idx3-ubyte holds no images: a data set needs at least one"));
  writeBytes(dir + kImages, idxBytes({2, 0, 28}, ""));
  writeBytes(dir + kLabels, idxBytes({2}, "\x01\x01"s));
  EXPECT_TRUE(
      failsWith(loadDataset(dir), dir + kImages, "the images are 0x28 pixels: they have none"));
}

TEST_F(IdxTest, TestImagesOfAnotherSize) {
  writeTrain();
  writeBytes(dir + kTestImages, idxBytes({1, 3, 2}, std::string(6, '\0')));
  writeBytes(dir + kTestLabels, idxBytes({1}, "\x00"s));
  EXPECT_TRUE(failsWith(loadDataset(dir), dir + kTestImages,
                        "the test images are 1x3x2 but the training images are 1x2x3"));
}

} // namespace
} // namespace vitc::train
