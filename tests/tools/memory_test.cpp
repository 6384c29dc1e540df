// `vitc stats --mesh` against what a run allocates: within 10% per device.
#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"
#include "frontend/load_model.h"
#include "frontend/weights.h"
#include "passes/analysis.h"
#include "passes/pass_manager.h"
#include "runtime/runner.h"

namespace vitc {
namespace {

struct Case {
  const char *model;
  const char *mesh;
  int64_t batch;
  const char *backend = "interpreter";
};

class StatsMemory : public ::testing::TestWithParam<Case> {};

TEST_P(StatsMemory, PredictionMatchesTheRun) {
  const Case &c = GetParam();
  auto loaded = frontend::loadModel(std::string(VITC_SOURCE_DIR) + "/" + c.model, {c.batch});
  ASSERT_TRUE(loaded) << loaded.error().str();
  auto mesh = ir::parseMesh(c.mesh, Loc{});
  ASSERT_TRUE(mesh);
  loaded->module->mesh = *mesh;
  auto source = frontend::openWeights("random:3");
  ASSERT_TRUE(source);
  std::map<std::string, Tensor> byName;
  for (const ir::Op *p : loaded->module->params())
    byName[p->attrs.getStr("name")] = *(*source)->load(*loaded->module, *p);
  std::ostringstream sink;
  passes::PassManager pm({}, sink);
  passes::PassContext ctx;
  ASSERT_TRUE(pm.run(*loaded->module, ctx));
  passes::ModuleStats stats = passes::analyze(*loaded->module);

  std::shared_ptr<const ir::Module> module = std::move(loaded->module);
  std::vector<Tensor> params;
  for (const ir::Op *p : module->params())
    params.push_back(byName.at(p->attrs.getStr("name")));
  runtime::ProgramFactory factory =
      std::string(c.backend) == "llvm" ? llvmbe::jitFactory() : interp::interpreterFactory();
  auto runner = runtime::MeshRunner::create(module, factory, params);
  ASSERT_TRUE(runner) << runner.error().str();
  Tensor images = Tensor::zeros(module->inputs()[0]->shape());
  for (int64_t i = 0; i < images.numel(); ++i)
    images.mutableData()[i] = static_cast<float>((i * 7919) % 101) / 50.0f - 1.0f;
  auto outs = (*runner)->run({images});
  ASSERT_TRUE(outs) << outs.error().str();
  for (const runtime::DeviceProgram::Memory &m : (*runner)->memory()) {
    double predicted =
        static_cast<double>(stats.weightBytesPerDevice + stats.activationPeakBytesPerDevice);
    double allocated = static_cast<double>(m.weightBytes + m.activationPeakBytes);
    EXPECT_NEAR(allocated, predicted, 0.10 * predicted)
        << c.model << " on " << c.mesh << ": weights " << m.weightBytes << " vs "
        << stats.weightBytesPerDevice << ", activations " << m.activationPeakBytes << " vs "
        << stats.activationPeakBytesPerDevice;
    // The activations alone, too: the plan's packing may lose a little to alignment.
    EXPECT_NEAR(static_cast<double>(m.activationPeakBytes),
                static_cast<double>(stats.activationPeakBytesPerDevice),
                0.25 * static_cast<double>(stats.activationPeakBytesPerDevice));
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, StatsMemory,
    ::testing::Values(Case{"examples/parallel-tiny.vit", "data=1,model=1", 1},
                      Case{"examples/parallel-tiny.vit", "data=1,model=2", 2},
                      Case{"examples/parallel-tiny.vit", "data=2,model=2", 2},
                      Case{"examples/parallel-tiny.vit", "data=1,model=4", 4},
                      Case{"tests/fixtures/tv_tok/config.json", "data=2,model=2", 4},
                      Case{"examples/vit-s16.vit", "data=1,model=2", 1},
                      Case{"examples/vit-s16.vit", "data=1,model=2", 1, "llvm"},
                      Case{"examples/vit-b16.vit", "data=2,model=2", 2, "llvm"}));

} // namespace
} // namespace vitc
