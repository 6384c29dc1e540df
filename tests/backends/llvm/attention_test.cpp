// The fused attention kernel against the interpreter.
#include <fmt/format.h>

#include "backends/llvm/kernel_desc.h"
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

struct AttentionCase {
  const char *name;
  int64_t batch, tq, tk, heads, dh;
  bool qkNorm, normBias;
};

std::string attentionModule(const AttentionCase &c) {
  int64_t d = c.heads * c.dh;
  std::string text = fmt::format(R"(module @attn mesh(data=1, model=1) {{
  %q = input {{name = "q"}} : f32[{0},{1},{3}]
  %k = input {{name = "k"}} : f32[{0},{2},{3}]
  %v = input {{name = "v"}} : f32[{0},{2},{3}]
)",
                                 c.batch, c.tq, c.tk, d);
  std::string operands = "%q, %k, %v";
  std::string attrs;
  if (c.qkNorm) {
    text += fmt::format("  %qs = param {{name = \"qs\"}} : f32[{0}]\n"
                        "  %ks = param {{name = \"ks\"}} : f32[{0}]\n",
                        c.dh);
    if (c.normBias)
      text += fmt::format("  %qb = param {{name = \"qb\"}} : f32[{0}]\n"
                          "  %kb = param {{name = \"kb\"}} : f32[{0}]\n",
                          c.dh);
    operands += c.normBias ? ", %qs, %qb, %ks, %kb" : ", %qs, %ks";
    attrs = "eps = 1e-06, ";
  }
  std::string flags =
      c.qkNorm ? (c.normBias ? ", norm_bias = true, qk_norm = true" : ", qk_norm = true") : "";
  text +=
      fmt::format("  %o = attention {} {{{}heads = {}{}, scale = {}}} : f32[{},{},{}]\n"
                  "  output %o\n}}\n",
                  operands, attrs, c.heads, flags, 1.0 / std::sqrt(double(c.dh)), c.batch, c.tq, d);
  return text;
}

class AttentionKernel : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionKernel, MatchesTheInterpreter) {
  EXPECT_MATCHES_INTERPRETER(attentionModule(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionKernel,
    ::testing::Values(
        // ViT-B/16's shape: 197 tokens (not a multiple of the 14-row or 32-key tiles), dh 64.
        AttentionCase{"VitB", 1, 197, 197, 2, 64, false, false},
        AttentionCase{"Small", 2, 13, 13, 4, 16, false, false},
        AttentionCase{"QkNorm", 2, 13, 13, 3, 16, true, false},
        AttentionCase{"QkNormBias", 2, 17, 17, 2, 20, true, true},
        // MAP pooling: one probe query over all tokens.
        AttentionCase{"OneQuery", 2, 1, 17, 4, 16, false, false},
        AttentionCase{"OneQueryQkNorm", 1, 1, 50, 2, 33, true, true},
        // Head dims that are not a multiple of the vector width, more keys than queries.
        AttentionCase{"RaggedHeads", 1, 7, 40, 3, 12, false, false},
        AttentionCase{"WideHeads", 1, 9, 9, 1, 100, true, true}),
    [](const auto &info) { return std::string(info.param.name); });

TEST(AttentionKernel, SmallTiles) {
  EXPECT_MATCHES_INTERPRETER(attentionModule({"", 2, 13, 11, 2, 24, true, true}),
                             test::smallTileOptions());
}

TEST(AttentionKernel, FewHeadsSplitTheirQueriesOverThreads) {
  // ViT-Ti's 3 heads on 2 threads: each head's queries in 2 chunks, 3 work items a thread.
  llvmbe::AttentionDesc d;
  d.batch = 1, d.tq = 197, d.tk = 197, d.heads = 3, d.dh = 64;
  d.tiles.mr = 8, d.tiles.threads = 2;
  EXPECT_EQ(llvmbe::attentionQueryChunks(d), 2);
  d.tiles.threads = 4;
  EXPECT_EQ(llvmbe::attentionQueryChunks(d), 4);
  d.heads = 12;
  EXPECT_EQ(llvmbe::attentionQueryChunks(d), 1);
  // 33 queries in 4 chunks of 16 would leave the last empty: 3 chunks of 16, 16 and 1.
  d.heads = 1, d.tq = 33, d.tiles.threads = 3;
  EXPECT_EQ(llvmbe::attentionQueryChunks(d), 3);
  for (int threads : {2, 3, 4}) {
    llvmbe::Options o = test::verifiedOptions();
    o.threads = threads;
    EXPECT_MATCHES_INTERPRETER(attentionModule({"", 1, 197, 197, 3, 64, false, false}), o);
    EXPECT_MATCHES_INTERPRETER(attentionModule({"", 1, 33, 20, 1, 16, true, true}), o);
    llvmbe::Options small = test::smallTileOptions();
    small.threads = threads;
    EXPECT_MATCHES_INTERPRETER(attentionModule({"", 1, 13, 11, 1, 24, true, false}), small);
  }
}

} // namespace
} // namespace vitc
