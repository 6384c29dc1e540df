// The vocabulary compiler and runtime share: element types, the device mesh, and how a tensor is
// cut into the blocks devices hold (its sharding).
//
// A tensor's shape is always its global (logical) shape. Its `Sharding` says, per dimension, which
// mesh axis (if any) splits it, and which mesh axes still owe a sum (a "partial" value, as in
// GSPMD and the MLIR shard dialect). A device's local shape follows from both and the mesh.
// A sharded dimension may also be "rotated": device i along the axis then holds block
// (i + rotation) mod k instead of block i. Rotations appear only inside collective-matmul rings,
// where each step works on the block a `collective_permute` just brought in.
// A value may be "manual" over an axis (as in shard_map): the devices along that axis hold values
// with no global meaning, such as the running sums a reduce-scatter ring passes around.
//
// The IR (ir/types.h) builds its tensor types from these; the runtime cuts and assembles blocks
// with them, without knowing the IR.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/error.h"
#include "support/tensor.h"

namespace vitc {

enum class DType : uint8_t { F32, BF16 };
std::string_view dtypeName(DType t);
std::optional<DType> parseDType(std::string_view s);
int64_t dtypeBytes(DType t);

struct MeshAxis {
  std::string name;
  int64_t size = 1;
  bool operator==(const MeshAxis &) const = default;
};

// The device mesh, e.g. `data=2, model=4`. Device ids are row-major over the axes.
struct Mesh {
  std::vector<MeshAxis> axes;

  static Mesh single() { return Mesh{{{"data", 1}, {"model", 1}}}; }
  int64_t numDevices() const;
  // Index of the named axis, or -1.
  int axisIndex(std::string_view name) const;
  int64_t axisSize(int axis) const { return axes[static_cast<size_t>(axis)].size; }
  // Position of `device` along `axis`.
  int64_t coordinate(int64_t device, int axis) const;
  // The device whose coordinate along `axis` is `coord`, others as in `device`.
  int64_t withCoordinate(int64_t device, int axis, int64_t coord) const;
  // "data=2, model=4"
  std::string str() const;
  bool operator==(const Mesh &) const = default;
};

// Parses "data=2,model=4" (spaces allowed). Axis names are identifiers; sizes are positive.
Expected<Mesh> parseMesh(std::string_view text, const Loc &loc);

constexpr int kNoAxis = -1;

struct DimSharding {
  int axis = kNoAxis;   // mesh axis that splits this dimension, or kNoAxis
  int64_t rotation = 0; // device i holds block (i + rotation) mod k; 0 unless inside a ring
  bool operator==(const DimSharding &) const = default;
};

struct Sharding {
  std::vector<DimSharding> dims; // one per tensor dimension; empty means fully replicated
  uint32_t partial = 0;          // bit a set: the value is a partial sum still owed over axis a
  uint32_t manual = 0;           // bit a set: per-device values with no global meaning along a

  static Sharding replicated(size_t rank) { return Sharding{std::vector<DimSharding>(rank), 0}; }
  bool isReplicated() const;
  int dimAxis(size_t d) const { return d < dims.size() ? dims[d].axis : kNoAxis; }
  bool isPartial(int axis) const { return (partial >> axis) & 1u; }
  bool isManual(int axis) const { return (manual >> axis) & 1u; }
  // True if a mesh axis both splits a dimension and is owed a sum: such a value means nothing.
  // (Two dimensions split over one axis are allowed: device c then holds block c of each, the
  // "diagonal" blocks a ring step of collective matmul computes.)
  bool partialOverlapsDims() const;

  // The shape one device holds of a tensor of global `shape` (dimensions divided by their axes).
  Shape localShape(const Shape &shape, const Mesh &mesh) const;
  // Which block of dimension `d` the given device holds.
  int64_t blockIndex(size_t d, const Mesh &mesh, int64_t device) const;
  bool operator==(const Sharding &) const = default;
};

// "f32[8@data,197,768@model] partial(model)", as the IR prints types.
std::string typeString(DType dtype, const Shape &shape, const Sharding &sharding,
                       const Mesh &mesh);

} // namespace vitc
