// The hyper-parameters of a ViT, whichever file they came from.
//
// A spec file, a Hugging Face config.json and (for weights) a big_vision checkpoint all describe a
// model by these few numbers and switches; `buildVit` turns them into IR. Each field remembers
// where it was written so that a bad value is reported at its place in the user's file.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/error.h"

namespace vitc::frontend {

enum class BlockKind { Sequential, Parallel };
enum class PoolKind { Token, Gap, Map };
enum class GeluKind { Erf, Tanh };

std::string_view blockKindName(BlockKind k);
std::string_view poolKindName(PoolKind k);
std::string_view geluKindName(GeluKind k);

// A spec's [train] table: the recipe's defaults for `vitc train`, each unset unless written (the
// command line overrides them; the tool has its own defaults for the rest). Values are checked
// where they are read, so a bad one is reported at its place in the spec.
struct TrainRecipe {
  std::optional<std::string> optimizer, schedule, augment;
  std::optional<double> lr, weightDecay, clip, labelSmoothing, momentum;
  std::optional<int64_t> batch, epochs, steps, warmup, cooldown;
};

struct ModelConfig {
  std::string name = "vit";
  int64_t image = 224;
  int64_t patch = 16;
  int64_t channels = 3;
  int64_t width = 768;
  int64_t depth = 12;
  int64_t mlp = 3072;
  int64_t heads = 12;
  BlockKind block = BlockKind::Sequential;
  bool qkNorm = false;
  GeluKind gelu = GeluKind::Erf;
  double eps = 1e-6;
  bool biasQkv = true;
  bool biasOut = true;
  bool biasMlp = true;
  bool biasNorm = true;
  PoolKind pool = PoolKind::Token;
  int64_t classes = 1000;          // 0: the model outputs features, no classifier
  std::vector<std::string> labels; // optional, one per class
  // How pixels in [0, 1] are normalized before the model sees them: (x - mean[c]) / std[c], one
  // value for every channel or one per channel ([image] mean and std; training data only).
  std::vector<double> mean{0.0}, std{1.0};
  TrainRecipe train;

  // Where each key was written ("width", "heads", ...), and the file as a whole.
  Loc file;
  std::map<std::string, Loc> keyLocs;
  Loc locOf(const std::string &key) const;

  int64_t headDim() const { return width / heads; }
  int64_t patchesPerImage() const { return (image / patch) * (image / patch); }
  int64_t tokens() const { return patchesPerImage() + (pool == PoolKind::Token ? 1 : 0); }
};

// Checks the relations between fields (heads divide width, patch divides image, ...).
Status validate(const ModelConfig &c);

} // namespace vitc::frontend
