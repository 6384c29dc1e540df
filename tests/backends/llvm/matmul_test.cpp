// The matmul and fused_linear kernels against the interpreter, on shapes that fit no tile.
#include <fmt/format.h>

#include "backends/llvm/kernel_desc.h"
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

struct MatmulShape {
  int64_t m, n, k;
};

// Ragged in every dimension: M, N and K are not multiples of the vector width or of any tile.
const std::vector<MatmulShape> kShapes = {
    {7, 5, 3}, {13, 33, 17}, {197, 100, 130}, {7, 100, 17}, {197, 5, 3}, {13, 33, 130},
};

// One module with a matmul per shape, the weight either a parameter (packed at load) or an input
// (packed per run), read [K, N] or, with transpose_b, [N, K].
std::string matmulModule(bool weightIsParam, bool transposeB) {
  std::string body;
  std::string outputs;
  int i = 0;
  for (const MatmulShape &s : kShapes) {
    std::string w = transposeB ? fmt::format("{},{}", s.n, s.k) : fmt::format("{},{}", s.k, s.n);
    body += fmt::format("  %x{0} = input {{name = \"x{0}\"}} : f32[{1},{2}]\n", i, s.m, s.k);
    body += fmt::format("  %w{0} = {1} {{name = \"w{0}\"}} : f32[{2}]\n", i,
                        weightIsParam ? "param" : "input", w);
    body += fmt::format("  %y{0} = matmul %x{0}, %w{0}{1} : f32[{2},{3}]\n", i,
                        transposeB ? " {transpose_b = true}" : "", s.m, s.n);
    outputs += fmt::format("{}%y{}", i ? ", " : "", i);
    ++i;
  }
  return "module @mm mesh(data=1, model=1) {\n" + body + "  output " + outputs + "\n}\n";
}

struct MatmulCase {
  bool weightIsParam, transposeB, smallTiles;
};

class MatmulKernels : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(MatmulKernels, MatchTheInterpreter) {
  MatmulCase c = GetParam();
  EXPECT_MATCHES_INTERPRETER(matmulModule(c.weightIsParam, c.transposeB),
                             c.smallTiles ? test::smallTileOptions() : test::verifiedOptions());
}

INSTANTIATE_TEST_SUITE_P(
    All, MatmulKernels,
    ::testing::Values(MatmulCase{true, true, false}, MatmulCase{true, false, false},
                      MatmulCase{false, true, false}, MatmulCase{false, false, false},
                      MatmulCase{true, true, true}, MatmulCase{false, false, true}),
    [](const auto &info) {
      return std::string(info.param.weightIsParam ? "Weight" : "Activation") +
             (info.param.transposeB ? "Transposed" : "") +
             (info.param.smallTiles ? "SmallTiles" : "");
    });

TEST(MatmulKernels, BatchedOperandsAndSharedWeights) {
  // Attention-style batched products (both operands activations) and a rank-3 activation times a
  // shared weight; the big case crosses the default row block (mc) and depth block (kc).
  EXPECT_MATCHES_INTERPRETER(R"(module @batched mesh(data=1, model=1) {
  %q = input {name = "q"} : f32[2,3,13,17]
  %k = input {name = "k"} : f32[2,3,7,17]
  %s = matmul %q, %k {transpose_b = true} : f32[2,3,13,7]
  %v = input {name = "v"} : f32[2,3,7,33]
  %o = matmul %s, %v : f32[2,3,13,33]
  %x = input {name = "x"} : f32[2,197,300]
  %w = param {name = "w"} : f32[40,300]
  %y = matmul %x, %w {transpose_b = true} : f32[2,197,40]
  %bw = param {name = "bw"} : f32[3,17,5]
  %a = input {name = "a"} : f32[3,9,17]
  %ab = matmul %a, %bw : f32[3,9,5]
  output %s, %o, %y, %ab
}
)");
}

TEST(MatmulKernels, ThreadsSplitSmallWeightsByRowsAndLargeOnesByColumns) {
  llvmbe::TileConfig t; // mc 160, nc 768
  t.threads = 2;
  // ViT-Ti/16's MLP-in (590 KB of weights): two row blocks, all columns in each.
  llvmbe::TileConfig small = llvmbe::matmulTiles(197, 768, 192, t);
  EXPECT_EQ(small.mc, 104);
  EXPECT_EQ(small.nc, 768);
  // ViT-B/16's MLP-in (9 MB): one row block, four column blocks.
  llvmbe::TileConfig large = llvmbe::matmulTiles(197, 3072, 768, t);
  EXPECT_EQ(large.mc, 200);
  EXPECT_EQ(large.nc, 768);
  EXPECT_EQ(llvmbe::matmulTiles(197, 768, 3072, t).nc, 192);
  // One thread: the blocks as the tiles ask.
  t.threads = 1;
  EXPECT_EQ(llvmbe::matmulTiles(197, 768, 192, t).mc, 200);
}

