// Data augmentation for training batches: random horizontal flips and random crops.
//
// Each image's choices come from a generator keyed by the seed, the step and the image's place in
// the batch, so a resumed run augments exactly as the uninterrupted run did. A crop shifts the
// image by up to `kCropPad` pixels each way and fills what it uncovers with zeros (a padded random
// crop, as CIFAR and Fashion-MNIST recipes use).
#pragma once

#include <cstdint>
#include <string_view>

#include "support/error.h"

namespace vitc::train {

struct Augment {
  bool flip = false, crop = false;
};
constexpr int64_t kCropPad = 4;

// "none", "flip", "crop" or "crop-flip".
Expected<Augment> parseAugment(std::string_view word);

// Augments `batch` NCHW images of `channels` x `height` x `width` in place.
void augmentBatch(const Augment &a, float *images, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, uint64_t seed, int64_t step);

} // namespace vitc::train
