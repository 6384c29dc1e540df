// Host tensor storage.
#include "support/tensor.h"

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace vitc {

int64_t numElements(const Shape &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string shapeString(const Shape &shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Tensor Tensor::zeros(Shape shape) {
  Tensor t;
  int64_t n = numElements(shape);
  size_t bytes = static_cast<size_t>(n > 0 ? n : 1) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  void *p = std::aligned_alloc(64, bytes);
  if (!p)
    throw std::bad_alloc();
  std::memset(p, 0, bytes);
  t.shape_ = std::move(shape);
  t.data_ = static_cast<float *>(p);
  t.writable_ = true;
  t.owner_ =
      std::shared_ptr<const void>(p, [](const void *q) { std::free(const_cast<void *>(q)); });
  return t;
}

Tensor Tensor::borrow(Shape shape, const float *data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.data_ = const_cast<float *>(data);
  t.writable_ = false;
  t.owner_ = std::move(owner);
  return t;
}

float *Tensor::mutableData() {
  assert(writable_ && "writing to a borrowed (read-only) tensor");
  return data_;
}

Tensor Tensor::clone() const {
  Tensor t = zeros(shape_);
  if (numel() > 0)
    std::memcpy(t.data_, data_, static_cast<size_t>(numel()) * sizeof(float));
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  assert(numElements(shape) == numel() && "reshape must keep the element count");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

} // namespace vitc
