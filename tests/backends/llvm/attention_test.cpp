// The fused attention kernel against the interpreter, on f32 and on bf16 queries, keys and values.
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

// With `bf16`, the queries, keys and values are converted to bf16 before attention.
std::string attentionModule(const AttentionCase &c, bool bf16 = false) {
  int64_t d = c.heads * c.dh;
  std::string text = fmt::format(R"(module @attn mesh(data=1, model=1) {{
  %q = input {{name = "q"}} : f32[{0},{1},{3}]
  %k = input {{name = "k"}} : f32[{0},{2},{3}]
  %v = input {{name = "v"}} : f32[{0},{2},{3}]
)",
                                 c.batch, c.tq, c.tk, d);
  std::string operands = "%q, %k, %v";
  if (bf16) {
    text += fmt::format("  %q.bf16 = convert %q : bf16[{0},{1},{3}]\n"
                        "  %k.bf16 = convert %k : bf16[{0},{2},{3}]\n"
                        "  %v.bf16 = convert %v : bf16[{0},{2},{3}]\n",
                        c.batch, c.tq, c.tk, d);
    operands = "%q.bf16, %k.bf16, %v.bf16";
  }
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

// bf16 attention against the interpreter, which widens the same bf16 values and computes in f32.
// The kernel rounds what it multiplies to bf16 besides (the scaled, and normalized, queries and
// keys, and the softmax numerators P, as flash-attention does): each a relative error of at most
// 2^-9, which shows in the output after the scores' exponentials as a few 1e-3 of its scale. The
// tolerance, 1e-2 of the output's scale, is still 100 times f32's (EXPECT_MATCHES_INTERPRETER).
struct Bf16AttentionCase {
  AttentionCase shape;
  test::Path path;
};

class Bf16Attention : public ::testing::TestWithParam<Bf16AttentionCase> {};

TEST_P(Bf16Attention, MatchesTheInterpreter) {
  const Bf16AttentionCase &c = GetParam();
  std::string text = attentionModule(c.shape, /*bf16=*/true);
  auto cmp = test::compareText(text, test::optionsFor(c.path));
  ASSERT_TRUE(cmp) << cmp.error().str() << "\n" << text;
  EXPECT_LE(cmp->maxRelDiff, 1e-2) << text;
  if (std::getenv("VITC_TEST_VERBOSE"))
    std::printf("max diff %g (relative %g)\n", cmp->maxDiff, cmp->maxRelDiff);
}

std::vector<Bf16AttentionCase> bf16AttentionCases() {
  // Head sizes are even (bf16 kernels take pairs of features); odd key counts pad their last pair.
  const std::vector<AttentionCase> shapes = {
      {"VitB", 1, 197, 197, 2, 64, false, false},     {"Small", 2, 13, 13, 4, 16, false, false},
      {"QkNorm", 2, 13, 13, 3, 16, true, false},      {"QkNormBias", 2, 17, 17, 2, 20, true, true},
      {"OneQuery", 2, 1, 17, 4, 16, false, false},    {"EvenKeys", 1, 9, 32, 2, 8, false, false},
      {"RaggedHeads", 1, 7, 40, 3, 12, false, false}, {"WideHeads", 1, 9, 9, 1, 100, true, true},
      {"TwoKeys", 1, 3, 2, 1, 2, false, false}};
  std::vector<Bf16AttentionCase> cases;
  for (test::Path path : {test::Path::Host, test::Path::Widened, test::Path::Avx2})
    for (const AttentionCase &shape : shapes)
      cases.push_back({shape, path});
  return cases;
}

// The interpreter's attention of bf16 inputs is its f32 attention of the same values widened:
// bit for bit, QK-norm included (its parameters stay f32).
TEST(Bf16Attention, TheInterpreterWidensItsInputsExactly) {
  const char *text = R"(module @widen mesh(data=1, model=1) {
  %q = input {name = "q"} : f32[2,9,16]
  %k = input {name = "k"} : f32[2,7,16]
  %s = param {name = "s"} : f32[8]
  %b = param {name = "b"} : f32[8]
  %qb = convert %q : bf16[2,9,16]
  %kb = convert %k : bf16[2,7,16]
  %qw = convert %qb : f32[2,9,16]
  %kw = convert %kb : f32[2,7,16]
  %mixed = attention %qb, %kb, %kb, %s, %b, %s, %b {eps = 1e-06, heads = 2, norm_bias = true, qk_norm = true, scale = 0.3} : f32[2,9,16]
  %wide = attention %qw, %kw, %kw, %s, %b, %s, %b {eps = 1e-06, heads = 2, norm_bias = true, qk_norm = true, scale = 0.3} : f32[2,9,16]
  output %mixed, %wide
}
)";
  auto cmp = test::compareText(text);
  ASSERT_TRUE(cmp) << cmp.error().str();
  const Tensor &mixed = cmp->reference[0], &wide = cmp->reference[1];
  ASSERT_EQ(mixed.numel(), wide.numel());
  for (int64_t i = 0; i < mixed.numel(); ++i)
    ASSERT_EQ(mixed.data()[i], wide.data()[i]) << "element " << i;
}

// The target CPU chooses how bf16 attention multiplies, as it does for matmuls: vdpbf16ps where
// it has AVX512-BF16 (AMX CPUs included), f32 FMAs on the widened pairs elsewhere. Compiled, not
// run, so that it holds on any x86 host.
TEST(Bf16Attention, TheTargetCpuChoosesTheProduct) {
  auto m = test::parseAndPlan(attentionModule({"", 1, 197, 197, 2, 64, true, true}, true));
  ASSERT_TRUE(m) << m.error().str();
  struct Want {
    const char *cpu, *kernels;
    bool dot;
  };
  for (Want w : {Want{"sapphirerapids", "vdpbf16ps (avx512bf16)", true},
                 Want{"znver4", "vdpbf16ps (avx512bf16)", true},
                 Want{"x86-64-v4", "f32 FMAs on bf16 values (no avx512bf16)", false},
                 Want{"x86-64-v3", "f32 FMAs on bf16 values (no avx512bf16)", false}}) {
    SCOPED_TRACE(w.cpu);
    llvmbe::Options o = test::verifiedOptions();
    o.cpu = w.cpu;
    llvmbe::CompileReport report;
    auto assembly = llvmbe::emitAssembly(**m, o, &report);
    ASSERT_TRUE(assembly) << assembly.error().str();
    EXPECT_EQ(report.bf16Kernels, w.kernels);
    EXPECT_EQ(assembly->find("vdpbf16ps") != std::string::npos, w.dot);
    EXPECT_EQ(assembly->find("tdpbf16ps"), std::string::npos);
  }
}

// bf16 attention needs pairs of a head's features: an odd head size is refused in one line.
TEST(Bf16Attention, AnOddHeadSizeIsRefused) {
  auto m = test::parseAndPlan(attentionModule({"", 1, 5, 5, 2, 3, false, false}, true));
  ASSERT_TRUE(m) << m.error().str();
  auto r = llvmbe::emitLlvmIr(**m, test::verifiedOptions());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("runs bf16 attention on an even head size only, got 3"),
            std::string::npos)
      << r.error().str();
}

INSTANTIATE_TEST_SUITE_P(All, Bf16Attention, ::testing::ValuesIn(bf16AttentionCases()),
                         [](const auto &info) {
                           return std::string(info.param.shape.name) +
                                  test::pathName(info.param.path);
                         });

} // namespace
} // namespace vitc
