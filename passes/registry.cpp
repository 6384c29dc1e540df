// The pass registry and the default pipeline: the table of contents of vitc's lowering.
#include "passes/registry.h"

#include "passes/accumulate_microbatches.h"
#include "passes/autodiff.h"
#include "passes/canonicalize.h"
#include "passes/collective_matmul.h"
#include "passes/convert_bf16.h"
#include "passes/fuse_elementwise.h"
#include "passes/fuse_parallel_linear.h"
#include "passes/insert_collectives.h"
#include "passes/optimizer.h"
#include "passes/plan_memory.h"
#include "passes/propagate_sharding.h"
#include "passes/raise_onnx.h"
#include "passes/schedule_overlap.h"

namespace vitc::passes {

namespace {

// A registry entry and a pipeline step: the name comes from the pass itself, so that it is
// written once and the registry, the pipeline and the class cannot disagree.
PassInfo entry(std::unique_ptr<Pass> (*create)(), std::string_view summary) {
  return PassInfo{std::string(create()->name()), summary, create};
}

PipelineStep step(std::unique_ptr<Pass> (*create)(), std::string_view reason) {
  return PipelineStep{std::string(create()->name()), reason};
}

} // namespace

const std::vector<PassInfo> &passRegistry() {
  // Sorted by name (registry_test checks it).
  static const std::vector<PassInfo> registry = {
      entry(createAccumulateMicrobatches,
            "repeat a training step's forward and backward per micro-batch; sum the gradients"),
      entry(createAutodiff, "append the backward ops of the loss: the gradient of every parameter"),
      entry(createCanonicalize,
            "fold reshapes, transposes and no-op ops; remove dead and duplicate values"),
      entry(createCollectiveMatmul,
            "decompose all-gather+matmul and matmul+reduce-scatter into rings"),
      entry(createConvertBf16, "bf16 matmul inputs, f32 accumulation (only with dtype=bf16)"),
      entry(createFuseElementwise,
            "fold bias, GELU and residual adds into matmuls; attention into one kernel"),
      entry(createFuseParallelLinear,
            "merge sibling projections of one input, and projections summed into one value"),
      entry(createInsertCollectives,
            "turn reshards into all-gathers, reduce-scatters, all-reduces"),
      entry(createOptimizer, "append the optimizer's update of every parameter to a training step"),
      entry(createPlanMemory, "place every intermediate value in one workspace per device"),
      entry(createPropagateSharding, "give every value a sharding from the layout; mark reshards"),
      entry(createRaiseOnnx, "raise exported LayerNorm, GELU and attention chains to vitc's ops"),
      entry(createScheduleOverlap, "asynchronous collectives, started early and finished late"),
  };
  return registry;
}

const std::vector<PipelineStep> &defaultPipeline() {
  static const std::vector<PipelineStep> pipeline = {
      // Imported ONNX models spell LayerNorm, GELU and attention in generic ops; specs have none.
      step(createRaiseOnnx, "imported models get the fusions and kernels of spec models"),
      // Start from a small program: later passes pattern-match less and print less.
      step(createCanonicalize, "fold reshapes/transposes, remove dead values"),
      // ViT-22B's parallel block: QKV + MLP-in as one matmul, attention-out + MLP-out as one.
      step(createFuseParallelLinear,
           "fewer, larger matmuls; and the shapes the sharding passes split"),
      // Fusion leaves slices and fills behind: clean up so compiling the output again is a no-op.
      step(createCanonicalize, "merge duplicate constants, drop what the rewrites left dead"),
      // The layout: every value gets a sharding; reshards mark where data must move.
      step(createPropagateSharding, "split the model over the mesh, following the layout"),
      // After it every op is local: communication is explicit collectives.
      step(createInsertCollectives, "where a consumer needs another sharding, move the data"),
      // ViT-22B's asynchronous parallel linear: communication in chunks next to the matmul.
      step(createCollectiveMatmul, "rings of collective_permute that can overlap with the matmul"),
      // Starts as early and dones as late as the data allow; weights gathered a layer ahead.
      step(createScheduleOverlap, "put compute between every collective's start and done"),
      // Kernels the backends run fast: epilogues in matmuls, attention without a score matrix.
      step(createFuseElementwise,
           "bias, GELU, residual into matmul epilogues; softmax, QK-norm into attention"),
      // With dtype=bf16: after fusion, so that the epilogues stay f32 and only the products'
      // inputs are rounded; after the sharding passes, so that collectives move f32 values.
      step(createConvertBf16, "bf16 matmul inputs with f32 accumulation, weights cast at load"),
      // Last: the backend allocates one workspace and every value has its place in it.
      step(createPlanMemory,
           "buffer liveness and reuse; the peak is the activation memory per device"),
  };
  return pipeline;
}

const std::vector<PipelineStep> &trainingPipeline() {
  static const std::vector<PipelineStep> pipeline = [] {
    std::vector<PipelineStep> steps = {
        // An imported model's exported chains become vitc's ops first, so that the backward pass
        // is the one of layer_norm, gelu and attention, whose gradient rules exist.
        step(createRaiseOnnx, "imported models differentiate as spec models do"),
        // The step's first half: the backward ops of the forward pass and its loss. First, while
        // the module holds only ops that have gradient rules (no fused kernels, no collectives).
        step(createAutodiff, "the loss and the gradient of every parameter out"),
        // With a layout's micro-batches: the batch in parts, one update (only with microbatches>1).
        step(createAccumulateMicrobatches, "one micro-batch's activations alive at a time"),
        // The update as ops, so that it is fused, sharded and compiled with the rest.
        step(createOptimizer, "parameters and optimizer state in, their next values out"),
    };
    // Then the whole step is lowered as a forward pass is.
    const std::vector<PipelineStep> &rest = defaultPipeline();
    steps.insert(steps.end(), rest.begin(), rest.end());
    return steps;
  }();
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
