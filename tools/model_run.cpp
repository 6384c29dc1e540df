// Shared steps of `vitc run` and `vitc init-weights`.
#include "tools/model_run.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"
#include "passes/analysis.h"
#include "passes/registry.h"
#include "runtime/mpi/mpi_runtime.h"

namespace vitc::tools {

Expected<int64_t> checkImageBatch(const Tensor &images, const std::string &path,
                                  const frontend::LoadedModel &model) {
  std::vector<ir::Op *> inputs = model.module->inputs();
  if (inputs.size() != 1)
    return makeError(Loc::inFile(path), "the model takes {} inputs; vitc run feeds one image batch",
                     inputs.size());
  const Shape &want = inputs[0]->shape();
  const Shape &got = images.shape();
  bool ok = got.size() == want.size() && got.size() == 4;
  for (size_t d = 1; ok && d < 4; ++d)
    ok = got[d] == want[d];
  if (!ok)
    return makeError(Loc::inFile(path),
                     "input has shape {}; the model takes images [B, {}, {}, {}] (NCHW float32)",
                     shapeString(got), want.size() > 1 ? want[1] : 0, want.size() > 2 ? want[2] : 0,
                     want.size() > 3 ? want[3] : 0);
  if (got[0] <= 0)
    return makeError(Loc::inFile(path), "input holds no images");
  if (model.fixedBatch)
    return makeError(Loc::inFile(path),
                     "input has {} images; the model was exported with a fixed batch of {}", got[0],
                     *model.fixedBatch);
  return got[0];
}

Expected<std::vector<Tensor>> bindParams(const Signature &signature, frontend::WeightSource &source,
                                         const WeightChecks &checks, std::ostream *warnings) {
  frontend::WeightLoadOptions options;
  options.allowUnused = checks.allowUnused;
  VITC_ASSIGN(std::vector<Tensor> params, frontend::bindWeights(signature, source, options));
  // NaN or Inf in a weight makes NaN logits with exit 0: say so, once per tensor.
  if (warnings && !checks.allowNonfinite)
    for (size_t i = 0; i < params.size(); ++i)
      if (auto warning =
              frontend::nonFiniteWarning(source.path(), signature.params[i].name, params[i]))
        *warnings << *warning << "\n";
  return params;
}

namespace {

// The llvm backend's options for `threads` per device, with the matmul tiles measured on this host
// once, then cached (VITC_TILES=default skips the tuning).
Expected<llvmbe::Options> llvmOptions(int threads) {
  llvmbe::Options options;
  options.threads = std::max(1, threads);
  const char *choice = std::getenv("VITC_TILES");
  if (!choice || std::string(choice) != "default") {
    const char *home = std::getenv("HOME");
    std::string dir = std::string(home && *home ? home : "/tmp") + "/.cache/vitc";
    VITC_ASSIGN(options.tiles, llvmbe::tunedTiles(options, dir));
  }
  return options;
}

} // namespace

Expected<DeviceMemoryPlan> deviceMemoryPlan(const std::string &backend, const ir::Module &m,
                                            int threads) {
  DeviceMemoryPlan plan;
  if (backend == "llvm") {
    VITC_ASSIGN(llvmbe::Options options, llvmOptions(threads));
    VITC_ASSIGN(llvmbe::ProgramMemory p, llvmbe::programMemory(m, options));
    plan = {p.paramBytes, p.preparedBytes, p.workspaceBytes, p.scratchBytes};
    return plan;
  }
  passes::ModuleStats s = passes::analyze(m);
  plan.params = s.weightBytesPerDevice;
  plan.workspace = s.activationPeakBytesPerDevice;
  return plan;
}

Expected<backends::Compiler> backendCompiler(const std::string &name, int threads,
                                             std::ostream *remarks) {
  if (name == "interpreter")
    return interp::compiler();
  if (name == "llvm") {
    VITC_ASSIGN(llvmbe::Options options, llvmOptions(threads));
    if (remarks)
      options.onCompiled = [remarks](const llvmbe::CompileReport &r) {
        *remarks << fmt::format(
            "remark: llvm: {} kernels ({} calls) JIT-compiled for {} in {:.2f} s\n",
            r.uniqueKernels, r.kernels, r.cpu, r.seconds);
        if (!r.bf16Kernels.empty())
          *remarks << fmt::format("remark: llvm: bf16 matmuls use {} on {}\n", r.bf16Kernels,
                                  r.cpu);
      };
    return llvmbe::compiler(options);
  }
  return makeError(Loc::inFile("--backend"), "unknown backend '{}' (known: llvm, interpreter)",
                   name);
}

Status checkClassifier(const ir::Module &forward, const Loc &where) {
  const ir::Op *out = forward.output();
  if (forward.inputs().size() != 1 || forward.inputs()[0]->rank() != 4 || !out ||
      out->operands.size() != 1 || out->operand(0)->rank() != 2)
    return makeError(where, "training needs a classifier: one NCHW image input and logits "
                            "[batch, classes] out");
  return Status::ok();
}

Expected<std::unique_ptr<ir::Module>>
lowerTrainingStep(const ir::Module &forward, passes::LossKind loss,
                  passes::PipelineOptions pipeline, passes::PassOptions options,
                  const passes::OptimizerOptions &optimizer, const Loc &where, std::ostream &out,
                  std::vector<std::string> *remarks) {
  VITC_TRY(checkClassifier(forward, where));
  std::unique_ptr<ir::Module> step = forward.clone();
  passes::appendLoss(*step, loss);
  if (pipeline.passes.empty())
    for (const passes::PipelineStep &s : passes::trainingPipeline())
      pipeline.passes.push_back(s.pass);
  passes::PassContext ctx;
  ctx.options = std::move(options);
  ctx.options.optimizer = optimizer;
  VITC_TRY(passes::PassManager(std::move(pipeline), out).run(*step, ctx));
  if (remarks)
    *remarks = std::move(ctx.remarks);
  return step;
}

Status checkBackendName(const std::string &name) {
  if (name == "llvm" || name == "interpreter")
    return Status::ok();
  return Error(fmt::format("unknown --backend={} (expected llvm or interpreter)", name));
}

void MeshRunFlags::add(po::options_description &desc, const char *what) {
  desc.add_options()("runtime", po::value(&runtime)->default_value("threads"),
                     "threads (one thread per device) or mpi (one process per device, under "
                     "mpirun)")(
      "link", po::value(&link),
      "emulated interconnect for the thread runtime: GBps[,latency_us], or per axis "
      "model=GBps[,us],data=...")(
      "trace", po::value(&trace),
      fmt::format("write a Chrome/Perfetto trace of the {}", what).c_str())(
      "collective-timeout", po::value(&timeoutSeconds)->default_value(60),
      "seconds a collective may wait for the other devices");
}

Status MeshRunFlags::check() const {
  if (runtime != "threads" && runtime != "mpi")
    return Error(fmt::format("unknown --runtime={} (expected threads or mpi)", runtime));
  if (!(timeoutSeconds > 0 && timeoutSeconds <= kMaxCollectiveTimeoutSeconds))
    return Error(fmt::format("--collective-timeout must be more than 0 and at most {} seconds, "
                             "got {}",
                             kMaxCollectiveTimeoutSeconds, timeoutSeconds));
  if (!link.empty())
    VITC_TRY(runtime::LinkModel::parse(link, Loc::inFile("--link")));
  return Status::ok();
}

Expected<runtime::RunnerOptions> MeshRunFlags::runnerOptions() const {
  runtime::RunnerOptions options;
  options.collectiveTimeout =
      std::chrono::milliseconds(static_cast<int64_t>(timeoutSeconds * 1000));
  options.trace = !trace.empty();
  if (runtime == "mpi") {
    VITC_ASSIGN(options.processes, runtime::initMpi(nullptr, nullptr));
  }
  if (!link.empty()) {
    VITC_ASSIGN(options.link, runtime::LinkModel::parse(link, Loc::inFile("--link")));
  }
  return options;
}

int reportOnce(const runtime::RunnerOptions &options, const Error &e) {
  const std::shared_ptr<runtime::ProcessGroup> &world = options.processes;
  bool speaks = !world || world->rank() == 0 || world->abandoned();
  return speaks ? report(e) : kExitError;
}

int defaultThreads(int64_t devices) {
  int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  return static_cast<int>(std::max<int64_t>(1, cores / std::max<int64_t>(1, devices)));
}

namespace {

// A bound on the memory this process may use, and what it is, for the message.
struct MemoryLimit {
  double bytes;
  std::string what; // "this machine has", "the process's address-space limit (ulimit -v) leaves"
};

// The cgroup v2 limit of this process: the smallest `memory.max` from its cgroup up to the root
// ("max" means none). Nothing when the process is in no v2 cgroup or the files cannot be read.
// (cgroup v1's memory.limit_in_bytes likewise, where the memory controller is still v1; it says
// "none" with a number near 2^63.)
std::optional<MemoryLimit> cgroupLimit() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, path, root = "/sys/fs/cgroup", leaf = "/memory.max";
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) == 0 && path.empty()) {
      path = line.substr(3);
    } else if (size_t at = line.find(":memory:"); at != std::string::npos) {
      path = line.substr(at + 8);
      root = "/sys/fs/cgroup/memory";
      leaf = "/memory.limit_in_bytes";
      break;
    }
  }
  if (path.empty() || path[0] != '/')
    return std::nullopt;
  std::optional<MemoryLimit> lowest;
  for (;;) {
    std::string file = root + (path == "/" ? std::string() : path) + leaf;
    std::ifstream in(file);
    std::string value;
    if (in >> value && value != "max") {
      char *end = nullptr;
      double limit = std::strtod(value.c_str(), &end);
      if (end && *end == '\0' && limit > 0 && limit < 0x1p62 && (!lowest || limit < lowest->bytes))
        lowest = MemoryLimit{limit, "the cgroup's memory limit (" + file + ") is"};
    }
    if (path == "/" || path.empty())
      break;
    size_t slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
  return lowest;
}

