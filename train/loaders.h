// The format-specific halves of `loadDataset` (dataset.h), and what they share.
//
// Each loader finds its splits and decodes images and labels; the checks that every format needs
// (some images, as many labels as images, pixels scaled the same way) are defined once, in
// dataset.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "support/error.h"
#include "train/dataset.h"

namespace vitc::train {

// A folder of MNIST-format IDX files (idx_dataset.cpp).
Expected<DataSplits> loadIdxFolder(const std::string &dir);
// A .npz archive of arrays (npz_dataset.cpp).
Expected<DataSplits> loadNpzDataset(const std::string &path);

// Checks that `images` (named `imagesName` in messages) holds some images and `labels` one for
// each; errors are located at `loc`.
Status checkImagesAndLabels(const Loc &loc, int64_t images, const std::string &imagesName,
                            int64_t labels, const std::string &labelsName);

// Sizes d.images for d.count images of d.channels×d.height×d.width, or says that the memory cannot
// be had. Asks the kernel for huge pages: first touching the 188 MB of Fashion-MNIST's floats page
// by page costs half a second on some virtual machines, and 2 MiB pages make 512 times fewer
// faults.
Status allocateImages(Dataset &d, const Loc &loc);

// Pixels stored as bytes, in [0, 255], as floats in [0, 1]: x / 255, rounded as numpy's float32
// division rounds it.
inline float scaledPixel(uint8_t byte) { return static_cast<float>(byte) / 255.0f; }

} // namespace vitc::train
