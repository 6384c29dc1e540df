// Model hyper-parameters and their checks.
#include "frontend/model_config.h"

namespace vitc::frontend {

std::string_view blockKindName(BlockKind k) {
  return k == BlockKind::Sequential ? "sequential" : "parallel";
}

std::string_view poolKindName(PoolKind k) {
  return k == PoolKind::Token ? "token" : k == PoolKind::Gap ? "gap" : "map";
}

std::string_view geluKindName(GeluKind k) { return k == GeluKind::Erf ? "erf" : "tanh"; }

Loc ModelConfig::locOf(const std::string &key) const {
  auto it = keyLocs.find(key);
  return it != keyLocs.end() ? it->second : file;
}

Status validate(const ModelConfig &c) {
  struct Positive {
    const char *key;
    int64_t value;
  };
  for (Positive p : {Positive{"image", c.image},
                     {"patch", c.patch},
                     {"channels", c.channels},
                     {"width", c.width},
                     {"depth", c.depth},
                     {"mlp", c.mlp},
                     {"heads", c.heads}})
    if (p.value <= 0)
      return makeError(c.locOf(p.key), "{} must be positive, got {}", p.key, p.value);
  // Refuse sizes whose products would overflow: no real model is within orders of magnitude.
  if (c.image > (1 << 16) || c.width > (1 << 20) || c.mlp > (1 << 22) || c.depth > 4096 ||
      c.channels > 4096 || c.heads > c.width)
    return makeError(c.file, "model sizes are out of range (image {}, width {}, mlp {}, depth {})",
                     c.image, c.width, c.mlp, c.depth);
  if (c.width % c.heads != 0)
    return makeError(c.locOf("heads"), "heads ({}) must divide width ({})", c.heads, c.width);
  if (c.image % c.patch != 0)
    return makeError(c.locOf("patch"), "patch ({}) must divide the image size ({})", c.patch,
                     c.image);
  // The attention scores ([heads, tokens, tokens] per image) and the patch embedding weight
  // ([width, channels, patch, patch]) are the largest tensors: keep them far from overflow too.
  if (c.patchesPerImage() > (1 << 16) || c.channels * c.patch * c.patch > (1 << 24))
    return makeError(c.locOf("patch"),
                     "patch {} of a {}x{} image with {} channels is out of range (at most 65536 "
                     "patches of at most 16777216 values)",
                     c.patch, c.image, c.image, c.channels);
  if (c.classes < 0 || c.classes > (1 << 24))
    return makeError(c.locOf("classes"), "classes must be between 0 and 16777216, got {}",
                     c.classes);
  if (!(c.eps > 0) || c.eps > 1)
    return makeError(c.locOf("eps"), "eps must be in (0, 1], got {}", c.eps);
  if (!c.labels.empty() && static_cast<int64_t>(c.labels.size()) != c.classes)
    return makeError(c.locOf("labels"), "{} labels for {} classes", c.labels.size(), c.classes);
  for (const auto &[key, values] : {std::pair<const char *, const std::vector<double> &>{"mean", c.mean},
                                    {"std", c.std}})
    if (values.size() != 1 && static_cast<int64_t>(values.size()) != c.channels)
      return makeError(c.locOf(key), "{} {} values for {} channels (give one, or one per channel)",
                       values.size(), key, c.channels);
  return Status::ok();
}

} // namespace vitc::frontend
