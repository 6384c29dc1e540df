// Binding weights to a compiled program's signature, by name: the one place that does it.
//
// `vitc run`, the standalone executable and (later) training all call `bindWeights`: it asks a
// `WeightSource` for every parameter of a `Signature` by name and returns their global values in
// the signature's order. A file that does not fit the program is refused in one line naming the
// file, with everything wrong at once: tensors of the wrong shape, tensors the file lacks, and
// tensors it holds that no parameter used (a spec that disagrees with its checkpoint would
// otherwise run and give wrong answers with exit 0; `--allow-unused-weights` runs anyway).
//
// A source works from a parameter's `TensorSpec` (name, shape, element type) alone, never from the
// IR, so that the executable, which carries no IR, binds exactly as the compiler's driver does.
// This file holds the interface and the safetensors source; big_vision `.npz` and random weights
// live in frontend/weights.h.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "program/signature.h"
#include "support/error.h"
#include "support/tensor.h"

namespace vitc::formats {

class WeightSource {
public:
  virtual ~WeightSource() = default;
  // The whole (global) value the source holds for `param`, as float32, under `param.name`. Its
  // shape is the one stored: `bindWeights` compares it with `param.shape`. A tensor the source
  // does not have is noted with `noteMissing` and returned as an error; any other error (a dtype a
  // weight may not have, a damaged file) stops the binding at once.
  virtual Expected<Tensor> load(const TensorSpec &param) = 0;
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
  // Run with tensors the model does not use (`--allow-unused-weights`).
  bool allowUnused = false;
};

// The global value of every parameter of `sig`, in `sig.params` order. Refuses, in one line naming
// the file, a source whose tensors have other shapes than the parameters, that lacks parameters,
// or that holds tensors no parameter used (beyond `isKnownExtraTensor`, and unless
// `options.allowUnused`), naming all three kinds together.
Expected<std::vector<Tensor>> bindWeights(const Signature &sig, WeightSource &source,
                                          const WeightLoadOptions &options = {});

// Tensors a checkpoint may hold for a known reason although the model never reads them: the
// pooler of a Hugging Face ViTModel (`pooler.*`, `vit.pooler.*`), which a classifier does not use.
bool isKnownExtraTensor(const std::string &name);

// A one-line warning, `FILE: warning: tensor 'NAME' holds NaN at index [i, j] (N non-finite
// values)`, when `t` holds a NaN or an infinity; nullopt when every value is finite.
std::optional<std::string> nonFiniteWarning(const std::string &file, const std::string &name,
                                            const Tensor &t);

// A safetensors file as a weight source. A parameter `vit.X` is also found as `X` (a Hugging Face
// ViTModel checkpoint). A tensor stored as integers is refused: a weight is floating point.
Expected<std::unique_ptr<WeightSource>> openSafetensorsWeights(const std::string &path);

} // namespace vitc::formats
