// `vitc autotune`: choose a mesh and layout for a model on a number of devices.
#include <algorithm>
#include <chrono>
#include <map>
#include <unistd.h>

#include "autotune/search.h"
#include "frontend/weights.h"
#include "passes/analysis.h"
#include "runtime/runner.h"
#include "support/files.h"
#include "tools/model_run.h"

namespace vitc::tools {
namespace {

std::string gib(int64_t bytes) {
  return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30));
}

std::string duration(double seconds) {
  if (seconds >= 1)
    return fmt::format("{:.2f} s", seconds);
  return fmt::format("{:.2f} ms", seconds * 1e3);
}

void printRow(size_t rank, const autotune::Evaluation &e) {
  std::cout << fmt::format("{:>3}  {:<20} {:<34} {:>11} {:>6.1f}% {:>11} {:>11}\n", rank,
                           e.candidate.meshString(), e.candidate.layoutString(),
                           duration(e.perStep.stepSeconds), 100 * e.mfu, gib(e.memoryBytes),
                           duration(e.perStep.exposedCommSeconds));
}

// Runs a candidate's compiled program on this machine's thread runtime as its users run it (a
// forward pass, or the real sharded training step: AdamW, each device updating its own shards of
// the params, as `vitc train` runs it) and returns the median time of a batch (its micro-batches
// one after the other) over `runs` runs or a second of them.
Expected<double> measure(std::unique_ptr<ir::Module> compiled, const autotune::Candidate &c,
                         const runtime::LinkModel &link, const backends::Compiler &compile,
                         int runs) {
  runtime::RunnerOptions options;
  options.link = link;
  VITC_ASSIGN(std::vector<double> times, autotune::timeSteps(std::move(compiled), compile, options,
                                                             runs, c.microbatches, 1.0));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

} // namespace

