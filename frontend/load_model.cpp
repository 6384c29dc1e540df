// Model path resolution and dispatch to the spec, Hugging Face and IR text readers.
#include "frontend/load_model.h"

#include <filesystem>

#include "frontend/hf_config.h"
#include "frontend/onnx/onnx_import.h"
#include "frontend/spec.h"
#include "frontend/vit_builder.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "support/files.h"

namespace vitc::frontend {
namespace fs = std::filesystem;

std::vector<std::string> LoadedModel::labels() const {
  return config ? config->labels : std::vector<std::string>{};
}

namespace {

Expected<LoadedModel> fromConfig(ModelFormat format, std::string path, ModelConfig config,
                                 const LoadOptions &options) {
  LoadedModel m;
  m.format = format;
  m.path = std::move(path);
  m.module = buildVit(config, options.batch);
  m.config = std::move(config);
  return m;
}

} // namespace

Expected<LoadedModel> loadModel(const std::string &path, const LoadOptions &options) {
  if (options.batch <= 0 || options.batch > (1 << 20))
    return makeError(Loc{}, "batch must be between 1 and 1048576, got {}", options.batch);
  std::error_code ec;
  std::string resolved = path;
  if (!fs::exists(resolved, ec) && fs::exists(resolved + ".vit", ec))
    resolved += ".vit";
  if (!fs::exists(resolved, ec))
    return makeError(Loc::inFile(path), "no such model file or directory");

  if (fs::is_directory(resolved, ec)) {
    std::string config = (fs::path(resolved) / "config.json").string();
    if (!fs::exists(config, ec))
      return makeError(Loc::inFile(path), "directory has no config.json: not a Hugging Face "
                                          "checkpoint");
    VITC_ASSIGN(ModelConfig c, readHfConfigFile(config));
    VITC_ASSIGN(LoadedModel m, fromConfig(ModelFormat::HuggingFace, config, std::move(c), options));
    std::string weights = (fs::path(resolved) / "model.safetensors").string();
    if (fs::exists(weights, ec))
      m.defaultWeights = weights;
    return m;
  }

  std::string ext = fs::path(resolved).extension().string();
  if (ext == ".onnx") {
    LoadedModel m;
    m.format = ModelFormat::Onnx;
    m.path = resolved;
    VITC_ASSIGN(m.module, onnximport::importOnnxFile(resolved, options.batch));
    m.defaultWeights = resolved; // initializers are the weights
    std::vector<ir::Op *> inputs = m.module->inputs();
    if (!inputs.empty() && inputs[0]->rank() > 0 && inputs[0]->shape()[0] != options.batch)
      m.fixedBatch = inputs[0]->shape()[0];
    return m;
  }
  VITC_ASSIGN(std::string text, readFile(resolved));
  size_t firstText = text.find_first_not_of(" \t\r\n");
  bool looksLikeIr =
      ext == ".ir" || (firstText != std::string::npos && text.compare(firstText, 6, "module") == 0);
  if (looksLikeIr) {
    VITC_ASSIGN(std::unique_ptr<ir::Module> module, ir::parseModule(text, resolved));
    Diagnostics diags = ir::verify(*module);
    if (!diags.empty()) {
      // Report every problem as the verifier found them, on the one line an error has.
      const Error &first = diags.errors.front();
      std::string message = first.message();
      for (size_t i = 1; i < diags.errors.size(); ++i)
        message += "; " + diags.errors[i].str();
      return Error(first.loc(), message);
    }
    LoadedModel m;
    m.format = ModelFormat::IrText;
    m.path = resolved;
    m.module = std::move(module);
    return m;
  }
  if (ext == ".json") {
    VITC_ASSIGN(ModelConfig c, parseHfConfig(text, resolved));
    VITC_ASSIGN(LoadedModel m,
                fromConfig(ModelFormat::HuggingFace, resolved, std::move(c), options));
    std::string weights = (fs::path(resolved).parent_path() / "model.safetensors").string();
    if (fs::exists(weights, ec))
      m.defaultWeights = weights;
    return m;
  }
  VITC_ASSIGN(ModelConfig c, parseSpec(text, resolved));
  return fromConfig(ModelFormat::Spec, resolved, std::move(c), options);
}

} // namespace vitc::frontend
