// The training ops in the interpreter: each against hand-computed values, broadcasting (rank-0
// scalars included), and each *_grad op against a central finite difference of its forward op.
#include <cmath>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "backends/interpreter/kernels.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "runtime/runner.h"
#include "tests/common/tensors.h"

namespace vitc {
namespace {

// Parses, verifies and runs `text` with the interpreter on one device.
std::vector<Tensor> interpret(const std::string &text, const std::vector<Tensor> &inputs,
                              const std::vector<Tensor> &params = {}) {
  auto m = ir::parseModule(text, "test.ir");
  EXPECT_TRUE(m) << m.error().str();
  if (!m)
    return {};
  Diagnostics d = ir::verify(**m);
  EXPECT_TRUE(d.empty()) << d.str();
  auto exe = interp::compile(std::shared_ptr<const ir::Module>(std::move(*m)));
  EXPECT_TRUE(exe) << exe.error().str();
  auto runner = runtime::MeshRunner::create(*exe, params);
  EXPECT_TRUE(runner) << runner.error().str();
  if (!runner)
    return {};
  auto out = (*runner)->run(inputs);
  EXPECT_TRUE(out) << out.error().str();
  return out ? *out : std::vector<Tensor>{};
}

Tensor tensor(const Shape &shape, const std::vector<float> &values) {
  Tensor t = Tensor::zeros(shape);
  EXPECT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.mutableData());
  return t;
}

void expectValues(const Tensor &t, const Shape &shape, const std::vector<double> &expected,
                  double tolerance = 1e-6) {
  ASSERT_EQ(t.shape(), shape);
  ASSERT_EQ(t.numel(), static_cast<int64_t>(expected.size()));
  for (int64_t i = 0; i < t.numel(); ++i)
    EXPECT_NEAR(t.data()[i], expected[static_cast<size_t>(i)], tolerance) << "element " << i;
}

TEST(TrainingOps, SumOverEachAxisAndToRankZero) {
  auto out = interpret(R"(module @s mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3]
  %s0 = sum %x {axis = 0} : f32[3]
  %s1 = sum %x {axis = 1} : f32[2]
  %all = sum %s1 {axis = 0} : f32[]
  %m = mean %s1 {axis = 0} : f32[]
  output %s0, %s1, %all, %m
}
)",
                       {tensor({2, 3}, {1, 2, 3, 4, 5, 6})});
  ASSERT_EQ(out.size(), 4u);
  expectValues(out[0], {3}, {5, 7, 9});
  expectValues(out[1], {2}, {6, 15});
  expectValues(out[2], {}, {21});
  expectValues(out[3], {}, {10.5});
}

TEST(TrainingOps, BinaryOpsBroadcastRankZeroAndRows) {
  auto out =
      interpret(R"(module @b mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3]
  %s = input {name = "s"} : f32[]
  %r = input {name = "r"} : f32[3]
  %a = sub %x, %s : f32[2,3]
  %b = sub %s, %x : f32[2,3]
  %c = div %x, %r : f32[2,3]
  %d = div %s, %s : f32[]
  %e = maximum %x, %r : f32[2,3]
  %f = mul %s, %x : f32[2,3]
  output %a, %b, %c, %d, %e, %f
}
)",
                {tensor({2, 3}, {1, -2, 3, 4, 5, -6}), tensor({}, {2}), tensor({3}, {2, 4, -1})});
  ASSERT_EQ(out.size(), 6u);
  expectValues(out[0], {2, 3}, {-1, -4, 1, 2, 3, -8});
  expectValues(out[1], {2, 3}, {1, 4, -1, -2, -3, 8});
  expectValues(out[2], {2, 3}, {0.5, -0.5, -3, 2, 1.25, 6});
  expectValues(out[3], {}, {1});
  expectValues(out[4], {2, 3}, {2, 4, 3, 4, 5, -1});
  expectValues(out[5], {2, 3}, {2, -4, 6, 8, 10, -12});
}

