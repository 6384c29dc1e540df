// `vitc run`: compile a model, load its weights, run an image batch, write the outputs.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "frontend/formats/npy.h"
#include "ir/signature.h"
#include "passes/analysis.h"
#include "passes/layout.h"
#include "runtime/mpi/mpi_runtime.h"
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

// The batch in `parts` equal parts along dimension 0.
std::vector<Tensor> splitBatch(const Tensor &t, int64_t parts) {
  if (parts == 1)
    return {t};
  Shape shape = t.shape();
  shape[0] /= parts;
  int64_t n = numElements(shape);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < parts; ++i) {
    Tensor part = Tensor::zeros(shape);
    std::copy(t.data() + i * n, t.data() + (i + 1) * n, part.mutableData());
    out.push_back(std::move(part));
  }
  return out;
}

Tensor joinBatch(const std::vector<Tensor> &parts) {
  if (parts.size() == 1)
    return parts[0];
  Shape shape = parts[0].shape();
  shape[0] *= static_cast<int64_t>(parts.size());
  Tensor t = Tensor::zeros(shape);
  int64_t n = parts[0].numel();
  for (size_t i = 0; i < parts.size(); ++i)
    std::copy(parts[i].data(), parts[i].data() + n, t.mutableData() + static_cast<int64_t>(i) * n);
  return t;
}

struct RunFlags {
  std::string weights, input, output, backend = "llvm";
  MeshRunFlags mesh;
  int repeat = 0;
  int threads = 0; // per device; 0: the host's cores shared by the devices
  bool allowUnusedWeights = false, allowNonfinite = false;
};

} // namespace

