// Where parameter values come from: safetensors, big_vision .npz, or a seeded generator.
//
// Parameters are named as the IR names them (Hugging Face style, see vit_builder.h) and bound by
// `bindWeights` (formats/bind.h), which also refuses a file that lacks some of them, holds them in
// other shapes, or holds tensors the model does not use. A safetensors file is read under those
// names (a `vit.`-less ViTModel checkpoint works too). A big_vision `.npz` is read under
// big_vision's names and converted: Dense kernels [in, out] are transposed to [out, in], per-head
// attention kernels [D, H, dh] flattened, the HWIO patch kernel transposed to [D, C, P, P], and a
// position embedding that covers only the patches gets a zero row for the class token.
// `random[:SEED]` draws every tensor from a generator keyed by the seed and the tensor's name, so
// results do not depend on load order; LayerNorm scales are drawn near 1, which only the frontend
// module shows (see `openWeights`).
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "frontend/formats/bind.h"
#include "ir/module.h"
#include "support/tensor.h"

namespace vitc::frontend {

// The source interface and the one binding function live with the file readers, where the
// standalone executable links them too.
using formats::bindWeights;
using formats::isKnownExtraTensor;
using formats::nonFiniteWarning;
using formats::WeightLoadOptions;
using formats::WeightSource;

// Generated weights, `random[:SEED]`.
class RandomWeights : public WeightSource {
public:
  explicit RandomWeights(uint64_t seed) : seed_(seed) {}
  // The parameters to draw near 1 (`layerNormScales` of the frontend module).
  void setLayerNormScales(std::set<std::string> names) { layerNormScales_ = std::move(names); }
  Expected<Tensor> load(const TensorSpec &param) override;
  std::string describe() const override;

private:
  uint64_t seed_;
  std::set<std::string> layerNormScales_;
};

// The names of the parameters of `m` that scale a LayerNorm's output. Ask the module as the
// frontend built it: fusion passes change how parameters are used.
std::set<std::string> layerNormScales(const ir::Module &m);

// `spec` is a .safetensors or .npz path, or `random` / `random:SEED`. `model`, the frontend module
// the weights are for, tells random weights which parameters are LayerNorm scales; without it
// they know none (until `RandomWeights::setLayerNormScales`).
Expected<std::unique_ptr<WeightSource>> openWeights(const std::string &spec,
                                                    const ir::Module *model = nullptr);

// Deterministic random values for a parameter, scaled for its role: LayerNorm scales near 1,
// biases near 0, matrices with standard deviation 1/sqrt(fan-in).
Tensor randomTensor(const TensorSpec &param, bool layerNormScale, uint64_t seed);

} // namespace vitc::frontend