TEST(TrainingOps, BroadcastOfAFeatureVectorOverBatchAndTokens) {
  Tensor x = test::normalTensor({2, 3, 5}, 1), v = test::normalTensor({5}, 2);
  auto out = interpret(R"(module @b mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3,5]
  %v = param {name = "v"} : f32[5]
  %a = sub %x, %v : f32[2,3,5]
  %m = maximum %v, %x : f32[2,3,5]
  output %a, %m
}
)",
                       {x}, {v});
  ASSERT_EQ(out.size(), 2u);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float vi = v.data()[i % 5];
    EXPECT_EQ(out[0].data()[i], x.data()[i] - vi);
    EXPECT_EQ(out[1].data()[i], std::max(vi, x.data()[i]));
  }
}

TEST(TrainingOps, SqrtAndSigmoid) {
  auto out = interpret(R"(module @u mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4]
  %r = sqrt %x : f32[4]
  %g = sigmoid %x : f32[4]
  %z = input {name = "z"} : f32[]
  %gz = sigmoid %z : f32[]
  output %r, %g, %gz
}
)",
                       {tensor({4}, {0, 1, 4, 2.25f}), tensor({}, {-100})});
  ASSERT_EQ(out.size(), 3u);
  expectValues(out[0], {4}, {0, 1, 2, 1.5});
  expectValues(
      out[1], {4},
      {0.5, 1 / (1 + std::exp(-1.0)), 1 / (1 + std::exp(-4.0)), 1 / (1 + std::exp(-2.25))});
  expectValues(out[2], {}, {1 / (1 + std::exp(100.0))}, 1e-30);
}

TEST(TrainingOps, SoftmaxCrossEntropyByHandAndWithHugeLogits) {
  // Row 0: logits (1, 2, 3), one-hot on class 2: log(e + e^2 + e^3) - 3.
  // Row 1: logits (1000, 0, -1000), label smoothing (0.8, 0.1, 0.1): the naive exp overflows.
  auto out = interpret(R"(module @ce mesh(data=1, model=1) {
  %z = input {name = "z"} : f32[2,3]
  %y = input {name = "y"} : f32[2,3]
  %l = softmax_cross_entropy %z, %y : f32[2]
  %z1 = input {name = "z1"} : f32[3]
  %y1 = input {name = "y1"} : f32[3]
  %l1 = softmax_cross_entropy %z1, %y1 : f32[]
  output %l, %l1
}
)",
                       {tensor({2, 3}, {1, 2, 3, 1000, 0, -1000}),
                        tensor({2, 3}, {0, 0, 1, 0.8f, 0.1f, 0.1f}), tensor({3}, {0, 0, 0}),
                        tensor({3}, {1, 0, 0})});
  ASSERT_EQ(out.size(), 2u);
  double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  // logsumexp of row 1 is 1000 (the others are e^-1000 smaller): 0.1 * 1000 + 0.1 * 2000.
  expectValues(out[0], {2}, {lse0 - 3, 0.1 * 1000 + 0.1 * 2000}, 1e-4);
  expectValues(out[1], {}, {std::log(3.0)});
}

TEST(TrainingOps, SigmoidCrossEntropyByHandAndWithHugeLogits) {
  // sum_c softplus(z) - y z: (log 2 - 0) + (log(1 + e^2) - 2) + (softplus(-3) - 0).
  auto out =
      interpret(R"(module @bce mesh(data=1, model=1) {
  %z = input {name = "z"} : f32[2,3]
  %y = input {name = "y"} : f32[2,3]
  %l = sigmoid_cross_entropy %z, %y : f32[2]
  output %l
}
)",
                {tensor({2, 3}, {0, 2, -3, 500, -500, 0}), tensor({2, 3}, {1, 1, 0, 1, 0, 0.5f})});
  ASSERT_EQ(out.size(), 1u);
  double row0 = std::log(2.0) + std::log1p(std::exp(2.0)) - 2 + std::log1p(std::exp(-3.0));
  // z = 500 with y = 1 and z = -500 with y = 0 cost (almost) nothing; z = 0, y = 0.5: log 2.
  expectValues(out[0], {2}, {row0, std::log(2.0)}, 1e-5);
}

