// Sharded programs on thread meshes: the JIT's collectives against the interpreter's.
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/runtime/sharded_programs.h"

namespace vitc {
namespace {

// Collectives whose send or receive layout differs from the value's: a reduce-scatter and an
// all-gather along an inner dimension (split and joined through staging buffers), sync and async.
std::string innerDimCollectives(int64_t d, int64_t m) {
  return fmt::format(R"(module @inner mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[4,8]
  %w1 = param {{name = "w1"}} : f32[16@model,8]
  %h = matmul %x, %w1 {{transpose_b = true}} : f32[4,16@model]
  %w2 = param {{name = "w2"}} : f32[8,16@model]
  %y = matmul %h, %w2 {{transpose_b = true}} : f32[4,8] partial(model)
  %s = reduce_scatter %y {{dim = 1, mesh_axis = "model"}} : f32[4,8@model]
  %g = all_gather %s {{dim = 1, mesh_axis = "model"}} : f32[4,8]
  %rs = reduce_scatter_start %y {{dim = 1, mesh_axis = "model"}} : f32[4,8@model]
  %e = gelu %h : f32[4,16@model]
  %rd = reduce_scatter_done %rs : f32[4,8@model]
  %as = all_gather_start %rd {{dim = 1, mesh_axis = "model"}} : f32[4,8]
  %ar = all_reduce_start %y {{mesh_axis = "model"}} : f32[4,8]
  %ad = all_gather_done %as : f32[4,8]
  %rr = all_reduce_done %ar : f32[4,8]
  output %g, %ad, %e, %rr
}}
)",
                     d, m);
}

TEST(ShardedPrograms, MatchTheInterpreterOnEveryMesh) {
  std::vector<test::ShardedProgram> programs = test::shardedPrograms();
  programs.push_back({"inner_dim_collectives", innerDimCollectives, {{1, 2}, {1, 4}, {2, 2}}});
  for (const test::ShardedProgram &p : programs) {
    std::vector<std::pair<int64_t, int64_t>> meshes = p.meshes;
    meshes.emplace_back(1, 1); // every collective a copy
    for (auto [d, m] : meshes) {
      SCOPED_TRACE(fmt::format("{} on data={}, model={}", p.name, d, m));
      auto module = test::parseAndPlan(p.text(d, m));
      ASSERT_TRUE(module) << module.error().str();
      auto c = test::compareModule(*module, test::verifiedOptions());
      ASSERT_TRUE(c) << c.error().str();
      EXPECT_LE(c->maxRelDiff, 1e-5);
    }
  }
}

} // namespace
} // namespace vitc