int runRun(int argc, char **argv) {
  ModelOptions model;
  PassFlags passFlags;
  RunFlags f;
  po::options_description desc("vitc run options");
  desc.add_options()("help,h", "show this help");
  model.add(desc, "images per batch: the input decides it; if given, it must match the input",
            "the input's");
  desc.add_options()(
      "weights", po::value(&f.weights),
      "weights: .safetensors, big_vision .npz, or random[:SEED] (default: the checkpoint's own)")(
      "input", po::value(&f.input)->required(), "images, NCHW float32 .npy")(
      "output", po::value(&f.output)->required(), "where to write the outputs (.npy)")(
      "backend", po::value(&f.backend)->default_value("llvm"),
      "llvm (JIT-compiled kernels) or interpreter (the reference)")(
      "threads", po::value(&f.threads)->default_value(0),
      "threads per device for the llvm backend (default: the cores shared by the devices)")(
      "repeat", po::value(&f.repeat)->default_value(0),
      "run the forward pass N more times after a warm-up and print the median latency");
  f.mesh.add(desc);
  desc.add_options()("allow-unused-weights", po::bool_switch(&f.allowUnusedWeights),
                     "run although the weights file holds tensors the model does not use")(
      "allow-nonfinite", po::bool_switch(&f.allowNonfinite),
      "do not warn about NaN or Inf in the weights or the input");
  passFlags.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc run MODEL --weights W --input X.npy --output Y.npy", exit))
    return exit;
  if (Status s = checkBackendName(f.backend); !s)
    return usageError(s.error().message());
  if (f.threads < 0)
    return usageError("--threads must not be negative");
  if (Status s = f.mesh.check(); !s)
    return usageErrorOf(s.error());
  if (f.repeat < 0)
    return usageError("--repeat must not be negative");
  if (f.threads > kMaxThreads)
    return usageError(fmt::format("--threads must be at most {}, got {}", kMaxThreads, f.threads));
  // Every value from the command line is checked before a file is read or anything compiled.
  if (Status s = model.check(); !s)
    return usageError(s.error());
  if (Status s = passFlags.check(vm); !s)
    return usageError(s.error());
  if (f.weights == "random" || f.weights.rfind("random:", 0) == 0)
    if (Expected<std::unique_ptr<frontend::WeightSource>> random = frontend::openWeights(f.weights);
        !random)
      return usageError(random.error());
  std::vector<std::pair<std::string, std::string>> inputs = model.inputFiles();
  inputs.emplace_back("--input", f.input);
  inputs.emplace_back("--weights", f.weights);
  for (const auto &[flag, path] :
       {std::pair<const char *, const std::string &>{"--output", f.output},
        {"--trace", f.mesh.trace}}) {
    if (Status s = checkNotAnInput(flag, path, inputs); !s)
      return usageError(s.error());
    if (Status s = checkWritable(path); !s)
      return report(s.error());
  }

  Expected<runtime::RunnerOptions> options = f.mesh.runnerOptions();
  if (!options)
    return report(options.error());
  runtime::RunnerOptions &runnerOptions = *options;
  auto report = [&runnerOptions](const Error &e) { return reportOnce(runnerOptions, e); };

  Expected<Tensor> images = formats::readNpy(f.input);
  if (!images)
    return report(images.error());
  // The batch comes from the input file; build the model for it, or for one micro-batch of it
  // when the layout runs the batch in parts.
  Expected<ModelLayout> layout = readModelLayout(model, &passFlags); // the one read of --layout
  if (!layout)
    return report(layout.error());
  int64_t batch = images->rank() > 0 ? images->dim(0) : 1;
  // The input decides the batch; a --batch that says otherwise is a mistake, not a request.
  if (!vm["batch"].defaulted() && model.batch != batch)
    return usageError(makeError(Loc::inFile("--batch"), "{} images per batch, but {} holds {}",
                                model.batch, f.input, batch));
  Expected<int64_t> microBatch = microbatchSize(batch, model, *layout, &passFlags);
  if (!microBatch)
    return report(microBatch.error());
  int64_t micro = batch / *microBatch;
  model.batch = batch / micro;
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model, *layout);
  if (!loaded)
    return report(loaded.error());
  passes::PassContext ctx;
  ctx.options = layout->passOptions;
  if (Expected<int64_t> checked = checkImageBatch(*images, f.input, *loaded); !checked)
    return report(checked.error());
  // NaN or Inf in the input makes NaN outputs with exit 0: say so (rank 0 only under MPI).
  bool warns =
      !f.allowNonfinite && (!runnerOptions.processes || runnerOptions.processes->rank() == 0);
  if (warns)
    if (auto warning = frontend::nonFiniteWarning(
            f.input, loaded->module->inputs()[0]->attrs.getStr("name"), *images))
      std::cerr << *warning << "\n";
  std::vector<Tensor> parts = splitBatch(*images, micro);

  std::string weights = f.weights.empty() ? loaded->defaultWeights : f.weights;
  if (weights.empty())
    return report(makeError(Loc::inFile(model.model),
                            "no weights: pass --weights FILE or --weights random[:SEED]"));
  if (Status s = checkNotAnInput("--output", f.output, {{"the model's weights", weights}}); !s)
    return usageError(s.error());
  passes::ModuleStats stats = passes::analyze(*loaded->module);
  if (Status s = checkMemory(stats.params * 4 * 2 + stats.activationPeakBytesPerDevice *
                                                        loaded->module->mesh.numDevices(),
                             "this run");
      !s)
    return report(s.error());
  // Random weights draw LayerNorm scales near 1: the module as the frontend built it shows which.
  Expected<std::unique_ptr<frontend::WeightSource>> source =
      frontend::openWeights(weights, loaded->module.get());
  if (!source)
    return report(source.error());

  Expected<passes::PipelineOptions> pipeline = passFlags.toOptions();
  if (!pipeline)
    return report(pipeline.error());
  passes::PassManager pm(*pipeline, std::cerr);
  if (Status s = pm.run(*loaded->module, ctx); !s)
    return report(s.error());
  std::shared_ptr<const ir::Module> module = std::move(loaded->module);
  // The weights bind by name to the signature of what the backend compiles, before it compiles:
  // a file that does not fit fails at once, not after seconds of code generation.
  Signature signature = ir::signatureOf(*module);
  Expected<std::vector<Tensor>> params = bindParams(
      signature, **source, {f.allowUnusedWeights, f.allowNonfinite}, warns ? &std::cerr : nullptr);
  if (!params)
    return report(params.error());

  // Under MPI each process is one device and may use the host's cores as it likes.
  int threads = f.threads > 0
                    ? f.threads
                    : defaultThreads(runnerOptions.processes ? 1 : module->mesh.numDevices());
  // MPI ranks compile alike: only a single process says what it compiled.
  Expected<backends::Compiler> compile =
      backendCompiler(f.backend, threads, runnerOptions.processes ? nullptr : &std::cerr);
  if (!compile)
    return report(compile.error());
  Expected<std::shared_ptr<const runtime::Executable>> executable = (*compile)(module);
  if (!executable)
    return report(executable.error());
  Expected<std::unique_ptr<runtime::MeshRunner>> runner =
      runtime::MeshRunner::create(*executable, *params, runnerOptions);
  if (!runner)
    return report(runner.error());
  // One pass over every micro-batch; the outputs joined back along the batch.
  // Every run is collective under MPI, so every process runs every micro-batch, though only the
  // writer gets outputs.
  auto forward = [&]() -> Expected<Tensor> {
    std::vector<Tensor> outs;
    for (const Tensor &part : parts) {
      VITC_ASSIGN(std::vector<Tensor> out, (*runner)->run({part}));
      if (!out.empty())
        outs.push_back(std::move(out[0]));
    }
    if (outs.empty())
      return Tensor(); // not the writer under MPI
    return joinBatch(outs);
  };
  Expected<Tensor> out = forward();
  if (!out)
    return report(out.error());

  std::vector<double> seconds;
  for (int i = 0; i < f.repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (Expected<Tensor> again = forward(); !again)
      return report(again.error());
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (!f.mesh.trace.empty())
    if (Status s = (*runner)->writeTrace(f.mesh.trace); !s)
      return report(s.error());
  if (!(*runner)->isWriter())
    return 0;
  if (Status s = formats::writeNpy(f.output, *out); !s)
    return report(s.error());

  std::vector<std::string> labels = loaded->labels();
  if (out->rank() == 2 && !labels.empty() && static_cast<int64_t>(labels.size()) == out->dim(1))
    printTop5(*out, labels);
  if (!seconds.empty()) {
    std::sort(seconds.begin(), seconds.end());
    double median = seconds[seconds.size() / 2];
    std::cout << fmt::format("median latency {:.3f} ms over {} runs, {:.2f} images/s\n",
                             median * 1e3, seconds.size(),
                             static_cast<double>(images->dim(0)) / median);
  }
  return 0;
}

} // namespace vitc::tools
