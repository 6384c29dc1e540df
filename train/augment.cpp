// Data augmentation.
#include "train/augment.h"

#include <algorithm>
#include <random>
#include <vector>

namespace vitc::train {

Expected<Augment> parseAugment(std::string_view word) {
  if (word == "none")
    return Augment{};
  if (word == "flip")
    return Augment{true, false};
  if (word == "crop")
    return Augment{false, true};
  if (word == "crop-flip")
    return Augment{true, true};
  return Error(fmt::format("unknown --augment={} (expected none, flip, crop or crop-flip)", word));
}

void augmentBatch(const Augment &a, float *images, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, uint64_t seed, int64_t step) {
  if (!a.flip && !a.crop)
    return;
  int64_t plane = height * width;
  std::vector<float> copy(static_cast<size_t>(plane));
  for (int64_t i = 0; i < batch; ++i) {
    // Draws as integers from the raw generator: its sequence is fixed by the standard, unlike a
    // distribution's.
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 1000003u +
                        static_cast<uint64_t>(i));
    bool flip = a.flip && (rng() & 1);
    int64_t dy = 0, dx = 0;
    if (a.crop) {
      dy = static_cast<int64_t>(rng() % (2 * kCropPad + 1)) - kCropPad;
      dx = static_cast<int64_t>(rng() % (2 * kCropPad + 1)) - kCropPad;
    }
    for (int64_t c = 0; c < channels; ++c) {
      float *p = images + (i * channels + c) * plane;
      std::copy(p, p + plane, copy.begin());
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          int64_t sy = y + dy, sx = flip ? width - 1 - (x + dx) : x + dx;
          bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
          p[y * width + x] = inside ? copy[static_cast<size_t>(sy * width + sx)] : 0.0f;
        }
    }
  }
}

} // namespace vitc::train
