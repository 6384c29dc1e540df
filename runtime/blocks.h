// Cutting global tensors into the blocks each device holds, and putting outputs back together.
#pragma once

#include <vector>

#include "program/signature.h"
#include "support/tensor.h"

namespace vitc::runtime {

// The block of `global` that `device` holds under `spec`'s sharding (a copy; the whole tensor,
// shared, when `spec` is replicated).
Tensor blockOf(const Tensor &global, const TensorSpec &spec, const Mesh &mesh, int64_t device);

// The global tensor from every device's block. Replicated dimensions are taken from the devices
// at coordinate 0; partial sums are summed. (Device 0's block itself, storage shared, when it is
// the whole value.)
Tensor assemble(const std::vector<Tensor> &blocks, const TensorSpec &spec, const Mesh &mesh);

// Copies the box of `whole` that starts at `offset` and has `boxShape` into `box`.
void extractBox(const float *whole, const Shape &wholeShape, const Shape &offset, float *box,
                const Shape &boxShape);
// Copies `box` into `whole` at `offset`.
void insertBox(float *whole, const Shape &wholeShape, const Shape &offset, const float *box,
               const Shape &boxShape);

} // namespace vitc::runtime
