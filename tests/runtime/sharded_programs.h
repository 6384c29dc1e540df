// Hand-written sharded IR programs and the helpers that check them against one device.
//
// Shared by the thread runtime tests (runtime_tests) and the MPI check (runtime_mpi_check). Every
// program is written for a mesh `data=D, model=M`; with D = M = 1 the same text is the unsharded
// computation (every split is one block and every collective a copy), which is the reference.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "backends/interpreter/interpreter.h"
#include "tests/common/executables.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "runtime/runner.h"

namespace vitc::test {

struct ShardedProgram {
  std::string name;
  // The module text for mesh `data=D, model=M`.
  std::function<std::string(int64_t data, int64_t model)> text;
  // The (D, M) meshes it is run on.
  std::vector<std::pair<int64_t, int64_t>> meshes;
};

// "@model+r" for a block rotated by r on a k-way axis (plain "@model" when r is 0 mod k).
inline std::string rotated(const char *axis, int64_t r, int64_t k) {
  r = ((r % k) + k) % k;
  return r == 0 ? fmt::format("@{}", axis) : fmt::format("@{}+{}", axis, r);
}

inline std::vector<ShardedProgram> shardedPrograms() {
  std::vector<ShardedProgram> programs;
  // Megatron MLP: column-parallel then row-parallel matmul, one all-reduce.
  programs.push_back({"mlp_all_reduce",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @mlp mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[4,8]
  %w1 = param {{name = "w1"}} : f32[16@model,8]
  %h = matmul %x, %w1 {{transpose_b = true}} : f32[4,16@model]
  %g = gelu %h {{approximate = true}} : f32[4,16@model]
  %w2 = param {{name = "w2"}} : f32[8,16@model]
  %y = matmul %g, %w2 {{transpose_b = true}} : f32[4,8] partial(model)
  %r = all_reduce %y {{mesh_axis = "model"}} : f32[4,8]
  output %r
}}
)",
                                           d, m);
                      },
                      {{1, 2}, {1, 4}, {2, 2}}});
  // The same MLP with the all-reduce split into a reduce-scatter and an all-gather.
  programs.push_back({"mlp_reduce_scatter_all_gather",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @mlp_rs mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[4,8]
  %w1 = param {{name = "w1"}} : f32[16@model,8]
  %h = matmul %x, %w1 {{transpose_b = true}} : f32[4,16@model]
  %g = gelu %h {{approximate = true}} : f32[4,16@model]
  %w2 = param {{name = "w2"}} : f32[8,16@model]
  %y = matmul %g, %w2 {{transpose_b = true}} : f32[4,8] partial(model)
  %s = reduce_scatter %y {{dim = 0, mesh_axis = "model"}} : f32[4@model,8]
  %a = scale %s {{factor = 0.5}} : f32[4@model,8]
  %o = all_gather %a {{dim = 0, mesh_axis = "model"}} : f32[4,8]
  output %o, %s
}}
)",
                                           d, m);
                      },
                      {{1, 2}, {1, 4}, {2, 2}}});
  // Data parallelism: the batch is split, the weights replicated.
  programs.push_back({"data_parallel",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @dp mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[8@data,6]
  %w = param {{name = "w"}} : f32[5,6]
  %y = matmul %x, %w {{transpose_b = true}} : f32[8@data,5]
  %g = gelu %y {{approximate = false}} : f32[8@data,5]
  %a = all_gather %g {{dim = 0, mesh_axis = "data"}} : f32[8,5]
  output %g, %a
}}
)",
                                           d, m);
                      },
                      {{2, 1}, {4, 1}, {2, 2}}});
  // Both axes: batch over data, features over model, collectives on each.
  programs.push_back({"data_and_model",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @dm mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[8@data,8]
  %w1 = param {{name = "w1"}} : f32[16@model,8]
  %h = matmul %x, %w1 {{transpose_b = true}} : f32[8@data,16@model]
  %g = gelu %h {{approximate = true}} : f32[8@data,16@model]
  %w2 = param {{name = "w2"}} : f32[8,16@model]
  %y = matmul %g, %w2 {{transpose_b = true}} : f32[8@data,8] partial(model)
  %r = all_reduce %y {{mesh_axis = "model"}} : f32[8@data,8]
  %o = all_gather %r {{dim = 0, mesh_axis = "data"}} : f32[8,8]
  output %o
}}
)",
                                           d, m);
                      },
                      {{2, 2}, {1, 2}, {2, 1}, {4, 1}, {1, 4}}});
  // A ring: blocks travel one step forward, are used rotated, and come back one step.
  programs.push_back({"permute_ring",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @ring mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[8@model,4]
  %p = collective_permute %x {{mesh_axis = "model", shift = 1}} : f32[8{},4]
  %s = scale %p {{factor = 2.0}} : f32[8{},4]
  %q = collective_permute %s {{mesh_axis = "model", shift = -1}} : f32[8@model,4]
  %g = all_gather %s {{dim = 0, mesh_axis = "model"}} : f32[8,4]
  output %q, %g, %s
}}
)",
                                           d, m, rotated("model", -1, m), rotated("model", -1, m));
                      },
                      {{1, 2}, {1, 4}, {2, 2}}});
  // Async collectives with independent compute between start and done, two in flight at once.
  programs.push_back({"async_overlap",
                      [](int64_t d, int64_t m) {
                        return fmt::format(R"(module @async mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[4@data,8]
  %w1 = param {{name = "w1"}} : f32[16@model,8]
  %h = matmul %x, %w1 {{transpose_b = true}} : f32[4@data,16@model]
  %s = all_gather_start %h {{dim = 1, mesh_axis = "model"}} : f32[4@data,16]
  %v = param {{name = "v"}} : f32[8@model,8]
  %c = matmul %x, %v {{transpose_b = true}} : f32[4@data,8@model]
  %cs = all_gather_start %c {{dim = 1, mesh_axis = "model"}} : f32[4@data,8]
  %e = gelu %h {{approximate = true}} : f32[4@data,16@model]
  %f = all_gather_done %s : f32[4@data,16]
  %w2 = param {{name = "w2"}} : f32[8,16]
  %o = matmul %f, %w2 {{transpose_b = true}} : f32[4@data,8]
  %cd = all_gather_done %cs : f32[4@data,8]
  %r = add %o, %cd : f32[4@data,8]
  %b = all_gather %r {{dim = 0, mesh_axis = "data"}} : f32[4,8]
  output %b, %e
}}
)",
                                           d, m);
                      },
                      {{1, 2}, {1, 4}, {2, 2}}});
  return programs;
}

