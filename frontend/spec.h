// vitc spec files: a model described in TOML, human-written, with comments.
//
//   name = "vit-b16"
//   [image]    size = 224, patch = 16, channels = 3
//   [encoder]  width = 768, depth = 12, mlp = 3072, heads = 12, block = "sequential",
//              qk_norm = false, gelu = "erf", eps = 1e-6
//   [bias]     qkv = true, out = true, mlp = true, norm = true
//   [head]     pool = "token", classes = 1000, labels = [...]
//
// (one key per line in a real file; see examples/). Unknown keys, wrong types and bad values are
// errors at their `file:line:col`.
#pragma once

#include <string>
#include <string_view>

#include "frontend/model_config.h"

namespace vitc::frontend {

Expected<ModelConfig> parseSpec(std::string_view text, const std::string &path);
Expected<ModelConfig> readSpecFile(const std::string &path);

// The spec text that describes `c` (used by tests and `vitc init-weights`).
std::string writeSpec(const ModelConfig &c);

} // namespace vitc::frontend
