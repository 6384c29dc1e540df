// Builds the IR of a ViT from its hyper-parameters.
//
// The program takes `pixels` [B, C, H, W] and outputs logits [B, classes] (or features [B, D]
// when classes is 0). Parameters carry Hugging Face `ViTForImageClassification` names, with
// vitc's extensions in the same style for what Hugging Face's ViT lacks:
//   vit.encoder.layer.{i}.layernorm.{weight,bias}                   one LayerNorm of a parallel
//   block vit.encoder.layer.{i}.attention.attention.{query,key}_norm.*    QK-normalization,
//   [head_dim] head.probe, head.attention.in_proj_{weight,bias}, head.attention.out_proj.*,
//   head.layernorm.*, head.mlp.fc{1,2}.*                                              the MAP head,
//   as SigLIP names it
// Linear weights keep PyTorch's [out, in] layout; matmuls read them with `transpose_b`.
#pragma once

#include <memory>

#include "frontend/model_config.h"
#include "ir/module.h"

namespace vitc::frontend {

std::unique_ptr<ir::Module> buildVit(const ModelConfig &c, int64_t batch);

} // namespace vitc::frontend
