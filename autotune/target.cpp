// Targets: parsing, the built-in TPU v4, and calibrating this CPU.
#include "autotune/target.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "autotune/cost_model.h"
#include "frontend/weights.h"
#include "ir/builder.h"
#include "ir/signature.h"
#include "passes/optimizer.h"
#include "passes/plan_memory.h"
#include "runtime/runner.h"
#include "runtime/single_device.h"
#include "support/files.h"

namespace vitc::autotune {

double Target::effectiveFlops(int64_t devices) const {
  if (coresPerHost <= 0 || devices <= coresPerHost)
    return peakFlops * matmulEfficiency;
  return peakFlops * matmulEfficiency * static_cast<double>(coresPerHost) /
         static_cast<double>(devices);
}

double Target::effectiveBandwidth(int64_t devices) const {
  if (coresPerHost <= 0 || devices <= coresPerHost)
    return memoryBandwidth;
  return memoryBandwidth * static_cast<double>(coresPerHost) / static_cast<double>(devices);
}

Expected<Target> parseTarget(std::string_view text, const std::string &path) {
  Loc at = Loc::inFile(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    return makeError(at, "malformed JSON at byte {}", e.byte);
  } catch (const nlohmann::json::exception &) { // a number too large for a double: "1e400"
    return makeError(at, "malformed JSON: a number is out of range");
  }
  if (!j.is_object())
    return makeError(at, "a target is a JSON object");
  Target t;
  auto number = [&](const char *key, double &out, bool required) -> Status {
    auto it = j.find(key);
    if (it == j.end())
      return required ? makeError(at, "missing '{}'", key) : Status::ok();
    if (!it->is_number() || it->get<double>() < 0)
      return makeError(at, "'{}' must be a non-negative number", key);
    out = it->get<double>();
    return Status::ok();
  };
  double memory = 0, dtype = 4, cores = 0, overheadUs = 0;
  VITC_TRY(number("peak_flops", t.peakFlops, true));
  VITC_TRY(number("matmul_efficiency", t.matmulEfficiency, false));
  VITC_TRY(number("memory_bandwidth", t.memoryBandwidth, true));
  VITC_TRY(number("op_overhead_us", overheadUs, false));
  VITC_TRY(number("dtype_bytes", dtype, false));
  VITC_TRY(number("memory_bytes", memory, true));
  VITC_TRY(number("cores_per_host", cores, false));
  if (t.peakFlops <= 0 || t.memoryBandwidth <= 0 || memory <= 0)
    return makeError(at, "peak_flops, memory_bandwidth and memory_bytes must be positive");
  if (t.matmulEfficiency <= 0 || t.matmulEfficiency > 1)
    return makeError(at, "'matmul_efficiency' must be in (0, 1]");
  if (dtype != 2 && dtype != 4)
    return makeError(at, "'dtype_bytes' must be 2 (bf16) or 4 (f32)");
  // Converting a double beyond int64's range is undefined behaviour.
  if (memory >= 0x1p63 || cores >= 0x1p63)
    return makeError(at, "'memory_bytes' and 'cores_per_host' must be below 2^63");
  if (std::floor(memory) != memory || std::floor(cores) != cores)
    return makeError(at, "'memory_bytes' and 'cores_per_host' must be whole numbers");
  t.opOverheadSeconds = overheadUs * 1e-6;
  t.dtypeBytes = static_cast<int64_t>(dtype);
  t.memoryBytes = static_cast<int64_t>(memory);
  t.coresPerHost = static_cast<int64_t>(cores);
  for (const char *key : {"name", "comment"})
    if (j.contains(key) && !j[key].is_string())
      return makeError(at, "'{}' must be a string", key);
  t.name = j.value("name", std::filesystem::path(path).stem().string());
  t.comment = j.value("comment", "");
  if (j.contains("calibrated_at") && !j["calibrated_at"].is_string())
    return makeError(at, "'calibrated_at' must be a string");
  t.calibratedAt = j.value("calibrated_at", "");
  VITC_TRY(number("load_average", t.calibrationLoad, false));
  if (auto links = j.find("links"); links != j.end()) {
    if (!links->is_object())
      return makeError(at, "'links' must map mesh axes (or \"*\") to {{\"gbps\", \"latency_us\"}}");
    for (auto &[axis, link] : links->items()) {
      if (!link.is_object() || !link.contains("gbps") || !link["gbps"].is_number() ||
          link["gbps"].get<double>() <= 0)
        return makeError(at, "link '{}' needs a positive \"gbps\"", axis);
      if (link.contains("latency_us") &&
          (!link["latency_us"].is_number() || link["latency_us"].get<double>() < 0))
        return makeError(at, "link '{}' needs a non-negative \"latency_us\"", axis);
      runtime::Link l{link["gbps"].get<double>(), link.value("latency_us", 0.0)};
      if (axis == "*")
        t.links.setDefault(l);
      else
        t.links.setAxis(axis, l);
    }
  }
  return t;
}

std::string writeTarget(const Target &t) {
  nlohmann::ordered_json j;
  j["name"] = t.name;
  if (!t.comment.empty())
    j["comment"] = t.comment;
  j["peak_flops"] = t.peakFlops;
  j["matmul_efficiency"] = t.matmulEfficiency;
  j["memory_bandwidth"] = t.memoryBandwidth;
  j["op_overhead_us"] = t.opOverheadSeconds * 1e6;
  j["dtype_bytes"] = t.dtypeBytes;
  j["memory_bytes"] = t.memoryBytes;
  j["cores_per_host"] = t.coresPerHost;
  if (!t.calibratedAt.empty()) {
    j["calibrated_at"] = t.calibratedAt;
    j["load_average"] = t.calibrationLoad;
  }
  nlohmann::ordered_json links = nlohmann::ordered_json::object();
  if (const runtime::Link *d = t.links.link("*"))
    links["*"] = {{"gbps", d->gbps}, {"latency_us", d->latencyUs}};
  j["links"] = links;
  return j.dump(2) + "\n";
}

Target tpuv4() {
  Target t;
  t.name = "tpuv4";
  t.comment = "TPU v4 as in public figures: 275 TFLOP/s bf16 per chip, 32 GiB HBM at 1.2 TB/s; "
              "inter-chip links of a 3D torus, taken as 90 GB/s per direction for a ring along "
              "one mesh axis, 5 us per hop";
  t.peakFlops = 275e12;
  t.matmulEfficiency = 0.85;
  t.memoryBandwidth = 1.2e12;
  t.opOverheadSeconds = 2e-6;
  t.dtypeBytes = 2;
  t.memoryBytes = int64_t{32} << 30;
  t.links.setDefault({90, 5});
  return t;
}

namespace {

// Times `runs` forward passes of a one-device program; returns the median seconds. The module is
// built here, not by the pipeline: only its memory is planned, so that the backend runs each op
// as built (fusion would change what is measured).
Expected<double> timeProgram(std::shared_ptr<ir::Module> m, const backends::Compiler &compile,
                             int runs) {
  passes::PassContext ctx;
  VITC_TRY(passes::createPlanMemory()->run(*m, ctx));
  VITC_ASSIGN(auto executable, compile(m));
  VITC_ASSIGN(auto program, executable->instantiate(0, timingParams(*m)));
  std::vector<Tensor> inputs;
  for (const ir::Op *in : m->inputs())
    inputs.push_back(Tensor::zeros(in->shape()));
  runtime::SingleDeviceCommunicator comm(m->mesh);
  VITC_TRY(program->run(inputs, comm)); // warm-up
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    VITC_TRY(program->run(inputs, comm));
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

} // namespace

Expected<Target> calibrateCpu(const backends::Compiler &compile, const std::string &backend,
                              const std::string &cacheDir, bool recalibrate) {
  std::string cache = cacheDir + "/cpu-" + backend + ".json";
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  int64_t memoryBytes = static_cast<int64_t>(pages) * pageSize;
  int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  double load = 0;
  if (double avg[1]; getloadavg(avg, 1) == 1)
    load = avg[0];
  if (!recalibrate) {
    if (Expected<std::string> text = readFile(cache); text) {
      Expected<Target> t = parseTarget(*text, cache);
      bool busyThen = t && t->calibrationLoad >= static_cast<double>(cores);
      if (t && t->coresPerHost == cores && t->memoryBytes == memoryBytes &&
          !t->calibratedAt.empty() && !(busyThen && load < t->calibrationLoad))
        return t;
    }
  }
  // A projection-sized matmul for the compute rate; a chain of elementwise ops for bandwidth.
  auto matmulModule = std::make_shared<ir::Module>();
  {
    ir::Builder b(*matmulModule);
    ir::Op *x = b.input("x", {256, 768});
    ir::Op *w = b.param("w", {1536, 768}, false);
    b.output({b.matmul(x, w, true)});
  }
  auto elementwiseModule = std::make_shared<ir::Module>();
  {
    ir::Builder b(*elementwiseModule);
    ir::Op *x = b.input("x", {1024, 1024});
    ir::Op *y = x;
    for (int i = 0; i < 8; ++i)
      y = b.gelu(b.add(y, x));
    b.output({y});
  }
  VITC_ASSIGN(double matmulSeconds, timeProgram(matmulModule, compile, 5));
  VITC_ASSIGN(double elementwiseSeconds, timeProgram(elementwiseModule, compile, 3));
  Target t;
  t.name = "cpu";
  t.comment = "calibrated on this host for the " + backend + " backend";
  t.peakFlops = 2.0 * 256 * 768 * 1536 / matmulSeconds;
  t.matmulEfficiency = 1.0; // the measured rate is what matmuls reach
  // 16 ops, each reading one or two 4 MiB tensors and writing one.
  t.memoryBandwidth = 16 * 2.5 * 4.0 * 1024 * 1024 / elementwiseSeconds;
  t.opOverheadSeconds = 5e-6;
  t.dtypeBytes = 4;
  t.memoryBytes = memoryBytes;
  t.coresPerHost = cores;
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  t.calibratedAt = stamp;
  t.calibrationLoad = load;
  std::error_code ec;
  std::filesystem::create_directories(cacheDir, ec);
  if (!ec)
    (void)writeFileAtomically(cache, writeTarget(t)); // a cache: failing to write it is fine
  return t;
}

std::vector<Tensor> timingParams(const ir::Module &m) {
  std::vector<Tensor> params;
  std::set<std::string> scales = frontend::layerNormScales(m);
  Signature signature = ir::signatureOf(m);
  // A training step's optimizer state starts at zero, as vitc train starts it: random moments
  // would make the update non-finite (a negative second moment), and a step that is not finite
  // replaces no params, so it would be timed without its load calls.
  std::set<std::string> state;
  if (!m.paramUpdates().empty())
    for (auto kind : {passes::OptimizerOptions::Kind::Sgd, passes::OptimizerOptions::Kind::AdamW,
                      passes::OptimizerOptions::Kind::Adafactor})
      for (bool momentum : {false, true}) {
        passes::OptimizerOptions o;
        o.kind = kind;
        o.momentum = momentum ? 0.9 : 0.0;
        for (const TensorSpec &p : signature.params)
          for (std::string &name : passes::optimizerStateNames(o, p.name, p.shape))
            state.insert(std::move(name));
      }
  for (const TensorSpec &p : signature.params)
    params.push_back(state.contains(p.name)
                         ? Tensor::zeros(p.shape)
                         : frontend::randomTensor(p, scales.contains(p.name), 0));
  return params;
}

Expected<std::vector<double>> timeSteps(std::shared_ptr<const ir::Module> m,
                                        const backends::Compiler &compile,
                                        const runtime::RunnerOptions &options, int runs,
                                        int64_t stepsPerRun, double minSeconds,
                                        std::unique_ptr<runtime::MeshRunner> *runnerOut) {
  std::vector<Tensor> params = timingParams(*m);
  std::vector<Tensor> inputs;
  for (const ir::Op *in : m->inputs())
    inputs.push_back(Tensor::zeros(in->shape()));
  std::vector<size_t> updates = m->paramUpdates();
  VITC_ASSIGN(auto executable, compile(m));
  VITC_ASSIGN(auto runner, runtime::MeshRunner::create(executable, params, options));
  params.clear();
  auto step = [&]() -> Status {
    if (updates.empty()) {
      VITC_ASSIGN(std::vector<Tensor> outputs, runner->run(inputs));
      return Status::ok();
    }
    // Zero images, labels and optimizer scalars keep every output finite, so that each step
    // replaces the params as a real one does.
    VITC_ASSIGN(runtime::MeshRunner::StepResult result, runner->step(inputs, updates.front()));
    if (result.nonFinite)
      return makeError(Loc{}, "timing a training step: output #{} is not finite",
                       *result.nonFinite);
    return Status::ok();
  };
  VITC_TRY(step()); // the warm-up: first touches of every buffer
  std::vector<double> seconds;
  double total = 0;
  for (int run = 0; run < runs || (total < minSeconds && run < 10 * runs); ++run) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < stepsPerRun; ++i)
      VITC_TRY(step());
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    total += seconds.back();
  }
  if (runnerOut)
    *runnerOut = std::move(runner);
  return seconds;
}

