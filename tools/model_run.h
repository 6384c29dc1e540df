// Preparing a model to run: compiled module, weights for every parameter, a backend.
#pragma once

#include <ostream>

#include "backends/backend.h"
#include "frontend/weights.h"
#include "passes/loss.h"
#include "runtime/runner.h"
#include "tools/driver.h"

namespace vitc::tools {

// Checks an image batch against the model's input and returns the batch size.
Expected<int64_t> checkImageBatch(const Tensor &images, const std::string &path,
                                  const frontend::LoadedModel &model);

// The global value of every parameter of `signature`, in its order, bound by name from `source`
// (formats::bindWeights: a file that lacks parameters, holds some of another shape or holds
// tensors the model does not use is refused in one line); a parameter holding NaN or Inf gets a
// warning on `warnings`.
struct WeightChecks {
  bool allowUnused = false;    // --allow-unused-weights
  bool allowNonfinite = false; // --allow-nonfinite: no warnings
};
Expected<std::vector<Tensor>> bindParams(const Signature &signature, frontend::WeightSource &source,
                                         const WeightChecks &checks = {},
                                         std::ostream *warnings = nullptr);

// The compiler of a backend: "llvm" (JIT-compiled kernels; `threads` per device) or
// "interpreter". With `remarks`, the llvm backend says there what it compiled and how long it took.
Expected<backends::Compiler> backendCompiler(const std::string &name, int threads,
                                             std::ostream *remarks = nullptr);
// What one device needs to run the compiled module `m` on `backend` with `threads`, from the
// plans alone: for llvm its program's (params, packed weights, workspace, kernel scratch); for the
// interpreter the passes' (params and prepared weights, and the workspace).
struct DeviceMemoryPlan {
  int64_t params = 0, prepared = 0, workspace = 0, scratch = 0;
  int64_t total() const { return params + prepared + workspace + scratch; }
};
Expected<DeviceMemoryPlan> deviceMemoryPlan(const std::string &backend, const ir::Module &m,
                                            int threads);
// A `--backend` value that names no backend is an error (for a usage error before any file is
// read).
Status checkBackendName(const std::string &name);
// Threads per device when the user did not say: the host's cores shared by the mesh's devices.
int defaultThreads(int64_t devices);

// Training needs a classifier: one NCHW image input and logits [batch, classes] out. The error is
// located at `where` (the model's file).
Status checkClassifier(const ir::Module &forward, const Loc &where);
// The training step of a classifier's forward module: a copy with the loss appended, lowered by
// `pipeline` (the training pipeline when it names no passes) with `options` and `optimizer`; the
// pass manager prints what its flags ask for on `out`, and the passes' remarks go to `remarks`.
Expected<std::unique_ptr<ir::Module>>
lowerTrainingStep(const ir::Module &forward, passes::LossKind loss,
                  passes::PipelineOptions pipeline, passes::PassOptions options,
                  const passes::OptimizerOptions &optimizer, const Loc &where, std::ostream &out,
                  std::vector<std::string> *remarks = nullptr);

// How a command runs its mesh: --runtime, --link, --trace, --collective-timeout.
struct MeshRunFlags {
  std::string runtime = "threads", link, trace;
  double timeoutSeconds = 60;

  void add(po::options_description &desc, const char *what = "run");
  // Usage errors (before any file is read).
  Status check() const;
  // The runner's options; under --runtime=mpi this initializes MPI (once per process).
  Expected<runtime::RunnerOptions> runnerOptions() const;
};
// Under MPI every rank meets the same errors (the runtime makes them agree): rank 0 speaks. After
// a collective timed out they no longer agree, and every rank speaks for itself. Returns the exit
// status.
int reportOnce(const runtime::RunnerOptions &options, const Error &e);

// Refuses work that needs more memory than the machine has, before allocating it.
Status checkMemory(int64_t bytes, const std::string &what);

} // namespace vitc::tools