TEST(MatmulKernels, DeepBf16ProductsTakeDeeperShorterBlocks) {
  llvmbe::TileConfig t;
  t.mr = 14, t.mc = 168, t.kc = 768;
  // ViT-B/16's MLP-out in bf16 (1536 pairs deep): blocks of 1536 pairs and 84 rows.
  llvmbe::TileConfig deep = llvmbe::matmulTiles(1576, 768, 1536, t, 1, /*bf16=*/true);
  EXPECT_EQ(deep.kc, 1536);
  EXPECT_EQ(deep.mc, 84);
  EXPECT_EQ(llvmbe::depthBlock(1536, deep), 1536);
  // One block deep already, or f32: the tiles as asked.
  EXPECT_EQ(llvmbe::matmulTiles(1576, 3072, 384, t, 1, true).kc, 768);
  EXPECT_EQ(llvmbe::matmulTiles(1576, 3072, 384, t, 1, true).mc, 168);
  EXPECT_EQ(llvmbe::matmulTiles(1576, 768, 3072, t).kc, 768);
  EXPECT_EQ(llvmbe::matmulTiles(1576, 768, 3072, t).mc, 168);
}

TEST(MatmulKernels, ACopiedOnlyWhereItsRowsWouldShareAnL1Set) {
  // Rows 1024 floats apart all fall into one L1 set: 14-row tiles read a copy of A's block,
  // 8-row tiles A itself, at K = 1024 and (both) at ViT-B/16's 768.
  llvmbe::MatmulDesc d;
  d.m = 29, d.n = 40, d.k = 1024;
  d.tiles.mr = 14;
  EXPECT_FALSE(llvmbe::matmulScratch(d).aInPlace);
  d.tiles.mr = 8;
  EXPECT_TRUE(llvmbe::matmulScratch(d).aInPlace);
  d.k = 768;
  d.tiles.mr = 14;
  EXPECT_TRUE(llvmbe::matmulScratch(d).aInPlace);
  std::string module = R"(module @rows mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,29,1024]
  %w = param {name = "w"} : f32[40,1024]
  %b = param {name = "b"} : f32[40]
  %y = fused_linear %x, %w, %b {bias = true, transpose_b = true} : f32[2,29,40]
  output %y
}
)";
  llvmbe::Options copied = test::verifiedOptions();
  copied.tiles.mr = 14, copied.tiles.nr = 32, copied.tiles.kc = 256, copied.tiles.mc = 28;
  EXPECT_MATCHES_INTERPRETER(module, copied);
  EXPECT_MATCHES_INTERPRETER(module);
}

// fused_linear with every combination of its epilogue steps.
std::string fusedModule(int64_t m, int64_t n, int64_t k) {
  struct Variant {
    bool bias, gelu, approximate, residual;
  };
  const Variant variants[] = {
      {false, false, false, false}, {true, false, false, false}, {false, true, false, false},
      {true, true, false, false},   {true, true, true, false},   {false, false, false, true},
      {true, false, false, true},   {true, true, false, true},   {false, true, true, true},
  };
  std::string body = fmt::format("  %x = input {{name = \"x\"}} : f32[{},{}]\n"
                                 "  %w = param {{name = \"w\"}} : f32[{},{}]\n"
                                 "  %b = param {{name = \"b\"}} : f32[{}]\n"
                                 "  %r = input {{name = \"r\"}} : f32[{},{}]\n",
                                 m, k, n, k, n, m, n);
  std::string outputs;
  int i = 0;
  for (const Variant &v : variants) {
    std::string operands = "%x, %w";
    std::vector<std::string> attrs{"transpose_b = true"};
    if (v.bias) {
      operands += ", %b";
      attrs.push_back("bias = true");
    }
    if (v.gelu)
      attrs.push_back("gelu = true");
    if (v.approximate)
      attrs.push_back("gelu_approximate = true");
    if (v.residual) {
      operands += ", %r";
      attrs.push_back("residual = true");
    }
    std::sort(attrs.begin(), attrs.end());
    body += fmt::format("  %y{} = fused_linear {} {{{}}} : f32[{},{}]\n", i, operands,
                        fmt::join(attrs, ", "), m, n);
    outputs += fmt::format("{}%y{}", i ? ", " : "", i);
    ++i;
  }
  return "module @fused mesh(data=1, model=1) {\n" + body + "  output " + outputs + "\n}\n";
}

TEST(FusedLinearKernels, EveryEpilogueCombination) {
  EXPECT_MATCHES_INTERPRETER(fusedModule(13, 33, 17));
}

TEST(FusedLinearKernels, EpiloguesAcrossDepthAndRowBlocks) {
  // With small tiles the epilogue must apply once, on the last depth block only.
  EXPECT_MATCHES_INTERPRETER(fusedModule(29, 37, 50), test::smallTileOptions());
  EXPECT_MATCHES_INTERPRETER(fusedModule(197, 100, 300));
}

TEST(FusedLinearKernels, UntransposedWeightAndRank3) {
  EXPECT_MATCHES_INTERPRETER(R"(module @fused3 mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,7,17]
  %w = param {name = "w"} : f32[17,5]
  %b = param {name = "b"} : f32[5]
  %r = input {name = "r"} : f32[2,7,5]
  %y = fused_linear %x, %w, %b, %r {bias = true, gelu = true, residual = true} : f32[2,7,5]
  output %y
}
)");
}

} // namespace
} // namespace vitc
