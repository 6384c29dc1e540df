// The pass registry: sorted, complete, every pipeline step registered, and each pass under the
// one name its class gives it.
#include <gtest/gtest.h>

#include "ir/text.h"
#include "passes/registry.h"

namespace vitc::passes {
namespace {

TEST(Registry, IsSortedByName) {
  const auto &r = passRegistry();
  for (size_t i = 1; i < r.size(); ++i)
    EXPECT_LT(r[i - 1].name, r[i].name);
}

TEST(Registry, EveryPipelineStepIsARegisteredPassWithAReason) {
  for (const PipelineStep &step : defaultPipeline()) {
    EXPECT_TRUE(findPass(step.pass)) << step.pass;
    EXPECT_FALSE(step.reason.empty()) << step.pass;
  }
}

TEST(Registry, EveryRegisteredPassRunsInAPipeline) {
  for (const PassInfo &info : passRegistry()) {
    bool used = false;
    for (const auto *pipeline : {&defaultPipeline(), &trainingPipeline()})
      for (const PipelineStep &step : *pipeline)
        used |= step.pass == info.name;
    EXPECT_TRUE(used) << info.name;
  }
}

// A training step is lowered like a forward pass: the training pipeline ends with the default one.
TEST(Registry, TheTrainingPipelineEndsWithTheDefaultOne) {
  const std::vector<PipelineStep> &train = trainingPipeline(), &forward = defaultPipeline();
  ASSERT_GT(train.size(), forward.size());
  for (size_t i = 0; i < forward.size(); ++i)
    EXPECT_EQ(train[train.size() - forward.size() + i].pass, forward[i].pass);
  // Before them, raise-onnx (an imported model is differentiated as the ops it is raised to), then
  // the training-only steps.
  EXPECT_EQ(train.front().pass, "raise-onnx");
  for (size_t i = 1; i + forward.size() < train.size(); ++i)
    for (const PipelineStep &step : forward)
      EXPECT_NE(train[i].pass, step.pass) << "a training-only step is also a forward step";
}

// The names --passes, --print-after, --disable-pass and --remarks take; renaming a pass's class
// name changes the command line, and must change this list too.
TEST(Registry, NamesAreTheOnesTheCommandLineTakes) {
  std::vector<std::string> names;
  for (const PassInfo &info : passRegistry())
    names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "accumulate-microbatches", "autodiff", "canonicalize", "collective-matmul", "convert-bf16",
                       "fuse-elementwise", "fuse-parallel-linear", "insert-collectives",
                       "optimizer", "plan-memory", "propagate-sharding", "raise-onnx",
                       "schedule-overlap"}));
}

TEST(Registry, EachPassIsRegisteredUnderItsOwnName) {
  for (const PassInfo &info : passRegistry())
    EXPECT_EQ(info.create()->name(), info.name);
}

// A pass's remarks carry its name even when it runs without the pass manager.
TEST(Registry, RemarksCarryTheNameOfThePassThatMadeThem) {
  auto m = ir::parseModule(R"(module @t mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[1,4@model,8]
  %w = param {name = "w"} : f32[6@model,8]
  %g = all_gather %x {dim = 1, mesh_axis = "model"} : f32[1,4,8]
  %y = matmul %g, %w {transpose_b = true} : f32[1,4,6@model]
  output %y
})",
                           "t.ir");
  ASSERT_TRUE(m) << m.error().str();
  PassContext ctx;
  ctx.options.layout.collectiveMatmul = false;
  auto pass = findPass("collective-matmul");
  ASSERT_TRUE(pass);
  ASSERT_TRUE((*pass)->create()->run(**m, ctx));
  ASSERT_EQ(ctx.remarks.size(), 1u);
  EXPECT_EQ(ctx.remarks[0],
            "collective-matmul: off in the layout; 1 all_gathers and 0 reduce_scatters stay whole");
}

TEST(Registry, UnknownNamesListTheKnownOnes) {
  auto e = findPass("canonicalise");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("known passes: accumulate-microbatches, autodiff, canonicalize"),
            std::string::npos);
}

} // namespace
} // namespace vitc::passes
