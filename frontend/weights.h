// Where parameter values come from: safetensors, big_vision .npz, or a seeded generator.
//
// Parameters are named as the IR names them (Hugging Face style, see vit_builder.h). A safetensors
// file is read under those names (a `vit.`-less ViTModel checkpoint works too). A big_vision `.npz`
// is read under big_vision's names and converted: Dense kernels [in, out] are transposed to
// [out, in], per-head attention kernels [D, H, dh] flattened, the HWIO patch kernel transposed to
// [D, C, P, P], and a position embedding that covers only the patches gets a zero row for the class
// token. `random[:SEED]` draws every tensor from a generator keyed by the seed and the tensor's
// name, so results do not depend on load order.
//
// `loadParameters` reads every parameter of a module and refuses a file that lacks some of them or
// holds tensors the model does not use (a spec that disagrees with its checkpoint would otherwise
// run and give wrong answers with exit 0), naming both kinds in one line. A safetensors tensor
// stored as integers is refused: a weight is floating point, and the standalone executable reads
// floats only.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ir/module.h"
#include "support/tensor.h"

namespace vitc::frontend {

class WeightSource {
public:
  virtual ~WeightSource() = default;
  // The whole (unsharded) value of a `param` op of `m`, checked against its shape.
  virtual Expected<Tensor> load(const ir::Module &m, const ir::Op &param) = 0;
  virtual std::string describe() const = 0;
  // The file's path, or empty for generated weights.
  virtual std::string path() const { return ""; }

  // Every tensor the file holds, under the names it holds them: a ViTModel checkpoint's names
  // without `vit.`, a big_vision archive's member names (with any `params/` prefix). Empty for
  // generated weights.
  virtual std::vector<std::string> tensorNames() const { return {}; }
  // The file's tensors that loads have read so far (for big_vision, the members that conversions
  // consumed).
  const std::set<std::string> &used() const { return used_; }
  // What loads looked for and did not find, one description each (`'NAME' (shape [..])`).
  const std::vector<std::string> &missing() const { return missing_; }

protected:
  void markUsed(const std::string &name) { used_.insert(name); }
  void noteMissing(std::string description) { missing_.push_back(std::move(description)); }

private:
  std::set<std::string> used_;
  std::vector<std::string> missing_;
};

struct WeightLoadOptions {
  // Run with tensors the model does not use (`vitc run --allow-unused-weights`).
  bool allowUnused = false;
};

// The global value of every parameter of `m` by name. Refuses, in one line naming the file, a
// source that lacks parameters or holds tensors that no parameter used (beyond the known extras
// of `isKnownExtraTensor`), unless `options.allowUnused`.
Expected<std::map<std::string, Tensor>> loadParameters(const ir::Module &m, WeightSource &source,
                                                       const WeightLoadOptions &options = {});

// Tensors a checkpoint may hold for a known reason although the model never reads them: the
// pooler of a Hugging Face ViTModel (`pooler.*`, `vit.pooler.*`), which a classifier does not use.
bool isKnownExtraTensor(const std::string &name);

// A one-line warning, `FILE: warning: tensor 'NAME' holds NaN at index [i, j] (N non-finite
// values)`, when `t` holds a NaN or an infinity; nullopt when every value is finite.
std::optional<std::string> nonFiniteWarning(const std::string &file, const std::string &name,
                                            const Tensor &t);

// `spec` is a .safetensors or .npz path, or `random` / `random:SEED`.
Expected<std::unique_ptr<WeightSource>> openWeights(const std::string &spec);

// Deterministic random values for a parameter, scaled for its role: LayerNorm scales near 1,
// biases near 0, matrices with standard deviation 1/sqrt(fan-in).
Tensor randomTensor(const ir::Module &m, const ir::Op &param, uint64_t seed);

} // namespace vitc::frontend