Expected<Profile> profileProgram(const ir::Module &module, const backends::Compiler &compile) {
  constexpr int kRuns = 5;            // timed, after one warm-up
  constexpr double kMinSeconds = 0.5; // and more, up to ten times as many, for short programs
  auto m = std::shared_ptr<const ir::Module>(module.clone());
  VITC_ASSIGN(std::shared_ptr<const runtime::Executable> executable, compile(m));
  backends::Compiler compiled = [&](std::shared_ptr<const ir::Module>) { return executable; };
  // Steps as they run (tracing costs time in every span, which small programs would notice),
  // then traced ones for the ops.
  runtime::RunnerOptions options;
  VITC_ASSIGN(std::vector<double> walls, timeSteps(m, compiled, options, kRuns, 1, kMinSeconds));
  options.trace = true;
  std::unique_ptr<runtime::MeshRunner> runner;
  VITC_TRY(timeSteps(m, compiled, options, kRuns, 1, kMinSeconds, &runner));
  nlohmann::json events = nlohmann::json::parse(runner->tracer()->eventsJson());
  // Every device names its compute track alike; spans on it are named after their op, one a run.
  std::set<std::pair<int, int>> computeTracks; // (device, thread id)
  for (const nlohmann::json &e : events)
    if (e.value("ph", "") == "M" && e.value("name", "") == "thread_name" &&
        e["args"].value("name", "") == runtime::kComputeTrack)
      computeTracks.insert({e.value("pid", -1), e.value("tid", -1)});
  std::map<std::pair<int, std::string>, std::vector<double>> spans; // (device, op) -> per run
  for (const nlohmann::json &e : events)
    if (e.value("ph", "") == "X" && computeTracks.count({e.value("pid", -2), e.value("tid", -2)}))
      spans[{e.value("pid", -1), e.value("name", "")}].push_back(e.value("dur", 0.0) * 1e-6);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // Each op's mean over the timed runs (not its median: a kernel that another process preempted
  // took that long, and the real runs meet preemption as often), averaged over the devices.
  Profile profile;
  profile.hostBytes = hostBytes(*m);
  double devices = static_cast<double>(m->mesh.numDevices());
  for (auto &[key, durations] : spans) {
    if (durations.size() > 1)
      durations.erase(durations.begin()); // the warm-up
    double sum = 0;
    for (double d : durations)
      sum += d;
    profile.ops[key.second] += sum / static_cast<double>(durations.size()) / devices;
  }
  double total = 0;
  for (const auto &[name, s] : profile.ops)
    total += s;
  double wall = median(walls);
  // With more devices than cores, a device also waits for a core, mostly between its spans (the
  // scheduler rarely preempts a kernel): spread the run's time over its ops.
  if (devices > std::thread::hardware_concurrency() && total > 0 && wall > total) {
    for (auto &[name, s] : profile.ops)
      s *= wall / total;
    return profile;
  }
  profile.hostSeconds = std::max(0.0, wall - total);
  return profile;
}

