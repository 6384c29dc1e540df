// bf16 kernels against the interpreter: converts bit for bit, matmuls with vdpbf16ps (where the
// host has AVX512-BF16), with f32 math on bf16 values (AVX-512 without it, and AVX2), and what the
// bf16 policy costs in accuracy against f32.
#include <bit>
#include <limits>

#include <fmt/format.h>

#include "support/bfloat16.h"
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/fixtures.h"

namespace vitc {
namespace {

using test::optionsFor;
using test::Path;
using test::pathName;

struct Shape3 {
  int64_t m, n, k;
};

// Even depths (bf16 kernels take pairs), ragged everywhere else; 1538 crosses the default depth
// block (768 pairs), 130 the small tiles' (16 pairs) many times.
const std::vector<Shape3> kShapes = {{7, 5, 4},   {13, 33, 18},  {197, 100, 130},
                                     {7, 100, 2}, {9, 50, 1538}, {1, 7, 64}};

// One matmul per shape with both operands converted to bf16; the weight a parameter (converted
// and packed at load) or an input (both per run), read [K, N] or, with transpose_b, [N, K].
std::string bf16MatmulModule(bool weightIsParam, bool transposeB) {
  std::string body, outputs;
  int i = 0;
  for (const Shape3 &s : kShapes) {
    std::string w = transposeB ? fmt::format("{},{}", s.n, s.k) : fmt::format("{},{}", s.k, s.n);
    body += fmt::format("  %x{0} = input {{name = \"x{0}\"}} : f32[{1},{2}]\n", i, s.m, s.k);
    body += fmt::format("  %w{0} = {1} {{name = \"w{0}\"}} : f32[{2}]\n", i,
                        weightIsParam ? "param" : "input", w);
    body += fmt::format("  %xb{0} = convert %x{0} : bf16[{1},{2}]\n", i, s.m, s.k);
    body += fmt::format("  %wb{0} = convert %w{0} : bf16[{1}]\n", i, w);
    body += fmt::format("  %y{0} = matmul %xb{0}, %wb{0}{1} : f32[{2},{3}]\n", i,
                        transposeB ? " {transpose_b = true}" : "", s.m, s.n);
    outputs += fmt::format("{}%y{}", i ? ", " : "", i);
    ++i;
  }
  return "module @mm mesh(data=1, model=1) {\n" + body + "  output " + outputs + "\n}\n";
}

struct MatmulCase {
  Path path;
  bool weightIsParam, transposeB, smallTiles;
};

class Bf16Matmul : public ::testing::TestWithParam<MatmulCase> {};

// Both sides multiply the same bf16 values, whose products are exact in f32: they differ only in
// the order of the f32 additions, so the tolerance is f32's (1e-5 of the output's scale).
TEST_P(Bf16Matmul, MatchesTheInterpreter) {
  MatmulCase c = GetParam();
  EXPECT_MATCHES_INTERPRETER(bf16MatmulModule(c.weightIsParam, c.transposeB),
                             optionsFor(c.path, c.smallTiles));
}

std::vector<MatmulCase> matmulCases() {
  std::vector<MatmulCase> cases;
  for (Path path : {Path::Host, Path::Widened, Path::Avx2})
    for (bool param : {true, false})
      for (bool transposed : {true, false})
        cases.push_back({path, param, transposed, false});
  cases.push_back({Path::Host, true, true, true});
  cases.push_back({Path::Host, false, false, true});
  cases.push_back({Path::Widened, false, true, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(All, Bf16Matmul, ::testing::ValuesIn(matmulCases()), [](const auto &info) {
  const MatmulCase &c = info.param;
  return pathName(c.path) + (c.weightIsParam ? "Weight" : "Activation") +
         (c.transposeB ? "Transposed" : "") + (c.smallTiles ? "SmallTiles" : "");
});

// Fused epilogues (bias, GELU, residual: f32) after a bf16 product, and batched products of two
// activations, as attention without its fused kernel has them.
const char *kEpilogues = R"(module @epilogues mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,13,20]
  %w = param {name = "w"} : f32[33,20]
  %b = param {name = "b"} : f32[33]
  %r = input {name = "r"} : f32[2,13,33]
  %xb = convert %x : bf16[2,13,20]
  %wb = convert %w : bf16[33,20]
  %y = fused_linear %xb, %wb, %b, %r {bias = true, gelu = true, residual = true, transpose_b = true} : f32[2,13,33]
  %q = input {name = "q"} : f32[2,3,13,18]
  %k = input {name = "k"} : f32[2,3,7,18]
  %qb = convert %q : bf16[2,3,13,18]
  %kb = convert %k : bf16[2,3,7,18]
  %s = matmul %qb, %kb {transpose_b = true} : f32[2,3,13,7]
  %v = input {name = "v"} : f32[2,3,18,33]
  %vb = convert %v : bf16[2,3,18,33]
  %o = matmul %qb, %vb : f32[2,3,13,33]
  output %y, %s, %o
}
)";

TEST(Bf16Kernels, EpiloguesAndBatchedProductsMatchTheInterpreter) {
  for (Path path : {Path::Host, Path::Widened, Path::Avx2}) {
    SCOPED_TRACE(pathName(path));
    EXPECT_MATCHES_INTERPRETER(kEpilogues, optionsFor(path));
    EXPECT_MATCHES_INTERPRETER(kEpilogues, optionsFor(path, /*smallTiles=*/true));
  }
}

// f32 -> bf16 -> f32 on values that test the rounding: ties (to even), values just off a tie,
// the largest finite floats (which round to infinity), infinities, NaN, subnormals, and a ragged
// row so that the masked tail is used.
TEST(Bf16Kernels, ConvertRoundsToNearestEvenAndKeepsNaN) {
  std::vector<float> values = {
      1.0f,
      std::bit_cast<float>(0x3f808000u), // a tie between 1 and the next bf16: to even (1)
      std::bit_cast<float>(0x3f818000u), // a tie: to even (up)
      std::bit_cast<float>(0x3f808001u), // just above a tie: up
      std::bit_cast<float>(0x3f807fffu), // just below: down
      -2.7182817f,
      std::numeric_limits<float>::max(),
      std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(),
      std::bit_cast<float>(0x7f800001u), // a signalling NaN whose payload is all in the low half
      std::numeric_limits<float>::denorm_min(),
      std::bit_cast<float>(0x00818000u),
      0.0f,
      -0.0f,
      3.14159265f,
      65504.0f,
  };
  for (Path path : {Path::Host, Path::Avx2}) {
    SCOPED_TRACE(pathName(path));
    const int64_t n = static_cast<int64_t>(values.size());
    std::string text = fmt::format(R"(module @round mesh(data=1, model=1) {{
  %x = input {{name = "x"}} : f32[3,{0}]
  %xb = convert %x : bf16[3,{0}]
  %y = convert %xb : f32[3,{0}]
  output %y
}}
)",
                                   n);
    auto m = test::parseAndPlan(text);
    ASSERT_TRUE(m) << m.error().str();
    Tensor x = Tensor::zeros({3, n});
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t i = 0; i < n; ++i)
        x.mutableData()[r * n + i] = (r == 1 ? -1.0f : 1.0f) * values[static_cast<size_t>(i)];
    auto compiled = llvmbe::compile(**m, optionsFor(path));
    ASSERT_TRUE(compiled) << compiled.error().str();
    auto runner = runtime::MeshRunner::create(*compiled, {});
    ASSERT_TRUE(runner) << runner.error().str();
    auto out = (*runner)->run({x});
    ASSERT_TRUE(out) << out.error().str();
    for (int64_t i = 0; i < 3 * n; ++i) {
      float in = x.data()[i], got = (*out)[0].data()[i];
      if (std::isnan(in)) {
        EXPECT_TRUE(std::isnan(got)) << "element " << i;
        continue;
      }
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(roundToBfloat16(in)))
          << "element " << i << ": " << in;
    }
  }
  // The rounding itself, as the interpreter and the kernels do it.
  EXPECT_EQ(roundToBfloat16(std::bit_cast<float>(0x3f808000u)), 1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(roundToBfloat16(std::bit_cast<float>(0x3f818000u))),
            0x3f820000u);
  EXPECT_EQ(roundToBfloat16(std::numeric_limits<float>::max()),
            std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(roundToBfloat16(std::bit_cast<float>(0x7f800001u))));
}

