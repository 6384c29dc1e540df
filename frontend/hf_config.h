// Hugging Face ViT checkpoints: a directory with config.json (ViTConfig keys) is a model.
//
// Keys follow transformers' ViTConfig and default as it does. `hidden_act` "gelu" is the exact
// GELU; "gelu_new", "gelu_pytorch_tanh" and "gelu_fast" are the tanh approximation. A config whose
// `architectures` names ViTForImageClassification has a classifier with one output per `id2label`
// entry; any other ViT config (ViTModel) outputs features.
#pragma once

#include <string>
#include <string_view>

#include "frontend/model_config.h"

namespace vitc::frontend {

Expected<ModelConfig> parseHfConfig(std::string_view text, const std::string &path);
Expected<ModelConfig> readHfConfigFile(const std::string &path);

} // namespace vitc::frontend
