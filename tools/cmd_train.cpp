// `vitc train`: compile a training step (forward, loss, autodiff, optimizer) and run it over data.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>

#include "frontend/formats/safetensors.h"
#include "ir/signature.h"
#include "passes/accumulate_microbatches.h"
#include "passes/optimizer.h"
#include "passes/registry.h"
#include "tools/model_run.h"
#include "train/augment.h"
#include "train/dataset.h"
#include "train/schedule.h"

namespace vitc::tools {
namespace {

using Clock = std::chrono::steady_clock;

struct TrainFlags {
  std::string data, weights, output, checkpoint, resume, backend = "llvm";
  std::string optimizer, schedule, augment, loss = "softmax";
  double lr = 0, weightDecay = 0, clip = 0, labelSmoothing = 0, momentum = 0;
  int64_t steps = 0, epochs = 0, warmup = 0, cooldown = 0, checkpointEvery = 0;
  uint64_t seed = 0;
  int threads = 0;
  MeshRunFlags mesh;
  bool allowUnusedWeights = false, noShuffle = false;
};

// A flag given on the command line wins over the spec's [train] value, which wins over `fallback`.
template <typename T>
T pick(const po::variables_map &vm, const char *flag, const T &given,
       const std::optional<T> &recipe, const T &fallback) {
  if (vm.count(flag) && !vm[flag].defaulted())
    return given;
  return recipe ? *recipe : fallback;
}

std::string formatDuration(double seconds) {
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600)
    return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

// The step's inputs: the images and the labels of each micro-batch (one, the whole batch, without
// micro-batches), and the optimizer's scalars.
struct StepInputs {
  std::vector<size_t> pixels, labels;                  // by micro-batch
  std::vector<std::pair<size_t, std::string>> scalars; // index, name
};

// `images` is the forward module's image input; accumulate-microbatches names each micro-batch's
// inputs after the forward's.
Expected<StepInputs> findStepInputs(const Signature &sig, const std::string &images,
                                    int64_t microbatches) {
  StepInputs in;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < sig.inputs.size(); ++i) {
    const std::string &name = sig.inputs[i].name;
    if (name.rfind("optimizer.", 0) == 0)
      in.scalars.emplace_back(i, name);
    else
      index[name] = i;
  }
  for (int64_t part = 0; part < microbatches; ++part)
    for (auto [list, name] : {std::pair{&in.pixels, images}, {&in.labels, std::string("labels")}}) {
      std::string input =
          microbatches > 1 ? passes::microbatchInputName(name, part) : std::string(name);
      auto it = index.find(input);
      if (it == index.end())
        return Error(fmt::format("the training step has no input '{}'", input));
      list->push_back(it->second);
      index.erase(it);
    }
  if (!index.empty())
    return Error(fmt::format("the training step has an input '{}' that vitc train cannot feed",
                             index.begin()->first));
  return in;
}

// Checkpoint metadata: where the run stands, so that a resumed run continues exactly.
struct Progress {
  int64_t step = 0;
  train::BatchSampler::Position position;
};

std::map<std::string, std::string> checkpointMetadata(const frontend::LoadedModel &model,
                                                      const passes::OptimizerOptions &o,
                                                      const Progress &p, uint64_t seed,
                                                      int64_t batch) {
  return {{"format", "vitc-train-checkpoint"},
          {"model", model.module ? model.module->name : ""},
          {"optimizer", std::string(passes::optimizerName(o.kind))},
          {"step", std::to_string(p.step)},
          {"epoch", std::to_string(p.position.epoch)},
          {"batch_index", std::to_string(p.position.batch)},
          {"seed", std::to_string(seed)},
          {"batch", std::to_string(batch)}};
}

Expected<int64_t> metadataInt(const formats::SafetensorsFile &f, const std::string &key) {
  auto it = f.metadata().find(key);
  int64_t v = 0;
  if (it == f.metadata().end() || it->second.empty() ||
      std::from_chars(it->second.data(), it->second.data() + it->second.size(), v).ec !=
          std::errc())
    return makeError(Loc::inFile(f.path()),
                     "not a vitc training checkpoint: its metadata lacks an integer '{}'", key);
  return v;
}

Status writeWeights(const std::string &path, const Signature &sig,
                    const std::vector<Tensor> &values,
                    const std::map<std::string, std::string> &metadata) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (size_t i = 0; i < values.size(); ++i)
    tensors.emplace_back(sig.params[i].name, values[i]);
  return formats::writeSafetensors(path, tensors, metadata);
}