inline ShardedProgram programNamed(const std::string &name) {
  for (ShardedProgram &p : shardedPrograms())
    if (p.name == name)
      return p;
  assert(false && "no sharded test program of that name");
  return {};
}

// Deterministic values in [-1, 1].
inline Tensor randomTensor(const Shape &shape, uint64_t seed) {
  Tensor t = Tensor::zeros(shape);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t.mutableData()[i] = static_cast<float>((s >> 40) % 20001) / 10000.0f - 1.0f;
  }
  return t;
}

inline std::vector<Tensor> randomValues(const std::vector<ir::Op *> &ops, uint64_t seed) {
  std::vector<Tensor> values;
  for (size_t i = 0; i < ops.size(); ++i)
    values.push_back(randomTensor(ops[i]->shape(), seed + i));
  return values;
}

inline Expected<std::shared_ptr<const ir::Module>> parseVerified(const std::string &text) {
  VITC_ASSIGN(std::unique_ptr<ir::Module> m, ir::parseModule(text, "test.ir"));
  Diagnostics d = ir::verify(*m);
  if (!d.empty())
    return Error(d.str());
  return std::shared_ptr<const ir::Module>(std::move(m));
}

// Runs a module text through MeshRunner and the interpreter with seeded parameters and inputs.
inline Expected<std::vector<Tensor>>
runText(const std::string &text, runtime::RunnerOptions options = {}, uint64_t seed = 7) {
  VITC_ASSIGN(std::shared_ptr<const ir::Module> m, parseVerified(text));
  VITC_ASSIGN(std::unique_ptr<runtime::MeshRunner> runner,
              runtime::MeshRunner::create(interpret(m), randomValues(m->params(), seed), std::move(options)));
  return runner->run(randomValues(m->inputs(), seed + 1000));
}

// The largest |a - b| over two lists of tensors; infinity when shapes differ.
inline double maxDifference(const std::vector<Tensor> &a, const std::vector<Tensor> &b) {
  if (a.size() != b.size())
    return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].shape() != b[i].shape())
      return INFINITY;
    for (int64_t j = 0; j < a[i].numel(); ++j)
      worst = std::max(worst, std::fabs(static_cast<double>(a[i].data()[j]) - b[i].data()[j]));
  }
  return worst;
}

} // namespace vitc::test