Status calibrateOnModel(Target &target, const ir::Module &oneLayer,
                        const backends::Compiler &compile) {
  VITC_ASSIGN(Profile profile, profileProgram(oneLayer, compile));
  const OpSeconds &seconds = profile.ops;
  std::map<std::string, std::pair<double, double>> byKind; // keyword -> (seconds, work)
  for (const auto &op : oneLayer.ops()) {
    auto it = seconds.find(op->name);
    if (it == seconds.end())
      continue;
    auto [work, isFlops] = workOf(*op, oneLayer.mesh, 4);
    if (work <= 0)
      continue;
    auto &[s, w] = byKind[std::string(op->keyword())];
    s += it->second;
    w += work;
  }
  for (const auto &[kind, sw] : byKind)
    target.secondsPerUnit[kind] = sw.first / sw.second;
  return Status::ok();
}

Expected<Target> loadTarget(const std::string &spec, const backends::Compiler &compile,
                            const std::string &backend, bool recalibrate) {
  if (spec == "tpuv4")
    return tpuv4();
  if (spec == "cpu") {
    const char *home = std::getenv("HOME");
    std::string dir = std::string(home && *home ? home : "/tmp") + "/.cache/vitc";
    return calibrateCpu(compile, backend, dir, recalibrate);
  }
  VITC_ASSIGN(std::string text, readFile(spec));
  return parseTarget(text, spec);
}

} // namespace vitc::autotune
