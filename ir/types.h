// Tensor types of the IR: element type, static global shape, and how the value is sharded.
//
// Meshes and shardings are the vocabulary the IR shares with the runtime (program/mesh.h says
// what they mean); a type adds the element type and the global shape. Under a "manual" sharding,
// shapes and `@axis` still say what one device holds; `from_manual` declares what the values mean
// again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "program/mesh.h"
#include "support/error.h"
#include "support/tensor.h"

namespace vitc::ir {

using vitc::Shape;

// The shared vocabulary (program/mesh.h), under the IR's names.
using vitc::DimSharding;
using vitc::dtypeBytes;
using vitc::DType;
using vitc::dtypeName;
using vitc::kNoAxis;
using vitc::Mesh;
using vitc::MeshAxis;
using vitc::parseDType;
using vitc::parseMesh;
using vitc::Sharding;

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;
  Sharding sharding; // sized to the rank

  static TensorType of(Shape shape, DType dtype = DType::F32);
  size_t rank() const { return shape.size(); }
  int64_t numel() const { return numElements(shape); }
  // The shape one device holds (dimensions divided by their axis sizes).
  Shape localShape(const Mesh &mesh) const;
  int64_t localBytes(const Mesh &mesh) const;
  // Which block of dimension `d` the given device holds, and the block size.
  int64_t blockIndex(size_t d, const Mesh &mesh, int64_t device) const;
  bool operator==(const TensorType &) const = default;
};

// "f32[8@data,197,768@model] partial(model)"
std::string typeString(const TensorType &t, const Mesh &mesh);

} // namespace vitc::ir
