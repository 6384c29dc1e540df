// The verifier reports every problem at once, with locations, sharding included.
#include <gtest/gtest.h>

#include "ir/text.h"
#include "ir/verifier.h"

namespace vitc::ir {
namespace {

Diagnostics verifyText(const std::string &text) {
  auto m = parseModule(text, "v.ir");
  EXPECT_TRUE(m) << m.error().str();
  return m ? verify(**m) : Diagnostics{};
}

TEST(Verifier, AcceptsAValidModule) {
  auto d = verifyText(R"(module @ok mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[2,4,8]
  %w = param {name = "w"} : f32[16@model,8]
  %y = matmul %x, %w {transpose_b = true} : f32[2,4,16@model]
  %a = all_gather %y {dim = 2, mesh_axis = "model"} : f32[2,4,16]
  output %a
})");
  EXPECT_TRUE(d.empty()) << d.str();
}

// layer_norm_grad %x, %scale, %dy: the gradient has x's shape and is not read as a bias; the
// scale is still checked. Rank-0 values (a loss) print and parse as f32[].
TEST(Verifier, LayerNormGradChecksItsScaleNotItsGradientAsABias) {
  auto ok = verifyText(R"(module @ok mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3,9]
  %dy = input {name = "dy"} : f32[2,3,9]
  %w = param {name = "w"} : f32[9]
  %dx = layer_norm_grad %x, %w, %dy {eps = 1e-06} : f32[2,3,9]
  %s = sum %dx {axis = 2} : f32[2,3]
  %t = sum %s {axis = 1} : f32[2]
  %loss = sum %t {axis = 0} : f32[]
  output %dx, %loss
})");
  EXPECT_TRUE(ok.empty()) << ok.str();
  auto bad = verifyText(R"(module @bad mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3,9]
  %dy = input {name = "dy"} : f32[2,3,9]
  %w = param {name = "w"} : f32[8]
  %dx = layer_norm_grad %x, %w, %dy {eps = 1e-06} : f32[2,3,9]
  output %dx
})");
  EXPECT_NE(bad.str().find("layer_norm scale has shape [8], expected [9]"), std::string::npos)
      << bad.str();
}

TEST(Verifier, ReportsEveryProblemWithItsLocation) {
  auto d = verifyText(R"(module @bad mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[2,4,8]
  %w = param {name = "w"} : f32[16,9]
  %y = matmul %x, %w {transpose_b = true} : f32[2,4,16]
  %z = gelu %x {bogus = 1} : f32[2,4,8]
  %s = softmax %x : f32[2,4,7]
  %u = input {name = "u"} : f32[3@model]
  %g = all_gather %x {dim = 0, mesh_axis = "model"} : f32[2,4,8]
  output %z
})");
  std::string all = d.str();
  EXPECT_EQ(d.errors.size(), 5u) << all;
  EXPECT_NE(all.find("v.ir:4:3: error: '%y' (matmul): matmul contracts [2, 4, 8] with [16, 9]: "
                     "inner sizes 8 and 9 differ (right operand transposed)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("v.ir:5:3: error: '%z' (gelu): unknown attribute 'bogus'"), std::string::npos)
      << all;
  EXPECT_NE(all.find("v.ir:6:3: error: '%s' (softmax): result type is f32[2,4,7] but its operands "
                     "give f32[2,4,8]"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("v.ir:7:3: error: '%u' (input): dimension 0 of size 3 cannot be split 2 ways "
                     "over 'model'"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("v.ir:8:3: error: '%g' (all_gather): all_gather over 'model' needs dimension "
                     "0 split over it"),
            std::string::npos)
      << all;
}

TEST(Verifier, ChecksShardingRules) {
  // Adding a partial sum to a replicated value would count the replicated value k times.
  auto d = verifyText(R"(module @p mesh(model=2) {
  %x = input {name = "x"} : f32[4,8@model]
  %w = param {name = "w"} : f32[6,8@model]
  %y = matmul %x, %w {transpose_b = true} : f32[4,6] partial(model)
  %b = param {name = "b"} : f32[6]
  %z = add %y, %b : f32[4,6] partial(model)
  %n = layer_norm %y, %b {eps = 1e-06} : f32[4,6]
  output %z, %n
})");
  std::string all = d.str();
  EXPECT_EQ(d.errors.size(), 2u) << all;
  EXPECT_NE(all.find("'%z' (add): adding a partial sum to a value that is not partial"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("'%n' (layer_norm): the normalized value is a partial sum over 'model'"),
            std::string::npos)
      << all;
}

TEST(Verifier, AsyncStartNeedsItsDone) {
  auto d = verifyText(R"(module @a mesh(model=2) {
  %x = input {name = "x"} : f32[4@model]
  %s = all_gather_start %x {dim = 0, mesh_axis = "model"} : f32[4]
  %t = gelu %s : f32[4]
  output %t
})");
  EXPECT_NE(d.str().find("'%s' (all_gather_start): must be used by exactly one all_gather_done"),
            std::string::npos)
      << d.str();
}

TEST(Verifier, ReshapeKeepsShardedDimensionsWhole) {
  auto ok = verifyText(R"(module @r mesh(model=2) {
  %x = input {name = "x"} : f32[2,6,8@model]
  %h = reshape %x : f32[2,6,4@model,2]
  output %h
})");
  EXPECT_TRUE(ok.empty()) << ok.str();
  auto bad = verifyText(R"(module @r mesh(model=2) {
  %x = input {name = "x"} : f32[2,6,8@model]
  %h = reshape %x : f32[2,48]
  output %h
})");
  EXPECT_NE(bad.str().find("reshape [2, 6, 8] to [2, 48] would mix the blocks of dimension 2"),
            std::string::npos)
      << bad.str();
}

TEST(Verifier, CollectivePermuteRotatesBlocks) {
  auto d = verifyText(R"(module @c mesh(model=4) {
  %x = input {name = "x"} : f32[8@model,2]
  %p = collective_permute %x {mesh_axis = "model", shift = 1} : f32[8@model+3,2]
  %q = collective_permute %p {mesh_axis = "model", shift = 3} : f32[8@model,2]
  output %q
})");
  EXPECT_TRUE(d.empty()) << d.str();
}

TEST(Verifier, OutputMustComeLast) {
  auto d = verifyText(R"(module @o {
  %x = input {name = "x"} : f32[2]
  output %x
  %y = gelu %x : f32[2]
})");
  EXPECT_NE(d.str().find("op after 'output'"), std::string::npos) << d.str();
}

} // namespace
} // namespace vitc::ir
