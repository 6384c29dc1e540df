// Where parameter values come from: safetensors, big_vision .npz, or a seeded generator.
//
// Parameters are named as the IR names them (Hugging Face style, see vit_builder.h). A safetensors
// file is read under those names (a `vit.`-less ViTModel checkpoint works too). A big_vision `.npz`
// is read under big_vision's names and converted: Dense kernels [in, out] are transposed to
// [out, in], per-head attention kernels [D, H, dh] flattened, the HWIO patch kernel transposed to
// [D, C, P, P], and a position embedding that covers only the patches gets a zero row for the class
// token. `random[:SEED]` draws every tensor from a generator keyed by the seed and the tensor's
// name, so results do not depend on load order.
#pragma once

#include <memory>
#include <string>

#include "ir/module.h"
#include "support/tensor.h"

namespace vitc::frontend {

class WeightSource {
public:
  virtual ~WeightSource() = default;
  // The whole (unsharded) value of a `param` op of `m`, checked against its shape.
  virtual Expected<Tensor> load(const ir::Module &m, const ir::Op &param) = 0;
  virtual std::string describe() const = 0;
};

// `spec` is a .safetensors or .npz path, or `random` / `random:SEED`.
Expected<std::unique_ptr<WeightSource>> openWeights(const std::string &spec);

// Deterministic random values for a parameter, scaled for its role: LayerNorm scales near 1,
// biases near 0, matrices with standard deviation 1/sqrt(fan-in).
Tensor randomTensor(const ir::Module &m, const ir::Op &param, uint64_t seed);

} // namespace vitc::frontend
