// The signature of a compiled program: what a runtime and a caller need to know to run it.
//
// A backend compiles a planned module into an Executable (runtime/program.h) that carries one of
// these: the mesh, and the named parameters, inputs and outputs with their global shapes, element
// types and per-device block layouts. Runtimes cut global tensors into each device's blocks from
// it and assemble outputs from it; weights bind to it by name (frontend/formats/bind.h). It holds
// no IR: the compiler fills it in, nothing else needs the IR to use it.
#pragma once

#include <string>
#include <vector>

#include "program/mesh.h"

namespace vitc {

// One parameter, input or output.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;       // global
  Sharding sharding; // which block each device holds

  // The shape of the block one device holds.
  Shape localShape(const Mesh &mesh) const { return sharding.localShape(shape, mesh); }
  // "f32[8@data,197,768@model] partial(model)"
  std::string typeString(const Mesh &mesh) const {
    return vitc::typeString(dtype, shape, sharding, mesh);
  }
  bool operator==(const TensorSpec &) const = default;
};

struct Signature {
  Mesh mesh;
  std::vector<TensorSpec> params, inputs, outputs;

  // The parameter named `name`, or null.
  const TensorSpec *param(const std::string &name) const;
  // A readable summary: the mesh, then one line per tensor, its kind, name and type
  // ("param   vit.embeddings.position_embeddings  f32[1,16@model,64]"), types aligned.
  std::string str() const;
  bool operator==(const Signature &) const = default;
};

} // namespace vitc
