// A module made of the training ops goes through the whole default pipeline and runs with both
// backends to the same values: no pass assumes the forward op set.
#include <fmt/format.h>

#include "passes/registry.h"
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

// A loss, the backward ops and an update-like tail, on a mesh of `data` x `model` devices.
std::string trainingOpsModule(int data, int model) {
  // (Over several devices, reductions over the split batch need rules of their own: issue 17.)
  return fmt::format(R"(module @step mesh(data={}, model={}) {{
  %x = input {{name = "x"}} : f32[4,6,20]
  %labels = input {{name = "labels"}} : f32[4,6,10]
  %w = param {{name = "w"}} : f32[20,10]
  %ln = param {{name = "ln"}} : f32[20]
  %lr = param {{name = "lr"}} : f32[]
  %h = layer_norm %x, %ln {{eps = 1e-06}} : f32[4,6,20]
  %z = matmul %h, %w : f32[4,6,10]
  %ce = softmax_cross_entropy %z, %labels : f32[4,6]
  %bce = sigmoid_cross_entropy %z, %labels : f32[4,6]
  %tokens = sum %ce {{axis = 1}} : f32[4]
  %loss = mean %tokens {{axis = 0}} : f32[]
  %p = softmax %z : f32[4,6,10]
  %dz = sub %p, %labels : f32[4,6,10]
  %dp = softmax_grad %p, %dz : f32[4,6,10]
  %g = gelu_grad %z, %dp {{approximate = true}} : f32[4,6,10]
  %dh = matmul %g, %w {{transpose_b = true}} : f32[4,6,20]
  %dx = layer_norm_grad %x, %ln, %dh {{eps = 1e-06}} : f32[4,6,20]
  %sq = mul %dx, %dx : f32[4,6,20]
  %one = fill {{value = 1.0}} : f32[]
  %sq1 = add %sq, %one : f32[4,6,20]
  %norm = sqrt %sq1 : f32[4,6,20]
  %r = div %dx, %norm : f32[4,6,20]
  %update = mul %r, %lr : f32[4,6,20]
  %m = maximum %update, %dx : f32[4,6,20]
  %s = sigmoid %m : f32[4,6,20]
  %db = sum %dx {{axis = 0}} : f32[6,20]
  output %loss, %bce, %s, %db
}}
)",
                     data, model);
}

Expected<std::shared_ptr<const ir::Module>> runDefaultPipeline(const std::string &text) {
  VITC_ASSIGN(std::unique_ptr<ir::Module> m, ir::parseModule(text, "test.ir"));
  passes::PipelineOptions pipeline; // no passes named: the default pipeline
  pipeline.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(pipeline, sink);
  passes::PassContext ctx;
  VITC_TRY(pm.run(*m, ctx));
  return std::shared_ptr<const ir::Module>(std::move(m));
}

TEST(TrainingPipeline, SingleDeviceModuleRunsThroughTheDefaultPipelineAndBothBackends) {
  auto m = runDefaultPipeline(trainingOpsModule(1, 1));
  ASSERT_TRUE(m) << m.error().str();
  // Nothing the pipeline did turned a training op into another: each is still there.
  for (const char *kind :
       {"softmax_cross_entropy", "sigmoid_cross_entropy", "sum", "sub", "div", "maximum", "sqrt",
        "sigmoid", "softmax_grad", "gelu_grad", "layer_norm_grad"}) {
    bool found = false;
    for (const auto &op : (*m)->ops())
      found |= op->keyword() == kind;
    EXPECT_TRUE(found) << kind;
  }
  for (int threads : {1, 2}) {
    llvmbe::Options options = test::verifiedOptions();
    options.threads = threads;
    auto c = test::compareModule(*m, options);
    ASSERT_TRUE(c) << c.error().str();
    EXPECT_LE(c->maxRelDiff, 1e-5) << threads << " threads";
  }
}

} // namespace
} // namespace vitc
