// The pass registry and the default pipeline: the table of contents of vitc's lowering.
#include "passes/registry.h"

#include "passes/canonicalize.h"
#include "passes/fuse_elementwise.h"
#include "passes/fuse_parallel_linear.h"
#include "passes/plan_memory.h"

namespace vitc::passes {

const std::vector<PassInfo> &passRegistry() {
  // Sorted by name.
  static const std::vector<PassInfo> registry = {
      {"canonicalize", "fold reshapes, transposes and no-op ops; remove dead and duplicate values",
       createCanonicalize},
      {"fuse-elementwise",
       "fold bias, GELU and residual adds into matmuls; attention into one kernel",
       createFuseElementwise},
      {"fuse-parallel-linear",
       "merge sibling projections of one input, and projections summed into one value",
       createFuseParallelLinear},
      {"plan-memory", "place every intermediate value in one workspace per device",
       createPlanMemory},
  };
  return registry;
}

const std::vector<PipelineStep> &defaultPipeline() {
  static const std::vector<PipelineStep> pipeline = {
      // Start from a small program: later passes pattern-match less and print less.
      {"canonicalize", "fold reshapes/transposes, remove dead values"},
      // ViT-22B's parallel block: QKV + MLP-in as one matmul, attention-out + MLP-out as one.
      {"fuse-parallel-linear", "fewer, larger matmuls; and the shapes the sharding passes split"},
      // Fusion leaves slices and fills behind: clean up so compiling the output again is a no-op.
      {"canonicalize", "merge duplicate constants, drop what the rewrites left dead"},
      // Kernels the backends run fast: epilogues in matmuls, attention without a score matrix.
      {"fuse-elementwise",
       "bias, GELU, residual into matmul epilogues; softmax, QK-norm into attention"},
      // Last: the backend allocates one workspace and every value has its place in it.
      {"plan-memory", "buffer liveness and reuse; the peak is the activation memory per device"},
  };
  return pipeline;
}

Expected<const PassInfo *> findPass(std::string_view name) {
  for (const PassInfo &info : passRegistry())
    if (info.name == name)
      return &info;
  std::string known;
  for (const PassInfo &info : passRegistry())
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  return makeError(Loc{}, "unknown pass '{}' (known passes: {})", name, known);
}

} // namespace vitc::passes
