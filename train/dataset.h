// Training data: images and integer labels loaded from a .npz or a folder of MNIST-format IDX
// files, checked against a model, and normalized.
//
// A dataset holds every image in memory as float32 NCHW in [0, 1] (uint8 pixels scaled by 1/255,
// float32 pixels taken as given), which for the data sets vitc trains on (Fashion-MNIST: 188 MB
// as floats) is simpler and faster than streaming. Bad input (a missing file, a lying header, a
// negative label, images and labels of different counts) is a one-line Error naming the file.
// Batches are drawn by `BatchSampler` (batch_sampler.h, included here so that one header brings
// the whole data API).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "support/error.h"
#include "train/batch_sampler.h"

namespace vitc::train {

// Images in [0,1] (uint8 scaled by 1/255; float32 taken as given), NCHW, with integer labels.
struct Dataset {
  std::string source; // the file or folder it came from, for messages
  int64_t count = 0, channels = 0, height = 0, width = 0;
  std::vector<float> images;   // count*channels*height*width, NCHW
  std::vector<int32_t> labels; // count
  int64_t classes() const;     // 1 + the largest label (0 if empty)
  int64_t imageSize() const { return channels * height * width; }
};

struct DataSplits {
  Dataset train;
  std::optional<Dataset> test;
};

// `path`: a .npz with `images` (float32 N×C×H×W, or uint8 N×H×W or N×H×W×C) and `labels` (any
// integer dtype, or float32 holding integers), and optionally `test_images`/`test_labels`; or a
// folder of MNIST-format IDX files: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], and
// optionally t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] (the test split). Both
// splits have the same image size.
Expected<DataSplits> loadDataset(const std::string &path);

// Checks a dataset against what the model takes: channels, height and width equal, every label in
// [0, classes). Errors name the source and the problem, e.g.
// "data/x.npz: error: label 12 of image 345 is out of range for a model with 10 classes".
Status checkDataset(const Dataset &d, int64_t channels, int64_t height, int64_t width,
                    int64_t classes);

// Checks that `d` fills at least one batch of `batch` images (BatchSampler drops a last partial
// batch, so a smaller dataset would give no batch at all).
Status checkBatchSize(const Dataset &d, int64_t batch);

// Per-channel normalization x = (x - mean[c]) / std[c]; a mean or std of size 1 applies to every
// channel. Sizes other than 1 and `channels`, and a std of zero, are bugs in the caller.
void normalize(Dataset &d, const std::vector<float> &mean, const std::vector<float> &std);

// One-hot labels with optional label smoothing (big_vision: y = onehot*(1-s) + s/classes),
// written to out[batch*classes]. Every label is in [0, classes).
void oneHot(const int32_t *labels, int64_t batch, int64_t classes, float smoothing, float *out);

} // namespace vitc::train