int runAutotune(int argc, char **argv) {
  std::string model, targetSpec = "cpu", mode = "infer", output, link, backend = "llvm";
  int64_t devices = 0, batch = 0;
  int measureTop = 0, top = 10;
  bool verbose = false, recalibrate = false;
  po::options_description desc("vitc autotune options");
  desc.add_options()("help,h",
                     "show this help")("model", po::value(&model)->required(),
                                       "model: a spec, a Hugging Face config or an ONNX file")(
      "devices", po::value(&devices)->required(), "number of devices")(
      "batch", po::value(&batch), "global batch (default: one image per device)")(
      "target", po::value(&targetSpec)->default_value("cpu"),
      "cpu (this host, calibrated), tpuv4, or a target JSON file")(
      "recalibrate", po::bool_switch(&recalibrate),
      "measure this host again for --target=cpu instead of using the cached calibration")(
      "mode", po::value(&mode)->default_value("infer"), "infer (forward) or train (a step)")(
      "link", po::value(&link), "links between devices, as vitc run --link (overrides the target)")(
      "measure", po::value(&measureTop)->implicit_value(3),
      "run the best K candidates on this machine and compare (default K: 3)")(
      "top", po::value(&top)->default_value(10), "how many candidates to print")(
      "backend", po::value(&backend)->default_value("llvm"),
      "the backend the cpu target is calibrated for and --measure runs")(
      "verbose,v", po::bool_switch(&verbose), "list every rejected candidate and why")(
      "output,o", po::value(&output), "write the chosen layout here (JSON)");
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc autotune MODEL --devices N [--batch B] [--target cpu|tpuv4|FILE] "
                 "[--mode=infer|train] [--measure[=K]] [-o layout.json]",
                 exit))
    return exit;
  if (mode != "infer" && mode != "train")
    return usageError(fmt::format("unknown --mode={} (expected infer or train)", mode));
  if (devices <= 0 || devices > (1 << 20))
    return usageError("--devices must be between 1 and 1048576");
  if (batch == 0)
    batch = devices;
  if (batch < 0 || batch > kMaxBatch)
    return usageError(fmt::format("--batch must be between 1 and {}", kMaxBatch));
  if (top < 0)
    return usageError("--top must not be negative");
  if (measureTop < 0)
    return usageError("--measure must not be negative");
  if (!link.empty())
    if (Expected<runtime::LinkModel> l = runtime::LinkModel::parse(link, Loc::inFile("--link")); !l)
      return usageError(l.error());
  ModelOptions named;
  named.model = model;
  std::vector<std::pair<std::string, std::string>> inputs = named.inputFiles();
  inputs.emplace_back("--target", targetSpec);
  if (Status s = checkNotAnInput("-o", output, inputs); !s)
    return usageError(s.error());
  if (Status s = checkWritable(output); !s)
    return report(s.error());

  Expected<frontend::LoadedModel> loaded = frontend::loadModel(model, {batch});
  if (!loaded)
    return report(loaded.error());
  if (loaded->format == frontend::ModelFormat::IrText)
    return report(makeError(Loc::inFile(loaded->path),
                            "autotune needs a model description (a spec, a Hugging Face config or "
                            "an ONNX file), not IR text: the IR is already for one mesh"));
  // A spec or config is built at any depth (the search extrapolates from depth 1 and 2); an ONNX
  // graph has one depth and is compiled whole, from its own module, imported once per batch.
  const frontend::ModelConfig *config = loaded->config ? &*loaded->config : nullptr;
  std::map<int64_t, std::unique_ptr<ir::Module>> imported;
  imported[loaded->fixedBatch.value_or(batch)] = std::move(loaded->module);
  autotune::GraphBuilder graph = [&](int64_t b) -> Expected<std::unique_ptr<ir::Module>> {
    if (!imported.count(b)) {
      if (loaded->fixedBatch)
        return makeError(Loc::inFile(loaded->path),
                         "the model was exported for a batch of {}, not {}", *loaded->fixedBatch,
                         b);
      VITC_ASSIGN(frontend::LoadedModel m, frontend::loadModel(loaded->path, {b}));
      imported[b] = std::move(m.module);
    }
    return imported.at(b)->clone();
  };
  if (!config && loaded->fixedBatch && *loaded->fixedBatch != batch)
    return report(makeError(Loc::inFile(loaded->path),
                            "the model was exported for a batch of {}: give --batch {}",
                            *loaded->fixedBatch, *loaded->fixedBatch));
  // The candidate's whole program, as --measure runs it.
  auto compileWhole = [&](const autotune::Candidate &c) -> Expected<std::unique_ptr<ir::Module>> {
    int64_t b = batch / c.microbatches;
    if (config)
      return autotune::compileCandidate(*config, b, c, 0, mode == "train");
    VITC_ASSIGN(std::unique_ptr<ir::Module> forward, graph(b));
    return autotune::compileCandidate(*forward, c, mode == "train");
  };
  std::string modelName = config ? config->name : imported.begin()->second->name;

  // Each device gets its share of the host's cores, as vitc run gives it.
  Expected<backends::Compiler> compiler = backendCompiler(backend, defaultThreads(devices));
  if (!compiler)
    return report(compiler.error());
  bool terminal = isatty(STDERR_FILENO);
  if (terminal && targetSpec == "cpu")
    std::cerr << "calibrating this CPU (once; cached in ~/.cache/vitc)...\r" << std::flush;
  Expected<autotune::Target> target =
      autotune::loadTarget(targetSpec, *compiler, backend, recalibrate);
  if (!target)
    return report(target.error());
  if (!link.empty()) {
    Expected<runtime::LinkModel> l = runtime::LinkModel::parse(link, Loc::inFile("--link"));
    if (!l)
      return report(l.error());
    target->links = *l;
  }

  if (targetSpec == "cpu") {
    // Measure each kind of op on a one-layer version of this very model, on one device with the
    // images one device would get.
    if (terminal)
      std::cerr << "\r\033[Kmeasuring the kernels of a one-layer model..." << std::flush;
    autotune::Candidate single;
    single.mesh = ir::Mesh::single();
    int64_t perDevice = std::max<int64_t>(1, batch / devices);
    Expected<std::unique_ptr<ir::Module>> oneLayer =
        config ? autotune::compileCandidate(*config, perDevice, single, 1)
               : [&]() -> Expected<std::unique_ptr<ir::Module>> {
      // A graph at the batch one device gets, or at its fixed one.
      Expected<std::unique_ptr<ir::Module>> forward = graph(perDevice);
      if (!forward)
        forward = graph(batch);
      if (!forward)
        return forward.error();
      return autotune::compileCandidate(**forward, single);
    }();
    if (!oneLayer)
      return report(oneLayer.error());
    if (Status s = autotune::calibrateOnModel(*target, **oneLayer, *compiler); !s)
      return report(s.error());
  }

  autotune::SearchOptions options;
  options.devices = devices;
  options.batch = batch;
  options.train = mode == "train";
  options.target = *target;
  if (targetSpec == "cpu")
    options.profile = [&](const ir::Module &m) { return autotune::profileProgram(m, *compiler); };
  auto started = std::chrono::steady_clock::now();
  autotune::Progress progress = [&](size_t done, size_t total, const std::string &what) {
    if (terminal)
      std::cerr << fmt::format("\r\033[K[{}/{}] {}", done, total, what) << std::flush;
  };
  Expected<autotune::SearchResult> result = config ? autotune::search(*config, options, progress)
                                                   : autotune::search(graph, options, progress);
  if (terminal)
    std::cerr << "\r\033[K" << std::flush;
  if (!result)
    return report(result.error());
  double searchSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  std::cout << fmt::format("autotune {} for {} devices on {} ({}, batch {}): {} candidates in "
                           "{:.2f} s\n",
                           modelName, devices,
                           target->calibratedAt.empty()
                               ? target->name
                               : fmt::format("{} (calibrated {} at load {:.1f}; --recalibrate "
                                             "measures again)",
                                             target->name, target->calibratedAt,
                                             target->calibrationLoad),
                           mode == "train" ? "training step" : "inference", batch,
                           result->ranked.size() + result->rejected.size(), searchSeconds);
  if (result->ranked.empty()) {
    const autotune::Evaluation *closest = nullptr;
    for (const autotune::Evaluation &e : result->rejected)
      if (e.memoryBytes > 0 && (!closest || e.memoryBytes < closest->memoryBytes))
        closest = &e;
    if (!closest && !result->rejected.empty())
      closest = &result->rejected.front();
    return report(makeError(
        Loc::inFile(loaded->path), "no layout fits {} devices of {}: {}{}", devices, target->name,
        closest ? closest->candidate.meshString() + " " + closest->candidate.layoutString() + " "
                : "",
        closest ? closest->rejected : "no candidate"));
  }
  std::cout << fmt::format("{:>3}  {:<20} {:<34} {:>11} {:>7} {:>11} {:>11}\n", "#", "mesh",
                           "layout", "step", "MFU", "memory/dev", "exposed comm");
  for (size_t i = 0; i < result->ranked.size() && static_cast<int>(i) < top; ++i)
    printRow(i + 1, result->ranked[i]);
  const autotune::Evaluation &best = result->ranked.front();
  std::cout << fmt::format("chosen: {} with {}: predicted {} per step, {:.1f}% MFU\n",
                           best.candidate.meshString(), best.candidate.layoutString(),
                           duration(best.perStep.stepSeconds), 100 * best.mfu);
  for (const autotune::Evaluation &e : result->ranked)
    if (autotune::isPaperRecipe(e.candidate) && e.candidate.mesh.axes[0].size > 1 &&
        e.candidate.mesh.axes[1].size > 1) {
      std::cout << fmt::format("ViT-22B's layout (tokens split over the model axis, collective "
                               "matmul, weights also over data), best on {}: {} per step, "
                               "{:.1f}% MFU\n",
                               e.candidate.meshString(), duration(e.perStep.stepSeconds),
                               100 * e.mfu);
      break;
    }
  if (!result->rejected.empty())
    std::cout << fmt::format("{} candidates rejected, e.g. {} {}: {}\n", result->rejected.size(),
                             result->rejected.front().candidate.meshString(),
                             result->rejected.front().candidate.layoutString(),
                             result->rejected.front().rejected);
  if (verbose)
    for (const autotune::Evaluation &e : result->rejected)
      std::cout << fmt::format("  rejected {} {}: {}\n", e.candidate.meshString(),
                               e.candidate.layoutString(), e.rejected);

  if (measureTop > 0) {
    std::cout << "measured on this machine (thread runtime"
              << (link.empty() ? "" : ", emulated link") << "):\n";
    std::cout << fmt::format("{:>3}  {:<20} {:<34} {:>11} {:>11} {:>11} {:>7}\n", "#", "mesh",
                             "layout", "predicted", "(host)", "measured", "error");
    double fastest = 0;
    size_t fastestIndex = 0;
    for (size_t i = 0; i < result->ranked.size() && static_cast<int>(i) < measureTop; ++i) {
      const autotune::Evaluation &e = result->ranked[i];
      if (terminal)
        std::cerr << fmt::format("\r\033[Kmeasuring {} {}", e.candidate.meshString(),
                                 e.candidate.layoutString())
                  << std::flush;
      Expected<std::unique_ptr<ir::Module>> compiled = compileWhole(e.candidate);
      Expected<double> seconds =
          compiled ? measure(std::move(*compiled), e.candidate, target->links, *compiler, 5)
                   : Expected<double>(compiled.error());
      if (terminal)
        std::cerr << "\r\033[K" << std::flush;
      if (!seconds)
        return report(seconds.error());
      double error = (e.perStep.stepSeconds - *seconds) / *seconds;
      std::cout << fmt::format("{:>3}  {:<20} {:<34} {:>11} {:>11} {:>11} {:>+6.0f}%\n", i + 1,
                               e.candidate.meshString(), e.candidate.layoutString(),
                               duration(e.perStep.stepSeconds), duration(e.perStep.hostSeconds),
                               duration(*seconds), 100 * error);
      if (i == 0 || *seconds < fastest) {
        fastest = *seconds;
        fastestIndex = i;
      }
    }
    if (fastestIndex != 0)
      std::cout << fmt::format("note: candidate {} measured fastest\n", fastestIndex + 1);
  }

  if (!output.empty()) {
    passes::Layout layout = best.candidate.layout;
    layout.microbatches = best.candidate.microbatches;
    if (Status s =
            writeFileAtomically(output, passes::writeLayoutJson(layout, best.candidate.mesh));
        !s)
      return report(s.error());
    std::cout << "wrote " << output << "\n";
  }
  return 0;
}

} // namespace vitc::tools
