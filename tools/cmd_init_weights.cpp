// `vitc init-weights`: deterministic random weights for any model, as safetensors; or, with
// `--from W`, the weights W holds (an ONNX model's initializers, a big_vision .npz) under the
// model's parameter names, for the standalone executable, which reads safetensors only.
#include <set>

#include "frontend/formats/safetensors.h"
#include "ir/signature.h"
#include "passes/analysis.h"
#include "tools/model_run.h"

namespace vitc::tools {

int runInitWeights(int argc, char **argv) {
  ModelOptions model;
  std::string output;
  uint64_t seed = 0;
  std::string from;
  po::options_description desc("vitc init-weights options");
  desc.add_options()("help,h", "show this help")("model", po::value(&model.model)->required(),
                                                 "model")(
      "output,o", po::value(&output)->required(), "the .safetensors file to write")(
      "seed", po::value(&seed)->default_value(0), "random seed (same as --weights random:SEED)")(
      "from", po::value(&from), "copy the weights W holds instead (any --weights source)");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc init-weights MODEL -o W.safetensors [--seed S | --from W]", exit))
    return exit;
  std::vector<std::pair<std::string, std::string>> inputs = model.inputFiles();
  inputs.emplace_back("--from", from);
  if (Status s = checkNotAnInput("-o", output, inputs); !s)
    return usageError(s.error());
  if (Status s = checkWritable(output); !s)
    return report(s.error());
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model);
  if (!loaded)
    return report(loaded.error());
  const ir::Module &m = *loaded->module;
  if (Status s = checkMemory(passes::analyze(m).params * 4, "writing these weights"); !s)
    return report(s.error());
  std::vector<std::pair<std::string, Tensor>> tensors;
  if (!from.empty()) {
    Expected<std::unique_ptr<frontend::WeightSource>> source = frontend::openWeights(from, &m);
    if (!source)
      return report(source.error());
    Signature signature = ir::signatureOf(m);
    Expected<std::vector<Tensor>> values = frontend::bindWeights(signature, **source);
    if (!values)
      return report(values.error());
    for (size_t i = 0; i < values->size(); ++i)
      tensors.emplace_back(signature.params[i].name, (*values)[i]);
    if (Status s = formats::writeSafetensors(output, tensors, {{"format", "pt"}}); !s)
      return report(s.error());
    return 0;
  }
  std::set<std::string> scales = frontend::layerNormScales(m);
  for (const TensorSpec &p : ir::signatureOf(m).params) {
    // randomTensor cannot return an error; running out of memory is the one way it fails.
    try {
      tensors.emplace_back(p.name, frontend::randomTensor(p, scales.contains(p.name), seed));
    } catch (const OutOfMemory &e) {
      return report(makeError(Loc{}, "{} for tensor '{}'", e.what(), p.name));
    }
  }
  if (Status s = formats::writeSafetensors(output, tensors,
                                           {{"format", "pt"}, {"vitc.seed", std::to_string(seed)}});
      !s)
    return report(s.error());
  return 0;
}

} // namespace vitc::tools
