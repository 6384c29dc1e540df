// Turning what the user names on the command line into a module.
//
// A model is a vitc spec (`*.vit`, or a path that becomes one when `.vit` is added), a Hugging Face
// checkpoint directory (with config.json) or its config.json, IR text (`*.ir`, or any file that
// starts with `module`), or an ONNX model (`*.onnx`, frontend/onnx). Spec and Hugging Face models
// are built for the requested batch size; IR text has its batch written in it; an ONNX model keeps
// a batch it was exported with and takes the requested one where its batch is dynamic.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/model_config.h"
#include "ir/module.h"

namespace vitc::frontend {

enum class ModelFormat { Spec, HuggingFace, IrText, Onnx };

struct LoadOptions {
  int64_t batch = 1;
};

struct LoadedModel {
  ModelFormat format;
  std::string path;                  // the file that described the model
  std::optional<ModelConfig> config; // absent for IR text
  // model.safetensors beside a Hugging Face config, if present; an ONNX file holds its own.
  std::string defaultWeights;
  std::unique_ptr<ir::Module> module;
  // The batch an ONNX model was exported with, where it is fixed and not the one asked for.
  std::optional<int64_t> fixedBatch;
  std::vector<std::string> labels() const;
};

Expected<LoadedModel> loadModel(const std::string &path, const LoadOptions &options);

} // namespace vitc::frontend
