// Datasets: choosing the loader, the checks every format shares, checks against a model,
// normalization and one-hot labels.
#include "train/dataset.h"

#include <algorithm>
#include <cassert>
#include <filesystem>
#include <new>

#include <sys/mman.h>

#include "support/tensor.h"
#include "train/loaders.h"

namespace vitc::train {

int64_t Dataset::classes() const {
  if (labels.empty())
    return 0;
  return int64_t(1) + *std::max_element(labels.begin(), labels.end());
}

Status checkImagesAndLabels(const Loc &loc, int64_t images, const std::string &imagesName,
                            int64_t labels, const std::string &labelsName) {
  if (images == 0)
    return makeError(loc, "{} holds no images: a data set needs at least one", imagesName);
  if (labels != images)
    return makeError(loc, "{} holds {} labels for the {} images of {}", labelsName, labels, images,
                     imagesName);
  return Status::ok();
}

Status allocateImages(Dataset &d, const Loc &loc) {
  auto n = static_cast<size_t>(d.count * d.imageSize());
  try {
    d.images.reserve(n);
  } catch (const std::bad_alloc &) {
    return makeError(loc, "the images need {} as floats, more memory than vitc could get",
                     byteSize(static_cast<int64_t>(n * sizeof(float))));
  }
  // Only the whole pages inside the buffer are advised; the advice is a hint, and failing to take
  // it (on a kernel without transparent huge pages) changes nothing but the speed.
  constexpr uintptr_t kPage = 4096;
  auto begin = (reinterpret_cast<uintptr_t>(d.images.data()) + kPage - 1) & ~(kPage - 1);
  auto end = reinterpret_cast<uintptr_t>(d.images.data() + n) & ~(kPage - 1);
  if (end > begin)
    madvise(reinterpret_cast<void *>(begin), end - begin, MADV_HUGEPAGE);
  d.images.resize(n);
  return Status::ok();
}

Expected<DataSplits> loadDataset(const std::string &path) {
  Loc loc = Loc::inFile(path);
  std::error_code error;
  auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status))
    return makeError(loc, "no such file or folder");
  DataSplits splits;
  if (std::filesystem::is_directory(status)) {
    VITC_ASSIGN(splits, loadIdxFolder(path));
  } else {
    VITC_ASSIGN(splits, loadNpzDataset(path));
  }
  // A model takes one image size, so both splits must have the same one.
  const Dataset &train = splits.train;
  if (splits.test && (splits.test->channels != train.channels ||
                      splits.test->height != train.height || splits.test->width != train.width))
    return makeError(Loc::inFile(splits.test->source),
                     "the test images are {}x{}x{} but the training images are {}x{}x{}",
                     splits.test->channels, splits.test->height, splits.test->width, train.channels,
                     train.height, train.width);
  return splits;
}

Status checkDataset(const Dataset &d, int64_t channels, int64_t height, int64_t width,
                    int64_t classes) {
  Loc loc = Loc::inFile(d.source);
  if (d.channels != channels || d.height != height || d.width != width)
    return makeError(loc, "images are {}x{}x{} but the model takes {}x{}x{}", d.channels, d.height,
                     d.width, channels, height, width);
  for (size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] < 0 || d.labels[i] >= classes)
      return makeError(loc, "label {} of image {} is out of range for a model with {} classes",
                       d.labels[i], i, classes);
  return Status::ok();
}

Status checkBatchSize(const Dataset &d, int64_t batch) {
  Loc loc = Loc::inFile(d.source);
  if (batch <= 0)
    return makeError(loc, "the batch size must be positive, not {}", batch);
  if (batch > d.count)
    return makeError(loc, "a batch of {} images is larger than the {} images of the data", batch,
                     d.count);
  return Status::ok();
}

void normalize(Dataset &d, const std::vector<float> &mean, const std::vector<float> &std) {
  auto channels = static_cast<size_t>(d.channels);
  assert((mean.size() == 1 || mean.size() == channels) && "normalize: one mean or one per channel");
  assert((std.size() == 1 || std.size() == channels) && "normalize: one std or one per channel");
  auto plane = static_cast<size_t>(d.height * d.width);
  float *x = d.images.data();
  for (int64_t n = 0; n < d.count; ++n) {
    for (size_t c = 0; c < channels; ++c, x += plane) {
      float m = mean[mean.size() == 1 ? 0 : c];
      float s = std[std.size() == 1 ? 0 : c];
      assert(s != 0 && "normalize: a std of zero");
      for (size_t i = 0; i < plane; ++i)
        x[i] = (x[i] - m) / s;
    }
  }
}

void oneHot(const int32_t *labels, int64_t batch, int64_t classes, float smoothing, float *out) {
  float off = smoothing / static_cast<float>(classes);
  float on = 1.0f - smoothing + off;
  std::fill(out, out + batch * classes, off);
  for (int64_t i = 0; i < batch; ++i) {
    assert(labels[i] >= 0 && labels[i] < classes && "oneHot: a label out of range");
    out[i * classes + labels[i]] = on;
  }
}

} // namespace vitc::train
