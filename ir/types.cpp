// Tensor types.
#include "ir/types.h"

namespace vitc::ir {

TensorType TensorType::of(Shape shape, DType dtype) {
  TensorType t;
  t.dtype = dtype;
  t.sharding = Sharding::replicated(shape.size());
  t.shape = std::move(shape);
  return t;
}

Shape TensorType::localShape(const Mesh &mesh) const { return sharding.localShape(shape, mesh); }

int64_t TensorType::localBytes(const Mesh &mesh) const {
  return numElements(localShape(mesh)) * dtypeBytes(dtype);
}

int64_t TensorType::blockIndex(size_t d, const Mesh &mesh, int64_t device) const {
  return sharding.blockIndex(d, mesh, device);
}

std::string typeString(const TensorType &t, const Mesh &mesh) {
  return vitc::typeString(t.dtype, t.shape, t.sharding, mesh);
}

} // namespace vitc::ir