// The cost of the policy, on a projection and an MLP of ViT-B/16's widths: the bf16 program
// (convert-bf16 applied) against the same program in f32, per output, relative to its scale.
TEST(Bf16Kernels, PolicyErrorAgainstF32IsSmall) {
  const char *f32 = R"(module @mlp mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[50,768]
  %w1 = param {name = "w1"} : f32[768,768]
  %b1 = param {name = "b1"} : f32[768]
  %w2 = param {name = "w2"} : f32[768,768]
  %h = fused_linear %x, %w1, %b1 {bias = true, gelu = true, transpose_b = true} : f32[50,768]
  %y = matmul %h, %w2 {transpose_b = true} : f32[50,768]
  output %y
}
)";
  auto parsed = ir::parseModule(f32, "mlp.ir");
  ASSERT_TRUE(parsed) << parsed.error().str();
  std::unique_ptr<ir::Module> bf16 = std::move(*parsed);
  passes::PipelineOptions pipeline;
  pipeline.passes = {"convert-bf16", "plan-memory"};
  pipeline.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(pipeline, sink);
  passes::PassContext ctx;
  ctx.options.dtype = ir::DType::BF16;
  ASSERT_TRUE(pm.run(*bf16, ctx));
  auto exact = test::parseAndPlan(f32);
  ASSERT_TRUE(exact) << exact.error().str();
  // Weights of about 1/sqrt(768), as a trained layer's.
  float sd = 0.036f;
  auto mixed = test::compareModule(std::shared_ptr<const ir::Module>(std::move(bf16)),
                                   test::verifiedOptions(), sd);
  auto reference = test::compareModule(*exact, test::verifiedOptions(), sd);
  ASSERT_TRUE(mixed) << mixed.error().str();
  ASSERT_TRUE(reference) << reference.error().str();
  // bf16 kernels match the bf16 interpreter: the first product to f32's tolerance, but the
  // hidden layer's values differ in their last f32 bits, and one near a tie between two bf16
  // rounds the other way (2^-8 of itself) before the second product.
  EXPECT_LE(mixed->maxRelDiff, 1e-4);
  // ...and the bf16 result differs from the f32 one by bf16's rounding of the inputs (8 bits of
  // mantissa: 2^-9 relative per operand), averaged over 768 terms: well under 1% of the scale,
  // but not zero (the products really are of bf16 values).
  const Tensor &a = mixed->llvm[0], &b = reference->reference[0];
  double scale = 0, diff = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(b.data()[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(a.data()[i]) - b.data()[i]));
  }
  EXPECT_LT(diff / scale, 1e-2) << "bf16 against f32: " << diff / scale;
  EXPECT_GT(diff / scale, 1e-5) << "bf16 against f32: " << diff / scale;
}