// The share of `data` whose argmax of the logits the model gets right, `batch` images per run;
// the last batch is padded with zeros and its padding ignored. (On the writer; collective.)
Expected<double> testAccuracy(runtime::MeshRunner &runner, const train::Dataset &data,
                              int64_t batch) {
  int64_t image = data.channels * data.height * data.width, correct = 0;
  Tensor pixels = Tensor::zeros({batch, data.channels, data.height, data.width});
  for (int64_t start = 0; start < data.count; start += batch) {
    int64_t n = std::min(batch, data.count - start);
    float *dst = pixels.mutableData();
    std::copy(data.images.begin() + start * image, data.images.begin() + (start + n) * image, dst);
    std::fill(dst + n * image, dst + batch * image, 0.0f);
    VITC_ASSIGN(std::vector<Tensor> out, runner.run({pixels}));
    if (out.empty())
      continue; // an MPI process that is not the writer: rank 0 counts
    const Tensor &logits = out[0];
    int64_t classes = logits.dim(1);
    for (int64_t i = 0; i < n; ++i) {
      const float *row = logits.data() + i * classes;
      int64_t best = std::max_element(row, row + classes) - row;
      correct += best == data.labels[static_cast<size_t>(start + i)];
    }
  }
  return data.count ? static_cast<double>(correct) / static_cast<double>(data.count) : 0.0;
}

// The most this process has held in memory so far.
int64_t peakResidentBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// `module` compiled by `compile`, ready to run with `params` on its mesh.
Expected<std::unique_ptr<runtime::MeshRunner>>
compileRunner(const backends::Compiler &compile, std::unique_ptr<ir::Module> module,
              const std::vector<Tensor> &params, const runtime::RunnerOptions &options) {
  VITC_ASSIGN(std::shared_ptr<const runtime::Executable> exe,
              compile(std::shared_ptr<const ir::Module>(std::move(module))));
  return runtime::MeshRunner::create(exe, params, options);
}

} // namespace

