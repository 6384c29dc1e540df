// `vitc run`: compile a model, load its weights, run an image batch, write the outputs.
#include <algorithm>
#include <cmath>

#include "backends/interpreter/interpreter.h"
#include "frontend/formats/npy.h"
#include "ir/text.h"
#include "passes/analysis.h"
#include "tools/model_run.h"

namespace vitc::tools {
namespace {

void printTop5(const Tensor &logits, const std::vector<std::string> &labels) {
  int64_t batch = logits.dim(0), classes = logits.dim(1);
  for (int64_t b = 0; b < batch; ++b) {
    const float *row = logits.data() + b * classes;
    float mx = *std::max_element(row, row + classes);
    double sum = 0;
    for (int64_t j = 0; j < classes; ++j)
      sum += std::exp(static_cast<double>(row[j] - mx));
    std::vector<int64_t> order(static_cast<size_t>(classes));
    for (int64_t j = 0; j < classes; ++j)
      order[static_cast<size_t>(j)] = j;
    size_t top = std::min<size_t>(5, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(top), order.end(),
                      [&](int64_t x, int64_t y) { return row[x] > row[y]; });
    std::cout << fmt::format("image {}:", b);
    for (size_t i = 0; i < top; ++i) {
      int64_t j = order[i];
      std::cout << fmt::format("  {} {:.3f}", labels[static_cast<size_t>(j)],
                               std::exp(static_cast<double>(row[j] - mx)) / sum);
    }
    std::cout << "\n";
  }
}

} // namespace

int runRun(int argc, char **argv) {
  ModelOptions model;
  PassFlags passFlags;
  std::string weights, input, output, backend = "interpreter";
  po::options_description desc("vitc run options");
  desc.add_options()("help,h", "show this help");
  desc.add_options()("model", po::value(&model.model)->required(),
                     "model")("mesh", po::value(&model.mesh), "device mesh, e.g. data=2,model=4")(
      "weights", po::value(&weights),
      "weights: .safetensors, big_vision .npz, or random[:SEED] (default: the checkpoint's own)")(
      "input", po::value(&input)->required(), "images, NCHW float32 .npy")(
      "output", po::value(&output)->required(), "where to write the outputs (.npy)")(
      "backend", po::value(&backend)->default_value("interpreter"), "interpreter");
  passFlags.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc run MODEL --weights W --input X.npy --output Y.npy", exit))
    return exit;
  if (backend != "interpreter")
    return usageError(fmt::format("unknown --backend={} (expected interpreter)", backend));

  Expected<Tensor> images = formats::readNpy(input);
  if (!images)
    return report(images.error());
  // The batch comes from the input file; build the model for it.
  model.batch = images->rank() > 0 ? images->dim(0) : 1;
  Expected<frontend::LoadedModel> loaded = loadModel(model);
  if (!loaded)
    return report(loaded.error());
  if (Expected<int64_t> batch = checkImageBatch(*images, input, *loaded); !batch)
    return report(batch.error());

  if (weights.empty())
    weights = loaded->defaultWeights;
  if (weights.empty())
    return report(makeError(Loc::inFile(model.model),
                            "no weights: pass --weights FILE or --weights random[:SEED]"));
  passes::ModuleStats stats = passes::analyze(*loaded->module);
  if (Status s = checkMemory(stats.params * 4 * 2 + stats.activationPeakBytesPerDevice *
                                                        loaded->module->mesh.numDevices(),
                             "this run");
      !s)
    return report(s.error());
  Expected<std::unique_ptr<frontend::WeightSource>> source = frontend::openWeights(weights);
  if (!source)
    return report(source.error());
  Expected<std::map<std::string, Tensor>> params = loadParams(*loaded->module, **source);
  if (!params)
    return report(params.error());

  Expected<passes::PipelineOptions> pipeline = passFlags.toOptions();
  if (!pipeline)
    return report(pipeline.error());
  passes::PassManager pm(*pipeline, std::cerr);
  passes::PassContext ctx;
  ctx.options = passFlags.passOptions();
  if (Status s = pm.run(*loaded->module, ctx); !s)
    return report(s.error());
  std::shared_ptr<const ir::Module> module = std::move(loaded->module);

  Expected<std::unique_ptr<runtime::MeshRunner>> runner = runtime::MeshRunner::create(
      module, interp::interpreterFactory(), paramsInOrder(*module, *params));
  if (!runner)
    return report(runner.error());
  Expected<std::vector<Tensor>> outs = (*runner)->run({*images});
  if (!outs)
    return report(outs.error());
  if (Status s = formats::writeNpy(output, (*outs)[0]); !s)
    return report(s.error());

  std::vector<std::string> labels = loaded->labels();
  const Tensor &out = (*outs)[0];
  if (out.rank() == 2 && !labels.empty() && static_cast<int64_t>(labels.size()) == out.dim(1))
    printTop5(out, labels);
  return 0;
}

} // namespace vitc::tools
