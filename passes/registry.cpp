// The pass registry and the default pipeline: the table of contents of vitc's lowering.
#include "passes/registry.h"

#include "passes/canonicalize.h"

namespace vitc::passes {

const std::vector<PassInfo> &passRegistry() {
  // Sorted by name.
  static const std::vector<PassInfo> registry = {
      {"canonicalize", "fold reshapes, transposes and no-op ops; remove dead and duplicate values",
       createCanonicalize},
  };
  return registry;
}

const std::vector<PipelineStep> &defaultPipeline() {
  static const std::vector<PipelineStep> pipeline = {
      // Start from a small program: later passes pattern-match less and print less.
      {"canonicalize", "fold reshapes/transposes, remove dead values"},
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