int runTrain(int argc, char **argv) {
  ModelOptions model;
  PassFlags passFlags;
  TrainFlags f;
  int64_t batchFlag = 0;
  po::options_description desc("vitc train options");
  desc.add_options()("help,h", "show this help")(
      "model", po::value(&model.model)->required(),
      "a spec (.vit), a Hugging Face checkpoint directory, or IR text")(
      "mesh", po::value(&model.mesh), "device mesh, e.g. data=2,model=2 (default: one device)")(
      "layout", po::value(&model.layout), "sharding layout (JSON, as vitc autotune writes it)")(
      "data", po::value(&f.data)->required(),
      "training data: a .npz with images and labels, or a directory of MNIST-format IDX files")(
      "weights", po::value(&f.weights),
      "initial weights: .safetensors, .npz, or random[:SEED] (default: a checkpoint's own, else "
      "random with --seed)")("batch", po::value(&batchFlag),
                             "images per step (default: [train] "
                             "batch, else 32)")("steps", po::value(&f.steps),
                                                "steps to run (default: --epochs over the data)")(
      "epochs", po::value(&f.epochs), "passes over the data (default: [train] epochs, else 1)")(
      "optimizer", po::value(&f.optimizer),
      "sgd, adamw or adafactor (default: [train], else adamw)")(
      "lr", po::value(&f.lr), "peak learning rate (default: [train] lr, else 1e-3)")(
      "weight-decay", po::value(&f.weightDecay), "decoupled weight decay (default 0)")(
      "schedule", po::value(&f.schedule), "constant, cosine or rsqrt after the warmup")(
      "warmup", po::value(&f.warmup), "steps of linear warmup")(
      "cooldown", po::value(&f.cooldown), "last steps of linear cooldown to zero")(
      "clip", po::value(&f.clip), "clip the global gradient norm to this (0: no clipping)")(
      "label-smoothing", po::value(&f.labelSmoothing), "label smoothing (softmax loss)")(
      "momentum", po::value(&f.momentum), "adafactor's momentum (0: none)")(
      "augment", po::value(&f.augment), "none, flip, crop (4 pixels) or crop-flip")(
      "loss", po::value(&f.loss)->default_value("softmax"),
      "softmax (cross-entropy over classes) or sigmoid (per-class binary cross-entropy)")(
      "seed", po::value(&f.seed)->default_value(0), "seed of the data order and random weights")(
      "no-shuffle", po::bool_switch(&f.noShuffle), "read the data in file order")(
      "threads", po::value(&f.threads)->default_value(0), "threads (default: the host's cores)")(
      "backend", po::value(&f.backend)->default_value("llvm"), "llvm or interpreter")(
      "output,o", po::value(&f.output)->required(), "where to write the trained weights")(
      "checkpoint-every", po::value(&f.checkpointEvery)->default_value(0),
      "write a checkpoint every K steps (0: only when a step goes non-finite)")(
      "checkpoint", po::value(&f.checkpoint),
      "the checkpoint file (default: OUTPUT with .ckpt.safetensors)")(
      "resume", po::value(&f.resume), "continue from a checkpoint")(
      "allow-unused-weights", po::bool_switch(&f.allowUnusedWeights),
      "train although the weights file holds tensors the model does not use");
  f.mesh.add(desc, "training");
  passFlags.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc train MODEL --data D -o OUT.safetensors", exit))
    return exit;
  if (Status s = checkBackendName(f.backend); !s)
    return usageError(s.error().message());
  if (f.loss != "softmax" && f.loss != "sigmoid")
    return usageError(fmt::format("unknown --loss={} (expected softmax or sigmoid)", f.loss));
  if (f.threads < 0 || f.threads > kMaxThreads)
    return usageError(fmt::format("--threads must be between 0 and {}", kMaxThreads));
  if (vm.count("steps") && vm.count("epochs"))
    return usageError("give --steps or --epochs, not both");
  for (auto [flag, value] : {std::pair<const char *, double>{"--lr", f.lr},
                             {"--weight-decay", f.weightDecay},
                             {"--clip", f.clip},
                             {"--momentum", f.momentum}})
    if (!(value >= 0) || !std::isfinite(value))
      return usageError(fmt::format("{} must be a finite number, not negative", flag));
  if (!(f.labelSmoothing >= 0 && f.labelSmoothing < 1))
    return usageError("--label-smoothing must be in [0, 1)");
  if (!(f.momentum < 1))
    return usageError("--momentum must be below 1");
  for (auto [flag, value] : {std::pair<const char *, int64_t>{"--steps", f.steps},
                             {"--epochs", f.epochs},
                             {"--warmup", f.warmup},
                             {"--cooldown", f.cooldown},
                             {"--checkpoint-every", f.checkpointEvery}})
    if (value < 0)
      return usageError(fmt::format("{} must not be negative", flag));
  if (vm.count("batch") && (batchFlag < 1 || batchFlag > kMaxBatch))
    return usageError(fmt::format("--batch must be between 1 and {}", kMaxBatch));
  if (Status s = passFlags.check(vm); !s)
    return usageError(s.error());
  if (Status s = f.mesh.check(); !s)
    return usageErrorOf(s.error());
  if (!model.mesh.empty())
    if (Expected<ir::Mesh> mesh = ir::parseMesh(model.mesh, Loc::inFile("--mesh")); !mesh)
      return usageError(mesh.error());
  if (f.checkpoint.empty()) {
    std::string base = f.output;
    if (base.size() > 12 && base.substr(base.size() - 12) == ".safetensors")
      base.resize(base.size() - 12);
    f.checkpoint = base + ".ckpt.safetensors";
  }
  std::vector<std::pair<std::string, std::string>> inputs = model.inputFiles();
  inputs.emplace_back("--data", f.data);
  inputs.emplace_back("--weights", f.weights);
  inputs.emplace_back("--resume", f.resume);
  for (const auto &[flag, path] : {std::pair<const char *, const std::string &>{"-o", f.output},
                                   {"--checkpoint", f.checkpoint},
                                   {"--trace", f.mesh.trace}}) {
    if (Status s = checkNotAnInput(flag, path, inputs); !s)
      return usageError(s.error());
    if (Status s = checkWritable(path); !s)
      return report(s.error());
  }
  if (f.checkpoint == f.output)
    return usageError("--checkpoint and -o name the same file");
  Expected<runtime::RunnerOptions> options = f.mesh.runnerOptions();
  if (!options)
    return report(options.error());
  runtime::RunnerOptions &runnerOptions = *options;
  auto report = [&runnerOptions](const Error &e) { return reportOnce(runnerOptions, e); };

  // What the process holds before any of the run's data (the binary, its libraries): the memory
  // line at the end says how far above it the run went.
  int64_t startResident = peakResidentBytes();
  // The data first: its image size and classes are checked against the model once it is built.
  Expected<train::DataSplits> data = train::loadDataset(f.data);
  if (!data)
    return report(data.error());

  // The recipe: command line over the spec's [train] table over vitc's defaults.
  frontend::TrainRecipe recipe;
  if (Expected<frontend::LoadedModel> probe = frontend::loadModel(model.model, {1});
      probe && probe->config)
    recipe = probe->config->train;
  else if (!probe)
    return report(probe.error());
  int64_t batch = pick<int64_t>(vm, "batch", batchFlag, recipe.batch, 32);
  if (batch < 1 || batch > kMaxBatch)
    return report(
        makeError(Loc::inFile(model.model), "[train] batch must be between 1 and {}", kMaxBatch));
  if (batch > data->train.count)
    return report(makeError(Loc::inFile(f.data),
                            "a batch of {} images is larger than the data "
                            "({} images)",
                            batch, data->train.count));
  passes::OptimizerOptions opt;
  std::string optimizer =
      pick<std::string>(vm, "optimizer", f.optimizer, recipe.optimizer, "adamw");
  if (!passes::parseOptimizerKind(optimizer, opt.kind))
    return usageError(
        fmt::format("unknown --optimizer={} (expected sgd, adamw or adafactor)", optimizer));
  opt.weightDecay = pick<double>(vm, "weight-decay", f.weightDecay, recipe.weightDecay, 0.0);
  opt.clip = pick<double>(vm, "clip", f.clip, recipe.clip, 0.0);
  opt.momentum = pick<double>(vm, "momentum", f.momentum, recipe.momentum, 0.0);
  if (opt.momentum >= 1)
    return report(makeError(Loc::inFile(model.model), "[train] momentum must be below 1"));
  double smoothing =
      pick<double>(vm, "label-smoothing", f.labelSmoothing, recipe.labelSmoothing, 0.0);
  if (smoothing >= 1)
    return report(makeError(Loc::inFile(model.model), "[train] label_smoothing must be below 1"));
  train::Schedule schedule;
  schedule.lr = pick<double>(vm, "lr", f.lr, recipe.lr, 1e-3);
  std::string scheduleName =
      pick<std::string>(vm, "schedule", f.schedule, recipe.schedule, "constant");
  if (!train::parseScheduleKind(scheduleName, schedule.kind))
    return usageError(
        fmt::format("unknown --schedule={} (expected constant, cosine or rsqrt)", scheduleName));
  schedule.warmup = pick<int64_t>(vm, "warmup", f.warmup, recipe.warmup, 0);
  schedule.cooldown = pick<int64_t>(vm, "cooldown", f.cooldown, recipe.cooldown, 0);
  std::string augmentName = pick<std::string>(vm, "augment", f.augment, recipe.augment, "none");
  Expected<train::Augment> augment = train::parseAugment(augmentName);
  if (!augment)
    return usageError(augment.error().message());

  // The model is built for one micro-batch where the layout runs the batch in parts; the training
  // step repeats it per part (accumulate-microbatches) and updates once.
  Expected<ModelLayout> layout = readModelLayout(model, &passFlags); // the one read of --layout
  if (!layout)
    return report(layout.error());
  Expected<int64_t> microBatch = microbatchSize(batch, model, *layout, &passFlags);
  if (!microBatch)
    return report(microBatch.error());
  int64_t micro = batch / *microBatch;
  model.batch = *microBatch;
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model, *layout);
  if (!loaded)
    return report(loaded.error());
  passes::PassOptions passOptions = layout->passOptions;
  ir::Module &forward = *loaded->module;
  if (Status s = checkClassifier(forward, Loc::inFile(loaded->path)); !s)
    return report(s.error());
  const Shape &imageShape = forward.inputs()[0]->shape();
  int64_t classes = forward.output()->operand(0)->shape()[1];
  train::BatchSampler sampler(data->train, batch, f.seed, !f.noShuffle);
  int64_t steps =
      vm.count("steps") ? f.steps
      : vm.count("epochs")
          ? f.epochs * sampler.batchesPerEpoch()
          : (recipe.steps ? *recipe.steps : recipe.epochs.value_or(1) * sampler.batchesPerEpoch());
  schedule.total = std::max<int64_t>(1, steps);
  for (train::Dataset *d : {&data->train, data->test ? &*data->test : nullptr}) {
    if (!d)
      continue;
    if (Status s = train::checkDataset(*d, imageShape[1], imageShape[2], imageShape[3], classes);
        !s)
      return report(s.error());
    const frontend::ModelConfig *c = loaded->config ? &*loaded->config : nullptr;
    std::vector<double> mean = c ? c->mean : std::vector<double>{0.0};
    std::vector<double> std = c ? c->std : std::vector<double>{1.0};
    train::normalize(*d, std::vector<float>(mean.begin(), mean.end()),
                     std::vector<float>(std.begin(), std.end()));
  }

  // The training step: the forward pass, its loss, and the passes of trainingPipeline().
  Expected<passes::PipelineOptions> pipeline = passFlags.toOptions();
  if (!pipeline)
    return report(pipeline.error());
  std::vector<std::string> remarks;
  Expected<std::unique_ptr<ir::Module>> step = lowerTrainingStep(
      forward,
      f.loss == "softmax" ? passes::LossKind::SoftmaxCrossEntropy
                          : passes::LossKind::SigmoidCrossEntropy,
      *pipeline, passOptions, opt, Loc::inFile(loaded->path), std::cerr, &remarks);
  if (!step)
    return report(step.error());
  // On a mesh, what the sharding passes did (how the gradients are reduced) is worth a line each.
  bool speaks = !runnerOptions.processes || runnerOptions.processes->rank() == 0;
  if (forward.mesh.numDevices() > 1 && speaks)
    printRemarks(remarks, "", {});
  // The forward pass alone, for the test accuracy.
  passes::PassContext evalCtx;
  evalCtx.options = passOptions;
  std::unique_ptr<ir::Module> eval = forward.clone();
  if (Status s = passes::PassManager({}, std::cerr).run(*eval, evalCtx); !s)
    return report(s.error());

  Signature stepSig = ir::signatureOf(**step);
  Signature weightSig = ir::signatureOf(forward);
  Expected<StepInputs> stepInputs =
      findStepInputs(stepSig, forward.inputs()[0]->attrs.getStr("name"), micro);
  if (!stepInputs)
    return report(makeError(Loc::inFile(loaded->path), "{}", stepInputs.error().message()));
  if (stepSig.outputs.size() != stepSig.params.size() + 1)
    return report(makeError(Loc::inFile(loaded->path),
                            "the training step must output the loss and every parameter's next "
                            "value (was a pass of the training pipeline left out?)"));
  // Weights first in the step's params, in the forward module's order, then optimizer state.
  std::vector<size_t> order; // step param index for each weight, then each state tensor
  {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < stepSig.params.size(); ++i)
      index[stepSig.params[i].name] = i;
    for (const TensorSpec &w : weightSig.params)
      order.push_back(index.at(w.name));
    for (size_t i = 0; i < stepSig.params.size(); ++i)
      if (!weightSig.param(stepSig.params[i].name))
        order.push_back(i);
  }

  // Initial values: a checkpoint to resume, or the weights and zero optimizer state.
  Progress progress;
  std::vector<Tensor> params(stepSig.params.size());
  if (!f.resume.empty()) {
    Expected<formats::SafetensorsFile> ckpt = formats::SafetensorsFile::open(f.resume);
    if (!ckpt)
      return report(ckpt.error());
    for (const char *key : {"step", "epoch", "batch_index"})
      if (Expected<int64_t> v = metadataInt(*ckpt, key); !v)
        return report(v.error());
    progress.step = *metadataInt(*ckpt, "step");
    progress.position = {*metadataInt(*ckpt, "epoch"), *metadataInt(*ckpt, "batch_index")};
    Expected<std::unique_ptr<formats::WeightSource>> source =
        formats::openSafetensorsWeights(f.resume);
    if (!source)
      return report(source.error());
    Expected<std::vector<Tensor>> all = bindParams(stepSig, **source);
    if (!all)
      return report(makeError(Loc::inFile(f.resume), "cannot resume from this checkpoint: {}",
                              all.error().message()));
    params = std::move(*all);
    sampler.seek(progress.position);
  } else {
    std::string weights = f.weights.empty() ? loaded->defaultWeights : f.weights;
    if (weights.empty())
      weights = fmt::format("random:{}", f.seed);
    Expected<std::unique_ptr<frontend::WeightSource>> source =
        frontend::openWeights(weights, &forward);
    if (!source)
      return report(source.error());
    Expected<std::vector<Tensor>> w =
        bindParams(weightSig, **source, {f.allowUnusedWeights, false}, &std::cerr);
    if (!w)
      return report(w.error());
    for (size_t i = 0; i < weightSig.params.size(); ++i)
      params[order[i]] = (*w)[i].clone();
    for (size_t i = weightSig.params.size(); i < order.size(); ++i)
      params[order[i]] = Tensor::zeros(stepSig.params[order[i]].shape);
  }

  int64_t devices = forward.mesh.numDevices();
  int threads = f.threads > 0 ? f.threads : defaultThreads(runnerOptions.processes ? 1 : devices);
  // What the plans say a device needs: weights and optimizer state (the step's params), the
  // weights as the kernels read them, the peak of its gradients and activations (the workspace).
  Expected<DeviceMemoryPlan> planned = deviceMemoryPlan(f.backend, **step, threads);
  if (!planned)
    return report(planned.error());
  // MPI ranks compile alike: only a single process says what it compiled.
  Expected<backends::Compiler> compile =
      backendCompiler(f.backend, threads, runnerOptions.processes ? nullptr : &std::cerr);
  if (!compile)
    return report(compile.error());
  Expected<std::unique_ptr<runtime::MeshRunner>> runner =
      compileRunner(*compile, std::move(*step), params, runnerOptions);
  if (!runner)
    return report(runner.error());
  bool writer = (*runner)->isWriter();
  // Each device keeps its shards of the params from step to step; they are gathered only to be
  // written.
  params.clear();
  auto writeCheckpoint = [&]() -> Status {
    VITC_ASSIGN(std::vector<Tensor> all, (*runner)->params());
    if (!writer)
      return Status::ok();
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (size_t i = 0; i < stepSig.params.size(); ++i)
      tensors.emplace_back(stepSig.params[i].name, all[i]);
    return formats::writeSafetensors(f.checkpoint, tensors,
                                     checkpointMetadata(*loaded, opt, progress, f.seed, batch));
  };

  std::vector<Tensor> stepIn(stepSig.inputs.size());
  // The batch as the sampler fills it; each micro-batch's inputs are rows of it.
  Tensor batchPixels = Tensor::zeros({batch, imageShape[1], imageShape[2], imageShape[3]});
  Tensor batchLabels = Tensor::zeros({batch, classes});
  for (int64_t part = 0; part < micro; ++part) {
    stepIn[stepInputs->pixels[part]] =
        micro == 1 ? batchPixels : Tensor::zeros(stepSig.inputs[stepInputs->pixels[part]].shape);
    stepIn[stepInputs->labels[part]] =
        micro == 1 ? batchLabels : Tensor::zeros(stepSig.inputs[stepInputs->labels[part]].shape);
  }
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  bool terminal = writer && isatty(STDERR_FILENO);
  int64_t reportEvery = std::max<int64_t>(1, steps / 20);
  std::vector<double> stepSeconds;
  double loss = 0;
  auto start = Clock::now();
  for (; progress.step < steps; ++progress.step) {
    auto t0 = Clock::now();
    sampler.next(batchPixels.mutableData(), labels.data());
    train::augmentBatch(*augment, batchPixels.mutableData(), batch, imageShape[1], imageShape[2],
                        imageShape[3], f.seed, progress.step);
    train::oneHot(labels.data(), batch, classes, static_cast<float>(smoothing),
                  batchLabels.mutableData());
    if (micro > 1)
      for (int64_t part = 0; part < micro; ++part) {
        for (auto [whole, index] : {std::pair{&batchPixels, stepInputs->pixels[part]},
                                    {&batchLabels, stepInputs->labels[part]}}) {
          Tensor &dst = stepIn[index];
          std::copy_n(whole->data() + part * dst.numel(), dst.numel(), dst.mutableData());
        }
      }
    double lr = train::learningRate(schedule, progress.step);
    auto scalars = train::optimizerScalars(opt, lr, progress.step);
    for (const auto &[index, name] : stepInputs->scalars) {
      auto it = std::find_if(scalars.begin(), scalars.end(),
                             [&](const auto &s) { return s.first == name; });
      if (it == scalars.end())
        return report(makeError(Loc::inFile(loaded->path),
                                "the training step reads '{}', which the {} optimizer does not "
                                "provide",
                                name, optimizer));
      Tensor t = Tensor::zeros({});
      t.mutableData()[0] = static_cast<float>(it->second);
      stepIn[index] = t;
    }
    Expected<runtime::MeshRunner::StepResult> out = (*runner)->step(stepIn, 1);
    if (!out)
      return report(out.error());
    if (writer)
      loss = out->outputs[0].data()[0];
    if (out->nonFinite) {
      // Nothing was updated: the params before this step are the last good ones.
      std::string bad = *out->nonFinite == 0
                            ? fmt::format("the loss is {}", loss)
                            : fmt::format("the update made '{}' non-finite",
                                          stepSig.params[*out->nonFinite - 1].name);
      Status saved = writeCheckpoint();
      std::string where =
          saved ? fmt::format("; the last good state is in {}", f.checkpoint)
                : fmt::format("; writing the last good state failed: {}", saved.error().str());
      if (terminal)
        std::cerr << "\n";
      return report(makeError(Loc::inFile(f.data), "step {}: {}{}", progress.step + 1, bad, where));
    }
    progress.position = sampler.position();
    stepSeconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    int64_t done = progress.step + 1;
    if (f.checkpointEvery > 0 && done % f.checkpointEvery == 0 && done < steps) {
      Progress after = progress;
      after.step = done;
      std::swap(progress, after);
      Status s = writeCheckpoint();
      std::swap(progress, after);
      if (!s)
        return report(s.error());
    }
    if (!writer)
      continue;
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    double perStep = elapsed / static_cast<double>(stepSeconds.size());
    std::string line = fmt::format("step {}/{}  loss {:.4f}  lr {:.3g}  {:.1f} images/s  ETA {}",
                                   done, steps, loss, lr, static_cast<double>(batch) / perStep,
                                   formatDuration(perStep * static_cast<double>(steps - done)));
    if (terminal)
      std::cerr << "\r\033[K" << line << std::flush;
    else if (done % reportEvery == 0 || done == steps)
      std::cerr << line << "\n";
  }
  if (terminal)
    std::cerr << "\n";

  // The weights as the devices hold them, in the forward module's order: what -o writes. The test
  // set runs on every process (under MPI), so every process gets them.
  Expected<std::vector<Tensor>> trained = (*runner)->params(/*everywhere=*/true);
  if (!trained)
    return report(trained.error());
  std::vector<Tensor> weights;
  for (size_t i = 0; i < weightSig.params.size(); ++i)
    weights.push_back((*trained)[order[i]]);
  if (writer)
    if (Status s = writeWeights(f.output, weightSig, weights, {{"format", "pt"}}); !s)
      return report(s.error());
  if (!f.mesh.trace.empty())
    if (Status s = (*runner)->writeTrace(f.mesh.trace); !s)
      return report(s.error());
  if (writer) {
    // The plan against what this process holds: its devices' programs (their weights, prepared
    // weights and workspaces, as allocated) and its peak resident set, which also holds the data,
    // the compiler and the libraries.
    int64_t held = 0;
    for (const runtime::DeviceProgram::Memory &m : (*runner)->memory())
      held += m.weightBytes + m.activationPeakBytes;
    int64_t local = runnerOptions.processes ? 1 : devices, peak = peakResidentBytes();
    std::cout << fmt::format(
        "memory: plan {} per device ({} weights and optimizer state + {} packed weights + {} "
        "gradients and activations + {} kernel scratch); the {} device{} of this process hold "
        "{}; peak resident set {}, {} above the {} it held before loading the model (the plan "
        "for its devices is {:.1f}% of that)\n",
        byteSize(planned->total()), byteSize(planned->params), byteSize(planned->prepared),
        byteSize(planned->workspace), byteSize(planned->scratch), local, local == 1 ? "" : "s",
        byteSize(held), byteSize(peak), byteSize(peak - startResident), byteSize(startResident),
        100.0 * static_cast<double>(planned->total() * local) /
            static_cast<double>(std::max<int64_t>(1, peak - startResident)));
  }
  if (writer && !stepSeconds.empty()) {
    std::vector<double> sorted = stepSeconds;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted[sorted.size() / 2];
    std::cout << fmt::format("final loss: {:.4f}\n", loss);
    std::cout << fmt::format("median step: {:.2f} ms, {:.1f} images/s\n", median * 1e3,
                             static_cast<double>(batch) / median);
  }
  if (data->test) {
    runner->reset(); // one mesh at a time
    Signature evalSig = ir::signatureOf(*eval);
    std::vector<Tensor> evalParams;
    for (const TensorSpec &p : evalSig.params) {
      const TensorSpec *w = weightSig.param(p.name);
      evalParams.push_back(weights[static_cast<size_t>(w - weightSig.params.data())]);
    }
    Expected<std::unique_ptr<runtime::MeshRunner>> evalRunner =
        compileRunner(*compile, std::move(eval), evalParams, runnerOptions);
    if (!evalRunner)
      return report(evalRunner.error());
    Expected<double> accuracy = testAccuracy(**evalRunner, *data->test, *microBatch);
    if (!accuracy)
      return report(accuracy.error());
    if (writer)
      std::cout << fmt::format("test accuracy: {:.2f}% ({} images)\n", *accuracy * 100,
                               data->test->count);
  }
  return 0;
}

} // namespace vitc::tools
