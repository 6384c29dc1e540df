// The kernels of the training ops against the interpreter, on ragged shapes (not multiples of 16),
// with broadcasting and rank-0 operands, on one thread and on two.
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

class TrainingKernels : public ::testing::TestWithParam<int> {
protected:
  llvmbe::Options options() const {
    llvmbe::Options o = test::verifiedOptions();
    o.threads = GetParam();
    return o;
  }
  // Compares with the interpreter, values of standard deviation `sd`.
  void expectMatches(const std::string &text, float sd = 1.0f) {
    auto m = test::parseAndPlan(text);
    ASSERT_TRUE(m) << m.error().str();
    auto c = test::compareModule(*m, options(), sd);
    ASSERT_TRUE(c) << c.error().str();
    EXPECT_LE(c->maxRelDiff, 1e-5) << text;
    if (std::getenv("VITC_TEST_VERBOSE"))
      std::printf("max diff %g (relative %g)\n", c->maxDiff, c->maxRelDiff);
  }
};

TEST_P(TrainingKernels, BinaryOpsBroadcastRankZeroAndFeatureVectors) {
  expectMatches(R"(module @binary mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[3,7,33]
  %y = input {name = "y"} : f32[3,7,33]
  %v = param {name = "v"} : f32[33]
  %s = input {name = "s"} : f32[]
  %a = sub %x, %v : f32[3,7,33]
  %b = sub %s, %x : f32[3,7,33]
  %m = maximum %x, %y : f32[3,7,33]
  %mv = maximum %v, %x : f32[3,7,33]
  %ms = mul %x, %s : f32[3,7,33]
  %ss = sub %s, %s : f32[]
  %col = input {name = "col"} : f32[7,1]
  %c = sub %col, %v : f32[7,33]
  output %a, %b, %m, %mv, %ms, %ss, %c
}
)");
}

TEST_P(TrainingKernels, DivisionAndSquareRoot) {
  // Denominators and radicands away from zero: |x| + 1 by sqrt(x^2 + 1).
  expectMatches(R"(module @div mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[5,37]
  %one = fill {value = 1.0} : f32[]
  %sq = mul %x, %x : f32[5,37]
  %r = add %sq, %one : f32[5,37]
  %root = sqrt %r : f32[5,37]
  %q = div %x, %root : f32[5,37]
  %n = input {name = "n"} : f32[]
  %n2 = mul %n, %n : f32[]
  %n3 = add %n2, %one : f32[]
  %qs = div %x, %n3 : f32[5,37]
  %rs = sqrt %n3 : f32[]
  output %root, %q, %qs, %rs
}
)");
}

TEST_P(TrainingKernels, SigmoidAndGeluGradInBothForms) {
  std::string text = R"(module @unary mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[13,100]
  %dy = input {name = "dy"} : f32[13,100]
  %s = sigmoid %x : f32[13,100]
  %g = gelu_grad %x, %dy : f32[13,100]
  %t = gelu_grad %x, %dy {approximate = true} : f32[13,100]
  %z = input {name = "z"} : f32[]
  %sz = sigmoid %z : f32[]
  output %s, %g, %t, %sz
}
)";
  expectMatches(text);
  expectMatches(text, 4.0f); // the tails
}

// Sums over a middle dimension run in blocks of 128 columns (with AVX-512) and a ragged last
// block: 259 and 601 columns have both; [251, 601] (600 KB) splits over threads.
TEST_P(TrainingKernels, SumAndMeanOverEveryAxisDownToRankZero) {
  expectMatches(R"(module @sum mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[3,7,37]
  %s0 = sum %x {axis = 0} : f32[7,37]
  %s1 = sum %x {axis = 1} : f32[3,37]
  %s2 = sum %x {axis = 2} : f32[3,7]
  %v = input {name = "v"} : f32[101]
  %all = sum %v {axis = 0} : f32[]
  %avg = mean %v {axis = 0} : f32[]
  %rows = input {name = "rows"} : f32[203,19]
  %bias = sum %rows {axis = 0} : f32[19]
  %wide = input {name = "wide"} : f32[251,601]
  %wideBias = sum %wide {axis = 0} : f32[601]
  %wideMean = mean %wide {axis = 0} : f32[601]
  output %s0, %s1, %s2, %all, %avg, %bias, %wideBias, %wideMean
}
)");
}

// The [251, 301] operands are large enough (about 300 KB each) that the calls split over threads.
TEST_P(TrainingKernels, LayerNormGradAndSoftmaxGrad) {
  expectMatches(R"(module @grads mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,7,33]
  %dy = input {name = "dy"} : f32[2,7,33]
  %w = param {name = "w"} : f32[33]
  %dx = layer_norm_grad %x, %w, %dy {eps = 1e-06} : f32[2,7,33]
  %r = input {name = "r"} : f32[3,100]
  %dr = input {name = "dr"} : f32[3,100]
  %rw = param {name = "rw"} : f32[100]
  %drx = layer_norm_grad %r, %rw, %dr {eps = 0.001} : f32[3,100]
  %q = input {name = "q"} : f32[5]
  %dq = input {name = "dq"} : f32[5]
  %qw = param {name = "qw"} : f32[5]
  %dqx = layer_norm_grad %q, %qw, %dq {eps = 1e-06} : f32[5]
  %p = softmax %x : f32[2,7,33]
  %dp = softmax_grad %p, %dy : f32[2,7,33]
  %pr = softmax %r : f32[3,100]
  %dpr = softmax_grad %pr, %dr : f32[3,100]
  %big = input {name = "big"} : f32[251,301]
  %dbig = input {name = "dbig"} : f32[251,301]
  %bw = param {name = "bw"} : f32[301]
  %dbigx = layer_norm_grad %big, %bw, %dbig {eps = 1e-06} : f32[251,301]
  %gbig = gelu_grad %big, %dbig : f32[251,301]
  output %dx, %drx, %dqx, %dp, %dpr, %dbigx, %gbig
}
)");
}

TEST_P(TrainingKernels, CrossEntropyLosses) {
  std::string text = R"(module @losses mesh(data=1, model=1) {
  %z = input {name = "z"} : f32[7,37]
  %y = input {name = "y"} : f32[7,37]
  %ce = softmax_cross_entropy %z, %y : f32[7]
  %bce = sigmoid_cross_entropy %z, %y : f32[7]
  %z3 = input {name = "z3"} : f32[2,3,10]
  %y3 = input {name = "y3"} : f32[2,3,10]
  %ce3 = softmax_cross_entropy %z3, %y3 : f32[2,3]
  %z1 = input {name = "z1"} : f32[5]
  %y1 = input {name = "y1"} : f32[5]
  %ce1 = softmax_cross_entropy %z1, %y1 : f32[]
  %bce1 = sigmoid_cross_entropy %z1, %y1 : f32[]
  output %ce, %bce, %ce3, %ce1, %bce1
}
)";
  expectMatches(text);
  expectMatches(text, 30.0f); // logits far beyond where a naive exp overflows
}

INSTANTIATE_TEST_SUITE_P(Threads, TrainingKernels, ::testing::Values(1, 2),
                         [](const auto &info) { return std::to_string(info.param) + "threads"; });

} // namespace
} // namespace vitc
