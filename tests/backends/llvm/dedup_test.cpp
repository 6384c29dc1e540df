// Kernel deduplication: identical layers compile once; the compile report counts calls and kernels.
#include <fstream>

#include "frontend/load_model.h"
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

// A small ViT of `depth` identical sequential blocks, through the default pipeline.
std::unique_ptr<ir::Module> smallVit(int depth, const std::string &block) {
  test::ScopedTempDir dir("llvm_dedup");
  std::string path = dir.path + "/model.vit";
  std::ofstream(path) << "name = \"dedup\"\n[image]\nsize = 32\npatch = 8\nchannels = 3\n"
                      << "[encoder]\nwidth = 48\ndepth = " << depth
                      << "\nmlp = 96\nheads = 3\nblock = \"" << block
                      << "\"\nqk_norm = true\ngelu = \"erf\"\neps = 1e-6\n"
                      << "[bias]\nqkv = true\nout = true\nmlp = true\nnorm = true\n"
                      << "[head]\npool = \"token\"\nclasses = 5\n";
  auto loaded = frontend::loadModel(path, {2});
  EXPECT_TRUE(loaded) << loaded.error().str();
  if (!loaded)
    return nullptr;
  std::ostringstream sink;
  passes::PassManager pm({}, sink);
  passes::PassContext ctx;
  Status s = pm.run(*loaded->module, ctx);
  EXPECT_TRUE(s) << s.error().str();
  return std::move(loaded->module);
}

llvmbe::CompileReport compile(const ir::Module &m, std::string *ir = nullptr) {
  llvmbe::CompileReport report;
  auto text = llvmbe::emitLlvmIr(m, test::verifiedOptions(), &report);
  EXPECT_TRUE(text) << text.error().str();
  if (text && ir)
    *ir = *text;
  return report;
}

TEST(KernelDedup, IdenticalLayersCompileEachKernelOnce) {
  for (const char *block : {"sequential", "parallel"}) {
    SCOPED_TRACE(block);
    auto two = smallVit(2, block), six = smallVit(6, block);
    ASSERT_TRUE(two && six);
    std::string ir;
    llvmbe::CompileReport r2 = compile(*two), r6 = compile(*six, &ir);
    // Four more layers: more calls, not one more kernel.
    EXPECT_EQ(r6.uniqueKernels, r2.uniqueKernels);
    EXPECT_GT(r6.kernels, r2.kernels);
    EXPECT_GE(r6.kernels, 3 * r6.uniqueKernels);
    EXPECT_GT(r6.ops, r2.ops);
    // One external function per distinct kernel in the generated module (helpers are internal).
    int64_t count = 0;
    for (size_t at = ir.find("\ndefine void @vitc_"); at != std::string::npos;
         at = ir.find("\ndefine void @vitc_", at + 1))
      ++count;
    EXPECT_EQ(count, r6.uniqueKernels);
  }
}

TEST(KernelDedup, ReportComesOncePerCompilation) {
  auto m = test::parseAndPlan(R"(module @twice mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[4,8]
  %w = param {name = "w"} : f32[16@model,8]
  %h = matmul %x, %w {transpose_b = true} : f32[4,16@model]
  %g = gelu %h : f32[4,16@model]
  %h2 = matmul %x, %w {transpose_b = true} : f32[4,16@model]
  %g2 = gelu %h2 : f32[4,16@model]
  %s = add %g, %g2 : f32[4,16@model]
  %a = all_gather %s {dim = 1, mesh_axis = "model"} : f32[4,16]
  output %a
}
)");
  ASSERT_TRUE(m) << m.error().str();
  int compiled = 0;
  llvmbe::CompileReport report;
  llvmbe::Options o = test::verifiedOptions();
  o.onCompiled = [&](const llvmbe::CompileReport &r) {
    ++compiled;
    report = r;
  };
  auto c = test::compareModule(*m, o);
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_LE(c->maxRelDiff, 1e-5);
  // Two devices, one compilation; two matmuls and two gelus, one kernel each (plus a packing of
  // the shared weight, done once, and the add).
  EXPECT_EQ(compiled, 1);
  EXPECT_EQ(report.ops, static_cast<int64_t>((*m)->size()));
  EXPECT_EQ(report.kernels, 6);
  EXPECT_EQ(report.uniqueKernels, 4);
  EXPECT_GT(report.seconds, 0);
}

} // namespace
} // namespace vitc
