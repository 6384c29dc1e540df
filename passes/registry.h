// The registry of passes by name, and the default pipeline.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

struct PassInfo {
  std::string name; // the pass's own name(): written once, in its class
  std::string_view summary;
  std::unique_ptr<Pass> (*create)();
};

// Every pass, sorted by name.
const std::vector<PassInfo> &passRegistry();
// The pass called `name`, or an error that lists the known names.
Expected<const PassInfo *> findPass(std::string_view name);

struct PipelineStep {
  std::string pass;
  std::string_view reason;
};
const std::vector<PipelineStep> &defaultPipeline();
// A training step: autodiff and the optimizer, then the default pipeline.
const std::vector<PipelineStep> &trainingPipeline();

} // namespace vitc::passes