// Bytes of address space this process has mapped already (the binary, its libraries, stacks).
double mappedBytes() {
  std::ifstream statm("/proc/self/statm");
  double pages = 0;
  if (!(statm >> pages))
    return 0;
  return pages * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

} // namespace

Status checkMemory(int64_t bytes, const std::string &what) {
  std::vector<MemoryLimit> limits;
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && pageSize > 0)
    limits.push_back(
        {static_cast<double>(pages) * static_cast<double>(pageSize), "this machine has"});
  // Under `ulimit -v` every mapping counts, the ones made already included.
  struct rlimit as {};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
    limits.push_back({std::max(0.0, static_cast<double>(as.rlim_cur) - mappedBytes()),
                      "the process's address-space limit (ulimit -v) leaves"});
  if (std::optional<MemoryLimit> cgroup = cgroupLimit())
    limits.push_back(*cgroup);
  // Of the limits the work exceeds, the largest is named: raising any smaller one would not help.
  std::sort(limits.begin(), limits.end(),
            [](const MemoryLimit &a, const MemoryLimit &b) { return a.bytes > b.bytes; });
  for (const MemoryLimit &limit : limits)
    if (static_cast<double>(bytes) > 0.9 * limit.bytes)
      return makeError(Loc{}, "{} needs {:.1f} GiB but {} {:.1f} GiB of memory", what,
                       static_cast<double>(bytes) / (1 << 30), limit.what, limit.bytes / (1 << 30));
  return Status::ok();
}

} // namespace vitc::tools
