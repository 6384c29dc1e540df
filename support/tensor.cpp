// Host tensor storage.
#include "support/tensor.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <optional>

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

std::string byteSize(int64_t bytes) {
  if (bytes >= (int64_t{1} << 40))
    return fmt::format("{:.1f} TiB", static_cast<double>(bytes) / static_cast<double>(1LL << 40));
  if (bytes >= (int64_t{1} << 30))
    return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (int64_t{1} << 20))
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  if (bytes >= (int64_t{1} << 10))
    return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / (1 << 10));
  return fmt::format("{} bytes", bytes);
}

OutOfMemory::OutOfMemory(int64_t bytes)
    : bytes_(bytes), message_("out of memory allocating " + byteSize(bytes)) {}

namespace {

// The bytes a tensor of `shape` takes, rounded up to whole 64-byte lines; nullopt when that does
// not fit in an int64 (a shape read from a file may claim anything).
std::optional<int64_t> storageBytes(const Shape &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n))
      return std::nullopt;
  int64_t bytes = 0;
  if (__builtin_mul_overflow(std::max<int64_t>(n, 1), int64_t{sizeof(float)}, &bytes) ||
      bytes > std::numeric_limits<int64_t>::max() - 63)
    return std::nullopt;
  return (bytes + 63) / 64 * 64;
}

} // namespace

Expected<Tensor> Tensor::tryZeros(Shape shape, const std::string &what) {
  std::optional<int64_t> bytes = storageBytes(shape);
  if (!bytes)
    return makeError(Loc{},
                     "out of memory allocating a tensor of shape {} for {}: its size does "
                     "not fit in memory",
                     shapeString(shape), what);
  void *p = std::aligned_alloc(64, static_cast<size_t>(*bytes));
  if (!p)
    return makeError(Loc{}, "out of memory allocating {} for {}", byteSize(*bytes), what);
  std::memset(p, 0, static_cast<size_t>(*bytes));
  Tensor t;
  t.shape_ = std::move(shape);
  t.data_ = static_cast<float *>(p);
  t.writable_ = true;
  t.owner_ =
      std::shared_ptr<const void>(p, [](const void *q) { std::free(const_cast<void *>(q)); });
  return t;
}

Tensor Tensor::zeros(Shape shape) {
  std::optional<int64_t> bytes = storageBytes(shape);
  Expected<Tensor> t = tryZeros(std::move(shape), "a tensor");
  if (!t)
    throw OutOfMemory(bytes.value_or(std::numeric_limits<int64_t>::max()));
  return t.take();
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
