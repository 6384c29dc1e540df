// The pass registry and the default pipeline: the table of contents of vitc's lowering.
#include "passes/registry.h"

#include "passes/canonicalize.h"
#include "passes/collective_matmul.h"
#include "passes/fuse_elementwise.h"
#include "passes/fuse_parallel_linear.h"
#include "passes/insert_collectives.h"
#include "passes/plan_memory.h"
#include "passes/propagate_sharding.h"
#include "passes/schedule_overlap.h"

namespace vitc::passes {

const std::vector<PassInfo> &passRegistry() {
  // Sorted by name.
  static const std::vector<PassInfo> registry = {
      {"canonicalize", "fold reshapes, transposes and no-op ops; remove dead and duplicate values",
       createCanonicalize},
      {"collective-matmul", "decompose all-gather+matmul and matmul+reduce-scatter into rings",
       createCollectiveMatmul},
      {"fuse-elementwise",
       "fold bias, GELU and residual adds into matmuls; attention into one kernel",
       createFuseElementwise},
      {"fuse-parallel-linear",
       "merge sibling projections of one input, and projections summed into one value",
       createFuseParallelLinear},
      {"insert-collectives", "turn reshards into all-gathers, reduce-scatters, all-reduces",
       createInsertCollectives},
      {"plan-memory", "place every intermediate value in one workspace per device",
       createPlanMemory},
      {"propagate-sharding", "give every value a sharding from the layout; mark reshards",
       createPropagateSharding},
      {"schedule-overlap", "asynchronous collectives, started early and finished late",
       createScheduleOverlap},
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
      // The layout: every value gets a sharding; reshards mark where data must move.
      {"propagate-sharding", "split the model over the mesh, following the layout"},
      // After it every op is local: communication is explicit collectives.
      {"insert-collectives", "where a consumer needs another sharding, move the data"},
      // ViT-22B's asynchronous parallel linear: communication in chunks next to the matmul.
      {"collective-matmul", "rings of collective_permute that can overlap with the matmul"},
      // Starts as early and dones as late as the data allow; weights gathered a layer ahead.
      {"schedule-overlap", "put compute between every collective's start and done"},
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
