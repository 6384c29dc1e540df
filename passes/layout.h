// The sharding layout: how a model is split over the mesh, as the sharding passes read it.
//
// A layout is a policy, not a list of every tensor: the data axis splits the batch; on the model
// axis, projections that feed another projection (Q/K/V into the attention out-projection, MLP-in
// into MLP-out: Megatron's pairs) are split by output features and their partners by input
// features; activations between blocks are split over tokens (`tokens`, ViT-22B's layout: the
// in-projection all-gathers them and the out-projection reduce-scatters into them) or kept whole
// (`replicated`, Megatron's: an all-reduce after each out-projection). `params_over_data` also
// splits large weights over the data axis; they are all-gathered before use. Read from the
// `--layout` JSON file written by `vitc autotune`, or the defaults; each field is also a pass
// setting (pass_options.h), so `--pass-option layout.activations=replicated` overrides the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ir/types.h"
#include "support/error.h"

namespace vitc::passes {

struct Layout {
  std::string dataAxis = "data";
  std::string modelAxis = "model";
  enum class Activations { Tokens, Replicated } activations = Activations::Tokens;
  bool paramsOverData = false;
  int64_t paramsOverDataMinBytes = 1 << 20;
  bool collectiveMatmul = true;
  int64_t microbatches = 1; // the batch runs in this many sequential parts (vitc run splits it)

  bool operator==(const Layout &) const = default;
};

// "tokens" or "replicated", as layout files and `--pass-option layout.activations=` spell them.
std::string_view activationsName(Layout::Activations activations);

// A layout JSON file: {"mesh": {"data": 2, "model": 4}, "data_axis": "data", "model_axis":
// "model", "activations": "tokens", "params_over_data": false, "params_over_data_min_bytes":
// 1048576, "collective_matmul": true, "microbatches": 1}. Every key but `mesh` is a pass setting
// (`params_over_data` is `layout.params-over-data`) and is checked as one; keys left out keep
// their defaults. `mesh` is optional and returned separately ("" when absent).
struct LayoutFile {
  Layout layout;
  std::string mesh; // "data=2,model=4"
};
Expected<LayoutFile> readLayoutFile(const std::string &path);
std::string writeLayoutJson(const Layout &layout, const ir::Mesh &mesh);

} // namespace vitc::passes
