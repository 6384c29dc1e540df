// Seeded random tensors for tests.
#pragma once

#include <random>

#include "support/tensor.h"

namespace vitc::test {

// Normally distributed values with standard deviation `sd` (seeded).
inline Tensor normalTensor(const Shape &shape, uint32_t seed, float sd = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  Tensor t = Tensor::zeros(shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.mutableData()[i] = dist(gen);
  return t;
}

} // namespace vitc::test
