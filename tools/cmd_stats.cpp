// `vitc stats`: parameters, FLOPs, tokens and per-device memory, from the IR alone.
#include "passes/analysis.h"
#include "passes/optimizer.h"
#include "passes/pass_manager.h"
#include "tools/model_run.h"

namespace vitc::tools {
namespace {

std::string millions(int64_t n) { return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6); }

std::string bytes(int64_t b) {
  double v = static_cast<double>(b);
  if (v >= 1024.0 * 1024 * 1024)
    return fmt::format("{:.2f} GiB", v / (1024.0 * 1024 * 1024));
  return fmt::format("{:.1f} MiB", v / (1024.0 * 1024));
}

} // namespace

int runStats(int argc, char **argv) {
  ModelOptions model;
  bool train = false;
  std::string optimizer = "adamw";
  double momentum = 0;
  std::string dtype = "f32";
  po::options_description desc("vitc stats options");
  desc.add_options()("help,h", "show this help")(
      "train", po::bool_switch(&train),
      "also the training step: its FLOPs, optimizer state and memory per device")(
      "optimizer", po::value(&optimizer)->default_value("adamw"),
      "with --train: sgd, adamw or adafactor")("momentum", po::value(&momentum)->default_value(0),
                                               "with --train: adafactor's momentum")(
      "dtype", po::value(&dtype)->default_value("f32"),
      "element type of matmul inputs: f32 or bf16 (bytes of weights and activations)");
  model.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc stats MODEL [--batch B] [--mesh data=T,model=K]", exit))
    return exit;
  if (Status s = model.check(); !s)
    return usageError(s.error());
  passes::OptimizerOptions opt;
  if (!passes::parseOptimizerKind(optimizer, opt.kind))
    return usageError(
        fmt::format("unknown --optimizer={} (expected sgd, adamw or adafactor)", optimizer));
  if (!(momentum >= 0 && momentum < 1))
    return usageError("--momentum must be in [0, 1)");
  opt.momentum = momentum;
  Expected<passes::PassSetting> dtypeSetting = parseDTypeFlag(dtype);
  if (!dtypeSetting)
    return usageError(dtypeSetting.error());

  // With a layout's micro-batches the programs are built for one of them (`vitc run` and `vitc
  // train` run them so): memory is one micro-batch's, FLOPs the whole batch's.
  Expected<ModelLayout> layout = readModelLayout(model);
  if (!layout)
    return report(layout.error());
  Expected<int64_t> microBatch = microbatchSize(model.batch, model, *layout, nullptr);
  if (!microBatch)
    return report(microBatch.error());
  int64_t micro = model.batch / *microBatch;
  model.batch = *microBatch;
  passes::PassContext ctx;
  ctx.options = layout->passOptions;
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model, *layout);
  if (!loaded)
    return report(loaded.error());
  dtypeSetting->applyTo(ctx.options);
  ir::Module &m = *loaded->module;
  // Model FLOPs and parameters come from the program as written; memory from the compiled one.
  passes::ModuleStats before = passes::analyze(m);
  // The training step, lowered as `vitc train` lowers it, for its memory plan.
  std::unique_ptr<ir::Module> step;
  if (train) {
    std::ostringstream trainSink;
    Expected<std::unique_ptr<ir::Module>> lowered =
        lowerTrainingStep(m, passes::LossKind::SoftmaxCrossEntropy, {}, ctx.options, opt,
                          Loc::inFile(loaded->path), trainSink);
    if (!lowered)
      return report(lowered.error());
    step = std::move(*lowered);
  }
  passes::PipelineOptions pipeline;
  std::ostringstream sink;
  passes::PassManager pm(pipeline, sink);
  if (Status s = pm.run(m, ctx); !s)
    return report(s.error());
  passes::ModuleStats after = passes::analyze(m);

  before.flops *= static_cast<double>(micro);
  int64_t batch = before.batch * micro;
  std::cout << fmt::format("model          {} ({})\n", m.name, loaded->path);
  std::cout << fmt::format("mesh           {} ({} device{})\n", m.mesh.str(), m.mesh.numDevices(),
                           m.mesh.numDevices() == 1 ? "" : "s");
  std::cout << fmt::format("batch          {}{}\n", batch,
                           micro > 1 ? fmt::format(" ({} micro-batches of {})", micro, before.batch)
                                     : std::string());
  std::cout << fmt::format("dtype          {}\n",
                           dtype == "bf16" ? "bf16 matmul inputs, f32 accumulation" : "f32");
  if (const ir::AttrValue *t = m.attrs.find("tokens"); t && std::holds_alternative<int64_t>(*t))
    std::cout << fmt::format("tokens         {} per image\n", std::get<int64_t>(*t));
  std::cout << fmt::format("parameters     {} total, {} without head ({} in the pooling head and "
                           "classifier)\n",
                           millions(before.params), millions(before.params - before.headParams),
                           millions(before.headParams));
  std::cout << fmt::format("GFLOPs         {:.2f} per image, {:.2f} for the batch ({} matmuls)\n",
                           before.flops / 1e9 / static_cast<double>(batch), before.flops / 1e9,
                           before.matmuls);
  std::cout << fmt::format("memory/device  {} weights + {} peak activations = {}\n",
                           bytes(after.weightBytesPerDevice),
                           bytes(after.activationPeakBytesPerDevice),
                           bytes(after.weightBytesPerDevice + after.activationPeakBytesPerDevice));
  if (!train)
    return 0;
  // Training FLOPs by the usual count: the backward pass does twice the forward's matmul work.
  std::cout << fmt::format("train GFLOPs   {:.2f} per step (forward + backward = 3x forward)\n",
                           3 * before.flops / 1e9);
  int64_t stateFloats = 0;
  for (const ir::Op *p : m.params())
    stateFloats += passes::optimizerStateFloats(opt, p->shape());
  std::cout << fmt::format("optimizer      {}: {:.2f} bytes of state per parameter ({})\n",
                           passes::optimizerName(opt.kind),
                           before.params ? 4.0 * static_cast<double>(stateFloats) /
                                               static_cast<double>(before.params)
                                         : 0.0,
                           bytes(4 * stateFloats));
  // Weights and optimizer state are the step's parameters; gradients and saved activations live
  // in its workspace, whose peak the memory plan gives.
  passes::ModuleStats trained = passes::analyze(*step);
  std::cout << fmt::format(
      "train memory   {} weights and optimizer state + {} peak gradients "
      "and activations = {} per device\n",
      bytes(trained.weightBytesPerDevice), bytes(trained.activationPeakBytesPerDevice),
      bytes(trained.weightBytesPerDevice + trained.activationPeakBytesPerDevice));
  // What the llvm backend's program of the step holds, as `vitc train` prints it beside what the
  // run measures: the weights also as its matmuls read them, and its kernels' scratch.
  int threads = defaultThreads(step->mesh.numDevices());
  Expected<DeviceMemoryPlan> program = deviceMemoryPlan("llvm", *step, threads);
  if (!program)
    return report(program.error());
  std::cout << fmt::format("train program  {} weights and optimizer state + {} packed weights + {} "
                           "gradients and activations + {} kernel scratch ({} thread{}) = {} per "
                           "device (llvm)\n",
                           bytes(program->params), bytes(program->prepared),
                           bytes(program->workspace), bytes(program->scratch), threads,
                           threads == 1 ? "" : "s", bytes(program->total()));
  return 0;
}

} // namespace vitc::tools
