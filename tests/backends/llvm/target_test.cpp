// Code for other CPUs: AVX2 only (haswell) must run correctly and use no AVX-512 register.
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

const char *kMixedModule = R"(module @mixed mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,13,20]
  %w = param {name = "w"} : f32[33,20]
  %b = param {name = "b"} : f32[33]
  %r = input {name = "r"} : f32[2,13,33]
  %y = fused_linear %x, %w, %b, %r {bias = true, gelu = true, residual = true, transpose_b = true} : f32[2,13,33]
  %ln = param {name = "ln"} : f32[33]
  %n = layer_norm %y, %ln {eps = 1e-06} : f32[2,13,33]
  %p = softmax %n : f32[2,13,33]
  %t = gelu %n {approximate = true} : f32[2,13,33]
  %mm = matmul %p, %t {transpose_b = true} : f32[2,13,13]
  %q = input {name = "q"} : f32[2,11,24]
  %qs = param {name = "qs"} : f32[12]
  %ks = param {name = "ks"} : f32[12]
  %o = attention %q, %q, %q, %qs, %ks {eps = 1e-06, heads = 2, qk_norm = true, scale = 0.3} : f32[2,11,24]
  %m = mean %o {axis = 1} : f32[2,24]
  output %mm, %o, %m
}
)";

TEST(Targets, Avx2CodeMatchesTheInterpreterAndUsesNoZmm) {
  test::ScopedTempDir tmp("llvm_avx2");
  const std::string &dir = tmp.path;
  llvmbe::Options o = test::verifiedOptions();
  o.cpu = "haswell";
  o.saveObject = dir + "/jit.o";
  llvmbe::CompileReport report;
  o.onCompiled = [&](const llvmbe::CompileReport &r) { report = r; };
  EXPECT_MATCHES_INTERPRETER(kMixedModule, o);
  EXPECT_EQ(report.cpu, "haswell");
  EXPECT_EQ(report.vectorWidth, 8);
  // The object the JIT loaded: ymm registers, never zmm.
  ASSERT_TRUE(test::fileExists(o.saveObject));
  test::CommandResult dis = test::runCommand({"llvm-objdump-19", "-d", o.saveObject});
  if (dis.exit != 0)
    GTEST_SKIP() << "llvm-objdump-19 is not available: " << dis.err;
  EXPECT_EQ(dis.out.find("zmm"), std::string::npos);
  EXPECT_NE(dis.out.find("ymm"), std::string::npos);
  EXPECT_NE(dis.out.find("vfmadd"), std::string::npos);
}

TEST(Targets, Avx512UsesZmm) {
  llvmbe::Options o = test::verifiedOptions();
  o.cpu = "x86-64-v4";
  auto m = test::parseAndPlan(kMixedModule);
  ASSERT_TRUE(m) << m.error().str();
  llvmbe::CompileReport report;
  auto assembly = llvmbe::emitAssembly(**m, o, &report);
  ASSERT_TRUE(assembly) << assembly.error().str();
  EXPECT_EQ(report.vectorWidth, 16);
  EXPECT_NE(assembly->find("zmm"), std::string::npos);
  o.cpu = "haswell";
  assembly = llvmbe::emitAssembly(**m, o, &report);
  ASSERT_TRUE(assembly) << assembly.error().str();
  EXPECT_EQ(assembly->find("zmm"), std::string::npos);
}

TEST(Targets, HostRunsTheWidestVectors) {
  llvmbe::Options o = test::verifiedOptions();
  llvmbe::CompileReport report;
  o.onCompiled = [&](const llvmbe::CompileReport &r) { report = r; };
  EXPECT_MATCHES_INTERPRETER(kMixedModule, o);
  EXPECT_FALSE(report.cpu.empty());
  EXPECT_GE(report.vectorWidth, 8);
}

TEST(Targets, BadCpusAndTilesAreErrors) {
  auto m = test::parseAndPlan(kMixedModule);
  ASSERT_TRUE(m) << m.error().str();
  llvmbe::Options o = test::verifiedOptions();
  o.cpu = "not-a-cpu";
  auto r = llvmbe::emitLlvmIr(**m, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("unknown cpu 'not-a-cpu'"), std::string::npos);
  o = test::verifiedOptions();
  o.tiles.nr = 17;
  r = llvmbe::emitLlvmIr(**m, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("tile sizes"), std::string::npos);
}

} // namespace
} // namespace vitc