// The kernels are chosen from the target CPU, and the report says which: AMX tiles for CPUs with
// AMX-BF16 (Sapphire Rapids), vdpbf16ps for those with AVX512-BF16 only (Zen 4, Cooper Lake), f32
// math on bf16 values for the rest. Compiled (the module verified, assembly and an object
// emitted), not run, so that it holds on any x86 host: this is the only check of the AMX kernels
// on a host without AMX.
TEST(Bf16Kernels, TheTargetCpuChoosesTheProduct) {
  // Depths of whole AMX tiles (32 pairs), of a tile and some pairs (18), and of less than a tile.
  std::string text = R"(module @mixed mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,13,64]
  %w = param {name = "w"} : f32[33,64]
  %b = param {name = "b"} : f32[33]
  %xb = convert %x : bf16[2,13,64]
  %wb = convert %w : bf16[33,64]
  %y = fused_linear %xb, %wb, %b {bias = true, gelu = true, transpose_b = true} : f32[2,13,33]
  %u = input {name = "u"} : f32[20,36]
  %v = param {name = "v"} : f32[36,50]
  %ub = convert %u : bf16[20,36]
  %vb = convert %v : bf16[36,50]
  %z = matmul %ub, %vb : f32[20,50]
  output %y, %z
}
)";
  auto m = test::parseAndPlan(text);
  ASSERT_TRUE(m) << m.error().str();
  struct Want {
    const char *cpu;
    const char *kernels;
    bool amx, dot;
  };
  test::ScopedTempDir tmp("bf16_targets");
  for (Want w : {Want{"sapphirerapids", "AMX tdpbf16ps tiles (amx-bf16)", true, true},
                 Want{"cooperlake", "vdpbf16ps (avx512bf16)", false, true},
                 Want{"znver4", "vdpbf16ps (avx512bf16)", false, true},
                 Want{"x86-64-v4", "f32 FMAs on bf16 values (no avx512bf16)", false, false},
                 Want{"x86-64-v3", "f32 FMAs on bf16 values (no avx512bf16)", false, false}}) {
    SCOPED_TRACE(w.cpu);
    llvmbe::Options o = test::verifiedOptions();
    o.cpu = w.cpu;
    llvmbe::CompileReport report;
    auto assembly = llvmbe::emitAssembly(**m, o, &report);
    ASSERT_TRUE(assembly) << assembly.error().str();
    EXPECT_EQ(report.bf16Kernels, w.kernels);
    EXPECT_EQ(assembly->find("vdpbf16ps") != std::string::npos, w.dot);
    for (const char *amx : {"tdpbf16ps", "ldtilecfg", "tileloadd", "tilestored"})
      EXPECT_EQ(assembly->find(amx) != std::string::npos, w.amx) << amx;
    std::string object = tmp.path + "/" + w.cpu + ".o";
    ASSERT_TRUE(llvmbe::emitObject(**m, object, o));
    EXPECT_GT(std::filesystem::file_size(object), 0u);
  }
  // A module of f32 matmuls reports no bf16 kernels.
  auto f32 = test::parseAndPlan(R"(module @f mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,8]
  %w = param {name = "w"} : f32[8,8]
  %y = matmul %x, %w : f32[4,8]
  output %y
}
)");
  ASSERT_TRUE(f32) << f32.error().str();
  llvmbe::CompileReport report;
  ASSERT_TRUE(llvmbe::emitLlvmIr(**f32, test::verifiedOptions(), &report));
  EXPECT_EQ(report.bf16Kernels, "");
}

