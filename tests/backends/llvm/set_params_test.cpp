// setParams, as a training loop uses it: a program run, given other weights, and run again
// computes what a fresh program with those weights computes, in both backends and on a mesh; and
// a training step's params updated by MeshRunner::step.
#include <limits>

#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

// Weight-only work a program does once per binding: a concatenation and a scaling of
// parameters, and a weight matrix packed (llvm) or transposed (interpreter) for the matmul.
const char *kWeightOnlyWork = R"(module @w mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[3,8]
  %wa = param {name = "wa"} : f32[5,8]
  %wb = param {name = "wb"} : f32[6,8]
  %w = concat %wa, %wb {axis = 0} : f32[11,8]
  %h = matmul %x, %w {transpose_b = true} : f32[3,11]
  %b = param {name = "b"} : f32[11]
  %b2 = scale %b {factor = 2.0} : f32[11]
  %y = add %h, %b2 : f32[3,11]
  output %y
}
)";

// Megatron's MLP on two devices: each holds half of both weights.
const char *kTwoDeviceMlp = R"(module @mlp mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[4,8]
  %w1 = param {name = "w1"} : f32[16@model,8]
  %h = matmul %x, %w1 {transpose_b = true} : f32[4,16@model]
  %g = gelu %h {approximate = true} : f32[4,16@model]
  %w2 = param {name = "w2"} : f32[8,16@model]
  %y = matmul %g, %w2 {transpose_b = true} : f32[4,8] partial(model)
  %r = all_reduce %y {mesh_axis = "model"} : f32[4,8]
  output %r
}
)";

std::vector<Tensor> randomParams(const ir::Module &m, uint32_t seed) {
  std::vector<Tensor> params;
  for (const ir::Op *p : m.params())
    params.push_back(test::normalTensor(p->shape(), seed++));
  return params;
}

bool identical(const std::vector<Tensor> &a, const std::vector<Tensor> &b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() ||
        !std::equal(a[i].data(), a[i].data() + a[i].numel(), b[i].data()))
      return false;
  return true;
}

struct Backend {
  const char *name;
  std::function<Expected<std::shared_ptr<const runtime::Executable>>(
      std::shared_ptr<const ir::Module>)>
      compile;
};

std::vector<Backend> backends() {
  return {{"interpreter", [](std::shared_ptr<const ir::Module> m) { return interp::compile(m); }},
          {"llvm", [](std::shared_ptr<const ir::Module> m) {
             return llvmbe::compile(*m, test::verifiedOptions());
           }}};
}

void expectSetParamsMatchesAFreshProgram(const std::string &text) {
  auto m = test::parseAndPlan(text);
  ASSERT_TRUE(m) << m.error().str();
  std::vector<Tensor> before = randomParams(**m, 1), after = randomParams(**m, 100);
  std::vector<Tensor> inputs;
  for (const ir::Op *in : (*m)->inputs())
    inputs.push_back(test::normalTensor(in->shape(), 50));
  for (const Backend &backend : backends()) {
    SCOPED_TRACE(backend.name);
    auto exe = backend.compile(*m);
    ASSERT_TRUE(exe) << exe.error().str();
    auto runner = runtime::MeshRunner::create(*exe, before);
    ASSERT_TRUE(runner) << runner.error().str();
    auto first = (*runner)->run(inputs);
    ASSERT_TRUE(first) << first.error().str();
    Status set = (*runner)->setParams(after);
    ASSERT_TRUE(set) << set.error().str();
    auto second = (*runner)->run(inputs);
    ASSERT_TRUE(second) << second.error().str();
    auto fresh = runtime::MeshRunner::create(*exe, after);
    ASSERT_TRUE(fresh) << fresh.error().str();
    auto expected = (*fresh)->run(inputs);
    ASSERT_TRUE(expected) << expected.error().str();
    EXPECT_TRUE(identical(*second, *expected));
    EXPECT_FALSE(identical(*first, *second)); // the weights did change what it computes
    // And back: the first weights give the first results again.
    ASSERT_TRUE((*runner)->setParams(before));
    auto third = (*runner)->run(inputs);
    ASSERT_TRUE(third) << third.error().str();
    EXPECT_TRUE(identical(*first, *third));
  }
}

TEST(SetParams, RecomputesWeightOnlyWorkAsAFreshProgramWould) {
  expectSetParamsMatchesAFreshProgram(kWeightOnlyWork);
}

TEST(SetParams, OnATwoDeviceMeshEachDeviceGetsItsBlocks) {
  expectSetParamsMatchesAFreshProgram(kTwoDeviceMlp);
}

