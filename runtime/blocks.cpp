// Block extraction and assembly.
#include "runtime/blocks.h"

#include <cassert>
#include <cstring>

namespace vitc::runtime {

namespace {

// Calls `row(wholeOffset, boxOffset, length)` for every innermost run of a box inside a whole.
template <typename Row>
void forEachRow(const Shape &wholeShape, const Shape &offset, const Shape &boxShape, Row row) {
  size_t rank = boxShape.size();
  if (rank == 0) {
    row(0, 0, 1);
    return;
  }
  std::vector<int64_t> stride(rank, 1);
  for (size_t d = rank - 1; d-- > 0;)
    stride[d] = stride[d + 1] * wholeShape[d + 1];
  int64_t run = boxShape[rank - 1];
  int64_t rows = run > 0 ? numElements(boxShape) / run : 0;
  std::vector<int64_t> idx(rank, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t at = offset[rank - 1];
    for (size_t d = 0; d + 1 < rank; ++d)
      at += (idx[d] + offset[d]) * stride[d];
    row(at, r * run, run);
    for (size_t d = rank - 1; d-- > 0;) {
      if (++idx[d] < boxShape[d])
        break;
      idx[d] = 0;
    }
  }
}

} // namespace

void extractBox(const float *whole, const Shape &wholeShape, const Shape &offset, float *box,
                const Shape &boxShape) {
  forEachRow(wholeShape, offset, boxShape, [&](int64_t w, int64_t b, int64_t n) {
    std::memcpy(box + b, whole + w, static_cast<size_t>(n) * sizeof(float));
  });
}

void insertBox(float *whole, const Shape &wholeShape, const Shape &offset, const float *box,
               const Shape &boxShape) {
  forEachRow(wholeShape, offset, boxShape, [&](int64_t w, int64_t b, int64_t n) {
    std::memcpy(whole + w, box + b, static_cast<size_t>(n) * sizeof(float));
  });
}

namespace {

Shape blockOffset(const TensorSpec &spec, const Mesh &mesh, int64_t device, const Shape &local) {
  Shape offset(spec.shape.size(), 0);
  for (size_t d = 0; d < spec.shape.size(); ++d)
    offset[d] = spec.sharding.blockIndex(d, mesh, device) * local[d];
  return offset;
}

} // namespace

Tensor blockOf(const Tensor &global, const TensorSpec &spec, const Mesh &mesh, int64_t device) {
  assert(global.shape() == spec.shape && "global tensor does not match its spec");
  Shape local = spec.localShape(mesh);
  if (local == spec.shape)
    return global;
  Tensor block = Tensor::zeros(local);
  extractBox(global.data(), global.shape(), blockOffset(spec, mesh, device, local),
             block.mutableData(), local);
  return block;
}

Tensor assemble(const std::vector<Tensor> &blocks, const TensorSpec &spec, const Mesh &mesh) {
  Shape local = spec.localShape(mesh);
  const Sharding &sharding = spec.sharding;
  bool partial = sharding.partial != 0;
  // A whole value every device holds alike is device 0's block, shared rather than copied: a
  // training run gathers its replicated params so for checkpoints, without a second copy.
  if (local == spec.shape && !partial && !blocks.empty())
    return blocks[0];
  Tensor global = Tensor::zeros(spec.shape);
  for (int64_t device = 0; device < mesh.numDevices(); ++device) {
    // Devices that differ only along axes the value is replicated over hold the same block.
    bool representative = true;
    for (int a = 0; a < static_cast<int>(mesh.axes.size()); ++a) {
      bool splits = sharding.isPartial(a);
      for (size_t d = 0; d < spec.shape.size(); ++d)
        splits |= sharding.dimAxis(d) == a;
      representative &= splits || mesh.coordinate(device, a) == 0;
    }
    if (!representative)
      continue;
    const Tensor &b = blocks[static_cast<size_t>(device)];
    Shape offset = blockOffset(spec, mesh, device, local);
    if (!partial) {
      insertBox(global.mutableData(), spec.shape, offset, b.data(), local);
      continue;
    }
    Tensor sum = Tensor::zeros(local);
    extractBox(global.data(), spec.shape, offset, sum.mutableData(), local);
    for (int64_t i = 0; i < sum.numel(); ++i)
      sum.mutableData()[i] += b.data()[i];
    insertBox(global.mutableData(), spec.shape, offset, sum.data(), local);
  }
  return global;
}

} // namespace vitc::runtime