// bf16 values exist only as matmul inputs; anything else is refused in one line.
TEST(Bf16Kernels, OtherBf16WorkIsRefused) {
  auto elementwise = test::parseAndPlan(R"(module @half mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,8]
  %xb = convert %x : bf16[4,8]
  %y = scale %xb {factor = 2.0} : bf16[4,8]
  %z = convert %y : f32[4,8]
  output %z
}
)");
  ASSERT_TRUE(elementwise) << elementwise.error().str();
  auto r = llvmbe::emitLlvmIr(**elementwise, test::verifiedOptions());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("%y: the llvm backend computes f32 only, got bf16"),
            std::string::npos)
      << r.error().str();
  auto odd = test::parseAndPlan(R"(module @odd mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,7]
  %w = param {name = "w"} : f32[7,8]
  %xb = convert %x : bf16[4,7]
  %wb = convert %w : bf16[7,8]
  %y = matmul %xb, %wb : f32[4,8]
  output %y
}
)");
  // Data movement of bf16 values, and bf16 outputs, are refused too.
  for (auto [text, message] :
       {std::pair<std::string, std::string>{
            R"(module @moved mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,8]
  %xb = convert %x : bf16[4,8]
  %t = transpose %xb {perm = [1, 0]} : bf16[8,4]
  %tt = convert %t : f32[8,4]
  output %tt
}
)",
            "%t: the llvm backend computes f32 only, got bf16"},
        {R"(module @out mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,8]
  %xb = convert %x : bf16[4,8]
  output %xb
}
)",
         "'output' reads bf16 %xb: the llvm backend reads bf16 only in matmuls"}}) {
    auto m = test::parseAndPlan(text);
    ASSERT_TRUE(m) << m.error().str();
    r = llvmbe::emitLlvmIr(**m, test::verifiedOptions());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find(message), std::string::npos) << r.error().str();
  }
  ASSERT_TRUE(odd) << odd.error().str();
  r = llvmbe::emitLlvmIr(**odd, test::verifiedOptions());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("multiplies bf16 over an even depth only, got 7"),
            std::string::npos)
      << r.error().str();
}

// Every fixture (torchvision, Hugging Face and big_vision models) through the default pipeline
// with dtype=bf16, on one device and on a mesh: within 2e-2 of its largest logit of the PyTorch
// (or JAX) reference.
class Bf16Fixture : public ::testing::TestWithParam<std::string> {};

double largest(const Tensor &t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(t.data()[i])));
  return m;
}

TEST_P(Bf16Fixture, LogitsWithinTwoPercentOfTheLargest) {
  auto factory = llvmbe::compiler(test::verifiedOptions());
  for (std::string mesh : {"", "data=2,model=2"}) {
    SCOPED_TRACE(mesh);
    auto run = test::runFixture(GetParam(), factory, {}, mesh, ir::DType::BF16);
    if (!run && run.error().message().find("does not divide heads") != std::string::npos)
      run = test::runFixture(GetParam(), factory, {}, "data=2,model=1", ir::DType::BF16);
    ASSERT_TRUE(run) << run.error().str();
    double scale = largest(run->expected);
    EXPECT_LE(run->maxAbsDiff, 2e-2 * scale) << GetParam() << ": " << run->maxAbsDiff / scale;
    // bf16 changes the logits (the products really are of bf16 values), by far less than that.
    EXPECT_GT(run->maxAbsDiff, 1e-4 * scale) << GetParam();
    if (std::getenv("VITC_TEST_VERBOSE"))
      std::printf("%s %s: max |bf16 - reference| = %.3g of the largest logit\n", GetParam().c_str(),
                  mesh.c_str(), run->maxAbsDiff / scale);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Bf16Fixture, ::testing::ValuesIn(test::fixtureNames()),
                         [](const auto &info) { return info.param; });

} // namespace
} // namespace vitc