TEST(SetParams, RefusesParametersOfTheWrongCountOrShape) {
  auto m = test::parseAndPlan(kWeightOnlyWork);
  ASSERT_TRUE(m) << m.error().str();
  std::vector<Tensor> params = randomParams(**m, 1);
  for (const Backend &backend : backends()) {
    SCOPED_TRACE(backend.name);
    auto exe = backend.compile(*m);
    ASSERT_TRUE(exe) << exe.error().str();
    auto runner = runtime::MeshRunner::create(*exe, params);
    ASSERT_TRUE(runner) << runner.error().str();
    std::vector<Tensor> fewer(params.begin(), params.end() - 1);
    Status s = (*runner)->setParams(fewer);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().str().find("2 parameter tensors for a program that takes 3"),
              std::string::npos)
        << s.error().str();
    std::vector<Tensor> wrong = params;
    wrong[0] = Tensor::zeros({8, 5});
    s = (*runner)->setParams(wrong);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().str().find("parameter 'wa' has shape [8, 5]"), std::string::npos)
        << s.error().str();
    // The program itself checks too (a runner's check is not the only one).
    auto program = (*exe)->instantiate(0, params);
    ASSERT_TRUE(program) << program.error().str();
    s = (*program)->setParams(fewer);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().str().find("2 parameter tensors for 3 parameters"), std::string::npos)
        << s.error().str();
  }
}

// A training step's shape: the loss, then each param's next value (here w - lr * w). The matmul
// reads w as packed panels and the update reads w itself, so the llvm program keeps both.
const char *kStep = R"(module @s mesh(data=1, model=1) attributes {param_updates = 1} {
  %lr = input {name = "lr"} : f32[]
  %x = input {name = "x"} : f32[3,8]
  %w = param {name = "w"} : f32[5,8]
  %h = matmul %x, %w {transpose_b = true} : f32[3,5]
  %r = sum %h {axis = 1} : f32[3]
  %loss = sum %r {axis = 0} : f32[]
  %u = mul %w, %lr : f32[5,8]
  %next = sub %w, %u : f32[5,8]
  output %loss, %next
}
)";

// MeshRunner::step: the next values become the params (written over the old ones where nothing
// else holds them: the llvm program keeps one buffer per param from step to step), the loss is
// the old params', and a non-finite step changes nothing.
TEST(Step, UpdatesTheParamsInPlaceAndAsAFreshProgramWould) {
  auto m = test::parseAndPlan(kStep);
  ASSERT_TRUE(m) << m.error().str();
  Tensor w = test::normalTensor({5, 8}, 1), x = test::normalTensor({3, 8}, 2);
  Tensor lr = Tensor::zeros({}), bad = Tensor::zeros({});
  lr.mutableData()[0] = 0.25f;
  bad.mutableData()[0] = std::numeric_limits<float>::quiet_NaN();
  for (const Backend &backend : backends()) {
    SCOPED_TRACE(backend.name);
    auto exe = backend.compile(*m);
    ASSERT_TRUE(exe) << exe.error().str();
    auto runner = runtime::MeshRunner::create(*exe, {w.clone()});
    ASSERT_TRUE(runner) << runner.error().str();
    std::vector<const float *> where;
    std::vector<Tensor> losses;
    for (int step = 0; step < 3; ++step) {
      auto out = (*runner)->step({lr, x}, 1);
      ASSERT_TRUE(out) << out.error().str();
      EXPECT_FALSE(out->nonFinite);
      losses.push_back(out->outputs[0]);
      auto params = (*runner)->params();
      ASSERT_TRUE(params) << params.error().str();
      where.push_back((*params)[0].data()); // the tensor goes: the program may write over it
    }
    // w * (1 - lr)^3, and each loss the one of the params before its step.
    auto params = (*runner)->params();
    ASSERT_TRUE(params) << params.error().str();
    for (int64_t i = 0; i < w.numel(); ++i)
      EXPECT_FLOAT_EQ((*params)[0].data()[i], w.data()[i] * 0.75f * 0.75f * 0.75f) << i;
    Tensor scaled = w.clone();
    for (int64_t i = 0; i < w.numel(); ++i)
      scaled.mutableData()[i] *= 0.75f * 0.75f;
    auto fresh = runtime::MeshRunner::create(*exe, {scaled});
    ASSERT_TRUE(fresh) << fresh.error().str();
    auto third = (*fresh)->step({lr, x}, 1);
    ASSERT_TRUE(third) << third.error().str();
    EXPECT_FLOAT_EQ(losses[2].data()[0], third->outputs[0].data()[0]);
    if (std::string(backend.name) == "llvm") {
      EXPECT_EQ(where[1], where[0]) << "the second update was not written in place";
      EXPECT_EQ(where[2], where[0]) << "the third update was not written in place";
    }
    // NaN learning rate: the loss is fine, the update is not, and nothing changes.
    Tensor before = (*params)[0].clone();
    params->clear();
    auto nan = (*runner)->step({bad, x}, 1);
    ASSERT_TRUE(nan) << nan.error().str();
    ASSERT_TRUE(nan->nonFinite);
    EXPECT_EQ(*nan->nonFinite, 1u);
    auto after = (*runner)->params();
    ASSERT_TRUE(after) << after.error().str();
    EXPECT_TRUE(identical({before}, *after));
  }
}

} // namespace
} // namespace vitc
