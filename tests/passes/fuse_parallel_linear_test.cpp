// fuse-parallel-linear on whole models: structure, FLOPs and numerics.
#include <map>
#include <regex>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "frontend/load_model.h"
#include "passes/analysis.h"
#include "passes/pass_manager.h"
#include "tests/common/fixtures.h"

namespace vitc {
namespace {

std::unique_ptr<ir::Module> compile(const std::string &example, std::vector<std::string> passList) {
  auto loaded = frontend::loadModel(std::string(VITC_SOURCE_DIR) + "/examples/" + example, {1});
  EXPECT_TRUE(loaded) << loaded.error().str();
  passes::PipelineOptions o;
  o.passes = std::move(passList);
  o.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(o, sink);
  passes::PassContext ctx;
  Status s = pm.run(*loaded->module, ctx);
  EXPECT_TRUE(s) << (s ? "" : s.error().str());
  return std::move(loaded->module);
}

// Matmuls per encoder layer, by the layer prefix of their names ("l7.").
std::map<int, int> matmulsPerLayer(const ir::Module &m) {
  std::map<int, int> count;
  std::regex layer(R"(^l(\d+)\.)");
  for (const auto &op : m.ops()) {
    std::smatch match;
    if (op->is(ir::OpKind::MatMul) && std::regex_search(op->name, match, layer))
      ++count[std::stoi(match[1])];
  }
  return count;
}

TEST(FuseParallelLinear, Vit22bHasTwoProjectionMatmulsPerBlock) {
  auto before = compile("vit22b.vit", {"canonicalize"});
  auto after = compile("vit22b.vit", {"canonicalize", "fuse-parallel-linear"});
  std::map<int, int> counts = matmulsPerLayer(*after);
  ASSERT_EQ(counts.size(), 48u);
  for (const auto &[layer, n] : counts)
    EXPECT_EQ(n, 4) << "layer " << layer << ": fused in + fused out + scores + values";
  EXPECT_EQ(matmulsPerLayer(*before).at(0), 8);
  EXPECT_EQ(passes::analyze(*before).flops, passes::analyze(*after).flops);
  EXPECT_EQ(passes::analyze(*before).params, passes::analyze(*after).params);
}

TEST(FuseParallelLinear, SequentialBlocksOnlyShareTheQkvInput) {
  auto after = compile("vit-b16.vit", {"canonicalize", "fuse-parallel-linear"});
  for (const auto &[layer, n] : matmulsPerLayer(*after))
    EXPECT_EQ(n, 6) << "layer " << layer << ": qkv, scores, values, out, fc1, fc2";
  // The sums of a sequential block stay as written.
  EXPECT_EQ(after->findByName("l0.fused_sum"), nullptr);
  ASSERT_NE(after->findByName("l0.attn.out"), nullptr);
  ASSERT_NE(after->findByName("l0.fc2"), nullptr);
}

TEST(FuseParallelLinear, FusedAndUnfusedAgreeOnTheFixture) {
  passes::PipelineOptions unfused, fused;
  unfused.passes = {"canonicalize", "plan-memory"};
  fused.passes = {"canonicalize", "fuse-parallel-linear", "canonicalize", "plan-memory"};
  auto a = test::runFixture("parallel_map", interp::compiler(), unfused);
  auto b = test::runFixture("parallel_map", interp::compiler(), fused);
  ASSERT_TRUE(a) << a.error().str();
  ASSERT_TRUE(b) << b.error().str();
  EXPECT_LE(test::maxAbsDiff(a->logits, b->logits), 1e-5);
  EXPECT_LE(a->maxAbsDiff, 1e-4);
  EXPECT_LE(b->maxAbsDiff, 1e-4);
}

} // namespace
} // namespace vitc