// d/dx of sum(dy * f(x)) by central differences in float64 over the float32 kernel, against the
// backward kernel. The step is 1e-2 on values of order one: the truncation error is O(h^2) ~
// 1e-4 times the third derivative, and float32 rounding of f contributes ~1e-7 * |sum| / h, so
// agreement to 2e-3 of the gradient's largest magnitude is the stated tolerance.
template <typename Forward>
void expectGradientMatches(const Tensor &x, const Tensor &dy, const Tensor &gradient,
                           Forward forward) {
  constexpr double kStep = 1e-2, kTolerance = 2e-3;
  ASSERT_EQ(gradient.shape(), x.shape());
  auto objective = [&](const Tensor &at) {
    Tensor y = forward(at);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i)
      s += static_cast<double>(dy.data()[i]) * y.data()[i];
    return s;
  };
  double largest = 0;
  for (int64_t i = 0; i < gradient.numel(); ++i)
    largest = std::max(largest, std::fabs(static_cast<double>(gradient.data()[i])));
  ASSERT_GT(largest, 0.1); // the gradient is not trivially zero
  for (int64_t i = 0; i < x.numel(); ++i) {
    Tensor plus = x.clone(), minus = x.clone();
    plus.mutableData()[i] += static_cast<float>(kStep);
    minus.mutableData()[i] -= static_cast<float>(kStep);
    double numeric = (objective(plus) - objective(minus)) /
                     (static_cast<double>(plus.data()[i]) - minus.data()[i]);
    EXPECT_NEAR(gradient.data()[i], numeric, kTolerance * largest) << "element " << i;
  }
}

TEST(TrainingOps, GeluGradIsTheDerivativeOfGeluInBothForms) {
  Tensor x = test::normalTensor({3, 7}, 3, 2.0f), dy = test::normalTensor({3, 7}, 4);
  for (bool approximate : {false, true}) {
    SCOPED_TRACE(approximate ? "tanh" : "erf");
    auto out = interpret(std::string(R"(module @g mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[3,7]
  %dy = input {name = "dy"} : f32[3,7]
  %dx = gelu_grad %x, %dy)") +
                             (approximate ? " {approximate = true}" : "") +
                             R"( : f32[3,7]
  output %dx
}
)",
                         {x, dy});
    ASSERT_EQ(out.size(), 1u);
    expectGradientMatches(x, dy, out[0],
                          [&](const Tensor &at) { return interp::gelu(at, approximate); });
  }
  // At zero the derivative is exactly one half in both forms.
  Tensor zero = tensor({1}, {0}), one = tensor({1}, {1});
  EXPECT_FLOAT_EQ(interp::geluGrad(zero, one, false).data()[0], 0.5f);
  EXPECT_FLOAT_EQ(interp::geluGrad(zero, one, true).data()[0], 0.5f);
}

TEST(TrainingOps, LayerNormGradIsTheDerivativeOfLayerNormWithAndWithoutBias) {
  Tensor x = test::normalTensor({2, 3, 9}, 5, 3.0f), dy = test::normalTensor({2, 3, 9}, 6);
  Tensor scale = test::normalTensor({9}, 7), bias = test::normalTensor({9}, 8);
  const float eps = 1e-3f;
  auto out = interpret(R"(module @ln mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3,9]
  %dy = input {name = "dy"} : f32[2,3,9]
  %w = param {name = "w"} : f32[9]
  %dx = layer_norm_grad %x, %w, %dy {eps = 0.001} : f32[2,3,9]
  output %dx
}
)",
                       {x, dy}, {scale});
  ASSERT_EQ(out.size(), 1u);
  for (bool withBias : {false, true}) {
    SCOPED_TRACE(withBias ? "with bias" : "without bias");
    expectGradientMatches(x, dy, out[0], [&](const Tensor &at) {
      return interp::layerNorm(at, scale, withBias ? bias : Tensor(), eps);
    });
  }
}

TEST(TrainingOps, SoftmaxGradIsTheDerivativeOfSoftmax) {
  Tensor x = test::normalTensor({4, 11}, 9, 2.0f), dy = test::normalTensor({4, 11}, 10);
  Tensor y = interp::softmax(x);
  auto out = interpret(R"(module @sm mesh(data=1, model=1) {
  %y = input {name = "y"} : f32[4,11]
  %dy = input {name = "dy"} : f32[4,11]
  %dx = softmax_grad %y, %dy : f32[4,11]
  output %dx
}
)",
                       {y, dy});
  ASSERT_EQ(out.size(), 1u);
  expectGradientMatches(x, dy, out[0], [](const Tensor &at) { return interp::softmax(at); });
}

} // namespace
} // namespace vitc
