// autodiff and appendLoss on whole models: the step's outputs, the training pipeline, and what the
// forward pipeline's fusions make of the backward.
#include <gtest/gtest.h>

#include "frontend/load_model.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/loss.h"
#include "passes/pass_manager.h"
#include "passes/registry.h"

namespace vitc {
namespace {

using ir::OpKind;

std::unique_ptr<ir::Module> loadExample(const std::string &example, int64_t batch) {
  auto loaded = frontend::loadModel(std::string(VITC_SOURCE_DIR) + "/examples/" + example, {batch});
  EXPECT_TRUE(loaded) << loaded.error().str();
  return loaded ? std::move(loaded->module) : nullptr;
}

Status runPasses(ir::Module &m, std::vector<std::string> names) {
  passes::PipelineOptions o;
  o.passes = std::move(names);
  o.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(o, sink);
  passes::PassContext ctx;
  return pm.run(m, ctx);
}

TEST(AppendLoss, MakesTheMeanLossOverTheBatchTheOnlyOutput) {
  for (auto kind : {passes::LossKind::SoftmaxCrossEntropy, passes::LossKind::SigmoidCrossEntropy}) {
    auto m = loadExample("parallel-tiny.vit", 3);
    ASSERT_TRUE(m);
    passes::appendLoss(*m, kind);
    EXPECT_TRUE(ir::verify(*m).empty()) << ir::verify(*m).str();
    ir::Op *out = m->output();
    ASSERT_EQ(out->operands.size(), 1u);
    ir::Op *loss = out->operand(0);
    EXPECT_EQ(loss->name, "loss");
    // The mean as a sum scaled by 1/B: on a mesh, the sum over a split batch is each device's
    // partial sum.
    ASSERT_TRUE(loss->is(OpKind::Scale));
    EXPECT_DOUBLE_EQ(loss->attrs.getFloat("factor"), 1.0 / 3);
    EXPECT_EQ(loss->shape(), Shape{});
    ir::Op *total = loss->operand(0);
    ASSERT_TRUE(total->is(OpKind::Sum));
    EXPECT_EQ(total->attrs.getInt("axis"), 0);
    ir::Op *perExample = total->operand(0);
    EXPECT_TRUE(perExample->is(kind == passes::LossKind::SoftmaxCrossEntropy
                                   ? OpKind::SoftmaxCrossEntropy
                                   : OpKind::SigmoidCrossEntropy));
    std::vector<ir::Op *> inputs = m->inputs();
    ASSERT_EQ(inputs.size(), 2u);
    EXPECT_EQ(inputs[1]->attrs.getStr("name"), "labels");
    EXPECT_EQ(inputs[1]->shape(), (Shape{3, 10}));
    EXPECT_EQ(perExample->operand(1), inputs[1]);
  }
}

// The step outputs the loss, then one gradient per param in param order, typed like the param and
// named after its weight; the params stay the same.
TEST(Autodiff, OutputsTheLossAndOneGradientPerParamInParamOrder) {
  auto m = loadExample("vit-ti16.vit", 1);
  ASSERT_TRUE(m);
  passes::appendLoss(*m, passes::LossKind::SoftmaxCrossEntropy);
  std::vector<std::string> before;
  for (const ir::Op *p : m->params())
    before.push_back(p->attrs.getStr("name"));
  ASSERT_TRUE(runPasses(*m, {"autodiff"}));
  std::vector<ir::Op *> params = m->params();
  ASSERT_EQ(params.size(), before.size());
  ir::Op *out = m->output();
  ASSERT_EQ(out->operands.size(), params.size() + 1);
  EXPECT_EQ(out->operand(0)->name, "loss");
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string &weight = params[i]->attrs.getStr("name");
    EXPECT_EQ(weight, before[i]);
    ir::Op *g = out->operand(i + 1);
    EXPECT_EQ(g->name, "grad." + ir::valueName(weight));
    EXPECT_EQ(g->type, params[i]->type) << weight;
  }
  // The text round-trips, as every module's does.
  auto reparsed = ir::parseModule(ir::print(*m), "step.ir");
  ASSERT_TRUE(reparsed) << reparsed.error().str();
  EXPECT_TRUE(ir::equal(**reparsed, *m));
}

// After autodiff, fuse-parallel-linear merges the backward of ViT-22B's parallel block as it does
// the forward, against the same concatenated weights: the in-projection's [Wq|Wk|Wv|W1] feeds the
// forward matmul and dX of the LayerNorm output, the out-projections' [Wo|W2] the forward sum and
// the dX of [attention | gelu(h)]. The weight gradients stay one matmul per weight.
TEST(Autodiff, FusionsMergeTheBackwardAgainstTheForwardsConcatenatedWeights) {
  auto m = loadExample("parallel-tiny.vit", 2);
  ASSERT_TRUE(m);
  passes::appendLoss(*m, passes::LossKind::SoftmaxCrossEntropy);
  ASSERT_TRUE(runPasses(*m, {"autodiff", "canonicalize", "fuse-parallel-linear", "canonicalize"}));
  ir::UserMap users = m->users();
  for (int layer = 0; layer < 2; ++layer) {
    for (const char *weights : {"fused.w", "fused_sum.w"}) {
      std::string name = "l" + std::to_string(layer) + "." + weights;
      const ir::Op *w = m->findByName(name);
      ASSERT_NE(w, nullptr) << name;
      EXPECT_TRUE(w->is(OpKind::Concat)) << name;
      int matmuls = 0;
      for (const ir::Op *u : users[w])
        matmuls += u->is(OpKind::MatMul) && u->operand(1) == w;
      EXPECT_EQ(matmuls, 2) << name << ": the forward projection and dX";
    }
  }
}

// The whole training step lowers: raise-onnx (for imported models), autodiff, the micro-batches'
// accumulation and the optimizer, then the forward pipeline, with the verifier after every pass.
TEST(Autodiff, TheTrainingPipelineLowersSequentialAndParallelModels) {
  std::vector<std::string> names;
  for (const passes::PipelineStep &step : passes::trainingPipeline())
    names.push_back(step.pass);
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(names[0], "raise-onnx");
  EXPECT_EQ(names[1], "autodiff");
  EXPECT_EQ(names[2], "accumulate-microbatches");
  EXPECT_EQ(names[3], "optimizer");
  for (const char *example : {"parallel-tiny.vit", "vit-ti16.vit"}) {
    auto m = loadExample(example, 1);
    ASSERT_TRUE(m);
    passes::appendLoss(*m, passes::LossKind::SoftmaxCrossEntropy);
    size_t params = m->params().size();
    Status s = runPasses(*m, names);
    ASSERT_TRUE(s) << example << ": " << s.error().str();
    EXPECT_EQ(m->output()->operands.size(), params + 1) << example;
  }
}

} // namespace
} // namespace vitc
