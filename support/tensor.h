// A host tensor: a shape and float32 data, owned or borrowed from a mapped file.
//
// Tensors share their storage when copied (like a handle); `clone()` makes a deep copy. Storage is
// 64-byte aligned so that kernels may use aligned vector loads on owned tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "support/error.h"

namespace vitc {

using Shape = std::vector<int64_t>;

int64_t numElements(const Shape &shape);
// "[1, 3, 224, 224]"
std::string shapeString(const Shape &shape);
// "7.2 GiB", "512.0 KiB", "12 bytes"
std::string byteSize(int64_t bytes);

// What `Tensor::zeros` (and so `clone`) throws when the memory cannot be had: a std::bad_alloc that
// says how much was asked for. Code that can return an error calls `tryZeros` instead; the driver
// turns this into one line for the paths that cannot.
class OutOfMemory : public std::bad_alloc {
public:
  explicit OutOfMemory(int64_t bytes);
  int64_t bytes() const { return bytes_; }
  const char *what() const noexcept override { return message_.c_str(); }

private:
  int64_t bytes_;
  std::string message_; // "out of memory allocating 7.2 GiB"
};

class Tensor {
public:
  Tensor() = default;
  // A new tensor of the given shape, every element zero.
  static Tensor zeros(Shape shape);
  // The same, or "out of memory allocating 7.2 GiB for <what>" when the memory cannot be had (or
  // the size does not fit in memory at all).
  static Expected<Tensor> tryZeros(Shape shape, const std::string &what);
  // A tensor over memory someone else owns; `owner` keeps that memory alive.
  static Tensor borrow(Shape shape, const float *data, std::shared_ptr<const void> owner);

  const Shape &shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return numElements(shape_); }
  int64_t dim(int64_t i) const { return shape_[static_cast<size_t>(i)]; }
  bool empty() const { return owner_ == nullptr; }

  const float *data() const { return data_; }
  // Writable data. Borrowed tensors are read-only: asking for their data to write is a bug.
  float *mutableData();

  Tensor clone() const;
  // Whether this tensor may write its memory and no other tensor shares it (copies of a Tensor
  // share memory): then writing it in place changes no one else's value.
  bool exclusive() const { return writable_ && owner_.use_count() == 1; }
  // The same data under another shape with the same element count.
  Tensor reshaped(Shape shape) const;

private:
  Shape shape_;
  float *data_ = nullptr;
  bool writable_ = false;
  std::shared_ptr<const void> owner_;
};

} // namespace vitc
