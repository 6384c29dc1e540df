// `vitc init-weights`: deterministic random weights for any model, as safetensors.
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
  po::options_description desc("vitc init-weights options");
  desc.add_options()("help,h", "show this help")("model", po::value(&model.model)->required(),
                                                 "model")(
      "output,o", po::value(&output)->required(), "the .safetensors file to write")(
      "seed", po::value(&seed)->default_value(0), "random seed (same as --weights random:SEED)");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc init-weights MODEL -o W.safetensors [--seed S]", exit))
    return exit;
  if (Status s = checkNotAnInput("-o", output, model.inputFiles()); !s)
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
