// autodiff's gradients on the interpreter: every gradient rule on a tiny module and whole ViTs
// against finite differences of the loss, and the PyTorch fixtures' gradients.
//
// The interpreter computes in float32, so the finite differences are central and of fourth order,
// (-L(x+2h) + 8 L(x+h) - 8 L(x-h) + L(x-2h)) / 12h with h = 1e-2: their truncation error is
// O(h^4), which lets h be large enough that the float32 rounding of the loss costs little (about
// 2e-5 absolute on these models; h = 3e-3 doubles it, h = 3e-2 lets the curvature of the class
// token's gradient in, 1e-2 relative). The error of a parameter is the largest |autodiff - finite
// difference| over the entries checked, divided by the parameter's largest |gradient|. Tensors
// whose gradient is zero in exact arithmetic (key biases and key-norm biases: softmax ignores a
// shift of one query's scores) get rounding noise from both sides; they are told by their autodiff
// gradient (below 1e-6 of the module's largest) and their error is taken on the module's scale,
// divided by its largest gradient. Tests print each error and assert the stated tolerances.
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "frontend/formats/npy.h"
#include "frontend/formats/npz.h"
#include "frontend/load_model.h"
#include "frontend/vit_builder.h"
#include "frontend/weights.h"
#include "ir/builder.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/loss.h"
#include "passes/pass_manager.h"
#include "runtime/runner.h"

namespace vitc {
namespace {

using Named = std::map<std::string, Tensor>;

// Tensors in the order of `specs`, taken by name from `values`.
std::vector<Tensor> inOrder(const std::vector<TensorSpec> &specs, const Named &values) {
  std::vector<Tensor> out;
  for (const TensorSpec &s : specs)
    out.push_back(values.at(s.name));
  return out;
}

// A module compiled for the interpreter, run with parameters and inputs given by name.
class Program {
public:
  explicit Program(const ir::Module &m)
      : executable_(interp::compile(std::shared_ptr<const ir::Module>(m.clone())).take()) {}

  const Signature &signature() const { return executable_->signature(); }

  std::vector<Tensor> run(const Named &params, const Named &inputs) const {
    auto runner = runtime::MeshRunner::create(executable_, inOrder(signature().params, params));
    EXPECT_TRUE(runner) << runner.error().str();
    if (!runner)
      return {};
    auto outs = (*runner)->run(inOrder(signature().inputs, inputs));
    EXPECT_TRUE(outs) << outs.error().str();
    return outs ? *outs : std::vector<Tensor>{};
  }

private:
  std::shared_ptr<const runtime::Executable> executable_;
};

// The step module autodiff makes of `forward`, then `after` (pass names), verified after each.
std::unique_ptr<ir::Module> differentiate(const ir::Module &forward,
                                          std::vector<std::string> after = {}) {
  std::unique_ptr<ir::Module> step = forward.clone();
  passes::PipelineOptions o;
  o.passes = {"autodiff"};
  o.passes.insert(o.passes.end(), after.begin(), after.end());
  o.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(o, sink);
  passes::PassContext ctx;
  Status s = pm.run(*step, ctx);
  EXPECT_TRUE(s) << s.error().str();
  return step;
}

// The gradient of every parameter of `forward` (by weight name) at `params`, from autodiff.
Named gradients(const ir::Module &forward, const Named &params, const Named &inputs) {
  std::unique_ptr<ir::Module> step = differentiate(forward);
  std::vector<Tensor> outs = Program(*step).run(params, inputs);
  Named grads;
  std::vector<ir::Op *> ps = step->params();
  EXPECT_EQ(outs.size(), ps.size() + 1);
  for (size_t i = 0; i < ps.size() && i + 1 < outs.size(); ++i)
    grads[ps[i]->attrs.getStr("name")] = outs[i + 1];
  return grads;
}

double maxAbs(const Tensor &t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i)
    m = std::max(m, static_cast<double>(std::abs(t.data()[i])));
  return m;
}

struct FdOptions {
  double step = 1e-2;
  int64_t entriesPerParam = 1 << 30; // every entry of smaller parameters
};

struct FdError {
  double error = 0;  // worst |autodiff - finite difference| / the scale
  bool zero = false; // the gradient is zero in exact arithmetic: the scale is the module's
};

// The finite-difference error of every parameter's gradient (see the file comment).
std::map<std::string, FdError> finiteDifferenceErrors(const ir::Module &forward,
                                                      const Named &params, const Named &inputs,
                                                      const FdOptions &o = {}) {
  Named ad = gradients(forward, params, inputs);
  double largest = 0;
  for (const auto &[name, g] : ad)
    largest = std::max(largest, maxAbs(g));
  Program loss(forward);
  std::mt19937 rng(7);
  std::map<std::string, FdError> errors;
  for (const auto &[name, value] : params) {
    if (!ad.count(name)) {
      ADD_FAILURE() << "no gradient for " << name;
      continue;
    }
    const Tensor &g = ad.at(name);
    std::vector<int64_t> entries;
    if (value.numel() <= o.entriesPerParam) {
      for (int64_t i = 0; i < value.numel(); ++i)
        entries.push_back(i);
    } else {
      std::uniform_int_distribution<int64_t> pick(0, value.numel() - 1);
      for (int64_t k = 0; k < o.entriesPerParam; ++k)
        entries.push_back(pick(rng));
    }
    double worst = 0;
    for (int64_t i : entries) {
      auto lossAt = [&](double offset) {
        Named moved = params;
        Tensor t = value.clone();
        t.mutableData()[i] = static_cast<float>(value.data()[i] + offset);
        moved[name] = t;
        std::vector<Tensor> outs = loss.run(moved, inputs);
        return outs.empty() ? NAN : static_cast<double>(outs[0].data()[0]);
      };
      double h = o.step;
      double fd = (-lossAt(2 * h) + 8 * lossAt(h) - 8 * lossAt(-h) + lossAt(-2 * h)) / (12 * h);
      worst = std::max(worst, std::abs(fd - g.data()[i]));
    }
    bool zero = maxAbs(g) < 1e-6 * largest;
    errors[name] = {worst / (zero ? largest : maxAbs(g)), zero};
  }
  return errors;
}

Tensor randomTensor(const Shape &shape, std::mt19937 &rng, bool positive) {
  Tensor t = Tensor::zeros(shape);
  std::normal_distribution<float> normal(0, 1);
  std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.mutableData()[i] = positive ? uniform(rng) : normal(rng);
  return t;
}

// One gradient rule on a tiny module: `body` defines %y from params (and inputs); the loss is
// sum(%y * %r) for a random %r of y's shape.
struct RuleCase {
  const char *name;
  const char *body;
  bool positive = false; // parameters drawn from [0.5, 1.5] (denominators, square roots)
};

std::unique_ptr<ir::Module> ruleModule(const RuleCase &c) {
  std::string text = std::string("module @rule {\n") + c.body + "\n  output %y\n}\n";
  auto m = ir::parseModule(text, c.name);
  EXPECT_TRUE(m) << m.error().str();
  if (!m)
    return nullptr;
  ir::Module &mod = **m;
  ir::Op *y = mod.output()->operand(0);
  mod.erase(mod.output());
  ir::Builder b(mod);
  ir::Op *r = b.input("r", y->shape());
  ir::Op *flat = b.reshape(b.mul(y, r), {numElements(y->shape())});
  b.output({b.sum(flat, 0, "loss")});
  return std::move(*m);
}

class Rule : public ::testing::TestWithParam<RuleCase> {};

// Every rule within 1e-3 of the parameter's largest gradient (measured: at most 2.3e-5).
TEST_P(Rule, MatchesFiniteDifferences) {
  const RuleCase &c = GetParam();
  std::unique_ptr<ir::Module> m = ruleModule(c);
  ASSERT_TRUE(m);
  std::mt19937 rng(1);
  Named params, inputs;
  for (ir::Op *p : m->params())
    params[p->attrs.getStr("name")] = randomTensor(p->shape(), rng, c.positive);
  for (ir::Op *x : m->inputs())
    inputs[x->attrs.getStr("name")] = randomTensor(x->shape(), rng, false);
  std::map<std::string, FdError> errors = finiteDifferenceErrors(*m, params, inputs);
  ASSERT_EQ(errors.size(), params.size());
  double worst = 0;
  for (const auto &[name, e] : errors) {
    EXPECT_FALSE(e.zero) << c.name << ": %" << name;
    EXPECT_LE(e.error, 1e-3) << c.name << ": %" << name;
    worst = std::max(worst, e.error);
  }
  std::printf("[ gradient check ] rule %-26s worst error %.1e\n", c.name, worst);
}

const RuleCase kRules[] = {
    {"matmul", R"(
  %a = param {name = "a"} : f32[3,4]
  %b = param {name = "b"} : f32[4,5]
  %y = matmul %a, %b : f32[3,5])"},
    {"matmul_rows_transpose_b", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %b = param {name = "b"} : f32[5,4]
  %y = matmul %a, %b {transpose_b = true} : f32[2,3,5])"},
    {"matmul_rows", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %b = param {name = "b"} : f32[4,5]
  %y = matmul %a, %b : f32[2,3,5])"},
    {"matmul_batched_transpose_b", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %b = param {name = "b"} : f32[2,5,4]
  %y = matmul %a, %b {transpose_b = true} : f32[2,3,5])"},
    {"matmul_batched", R"(
  %a = param {name = "a"} : f32[2,2,3,4]
  %b = param {name = "b"} : f32[2,2,4,5]
  %y = matmul %a, %b : f32[2,2,3,5])"},
    {"add_bias", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %b = param {name = "b"} : f32[4]
  %y = add %a, %b : f32[2,3,4])"},
    {"add_both_broadcast", R"(
  %a = param {name = "a"} : f32[2,1,4]
  %b = param {name = "b"} : f32[3,1]
  %y = add %a, %b : f32[2,3,4])"},
    {"sub_both_broadcast", R"(
  %a = param {name = "a"} : f32[1,3,4]
  %b = param {name = "b"} : f32[2,1,1]
  %y = sub %a, %b : f32[2,3,4])"},
    {"mul_broadcast", R"(
  %a = param {name = "a"} : f32[2,1,4]
  %b = param {name = "b"} : f32[3,4]
  %y = mul %a, %b : f32[2,3,4])"},
    {"mul_by_itself", R"(
  %a = param {name = "a"} : f32[2,3]
  %y = mul %a, %a : f32[2,3])"},
    {"div_broadcast", R"(
  %a = param {name = "a"} : f32[2,3]
  %b = param {name = "b"} : f32[3]
  %y = div %a, %b : f32[2,3])",
     true},
    {"div_by_scalar", R"(
  %a = param {name = "a"} : f32[2,3]
  %b = param {name = "b"} : f32[]
  %y = div %a, %b : f32[2,3])",
     true},
    {"scale", R"(
  %a = param {name = "a"} : f32[2,3]
  %y = scale %a {factor = -0.75} : f32[2,3])"},
    {"sqrt", R"(
  %a = param {name = "a"} : f32[2,3]
  %y = sqrt %a : f32[2,3])",
     true},
    {"sigmoid", R"(
  %a = param {name = "a"} : f32[2,3]
  %y = sigmoid %a : f32[2,3])"},
    {"gelu_erf", R"(
  %a = param {name = "a"} : f32[2,5]
  %y = gelu %a : f32[2,5])"},
    {"gelu_tanh", R"(
  %a = param {name = "a"} : f32[2,5]
  %y = gelu %a {approximate = true} : f32[2,5])"},
    {"layer_norm_bias", R"(
  %x = param {name = "x"} : f32[2,3,6]
  %s = param {name = "s"} : f32[6]
  %b = param {name = "b"} : f32[6]
  %y = layer_norm %x, %s, %b {eps = 1e-06} : f32[2,3,6])"},
    {"layer_norm_heads_no_bias", R"(
  %x = param {name = "x"} : f32[2,2,3,4]
  %s = param {name = "s"} : f32[4]
  %y = layer_norm %x, %s {eps = 1e-06} : f32[2,2,3,4])"},
    {"softmax", R"(
  %a = param {name = "a"} : f32[2,3,5]
  %y = softmax %a : f32[2,3,5])"},
    {"mean_tokens", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %y = mean %a {axis = 1} : f32[2,4])"},
    {"sum_first", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %y = sum %a {axis = 0} : f32[3,4])"},
    {"sum_to_scalar", R"(
  %a = param {name = "a"} : f32[5]
  %y = sum %a {axis = 0} : f32[])"},
    {"reshape", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %y = reshape %a : f32[6,2,2])"},
    {"transpose", R"(
  %a = param {name = "a"} : f32[2,3,4]
  %y = transpose %a {perm = [2, 0, 1]} : f32[4,2,3])"},
    {"broadcast", R"(
  %a = param {name = "a"} : f32[1,1,4]
  %y = broadcast %a : f32[2,3,4])"},
    {"broadcast_inner", R"(
  %a = param {name = "a"} : f32[3,1]
  %y = broadcast %a : f32[2,3,4])"},
    {"concat", R"(
  %a = param {name = "a"} : f32[2,1,4]
  %b = param {name = "b"} : f32[2,3,4]
  %y = concat %a, %b {axis = 1} : f32[2,4,4])"},
    {"slice_middle", R"(
  %a = param {name = "a"} : f32[2,5,3]
  %y = slice %a {axis = 1, start = 1, size = 2} : f32[2,2,3])"},
    {"slice_first", R"(
  %a = param {name = "a"} : f32[2,5,3]
  %y = slice %a {axis = 1, start = 0, size = 1} : f32[2,1,3])"},
    {"softmax_cross_entropy", R"(
  %labels = input {name = "labels"} : f32[3,5]
  %z = param {name = "z"} : f32[3,5]
  %y = softmax_cross_entropy %z, %labels : f32[3])"},
    {"sigmoid_cross_entropy", R"(
  %labels = input {name = "labels"} : f32[3,5]
  %z = param {name = "z"} : f32[3,5]
  %y = sigmoid_cross_entropy %z, %labels : f32[3])"},
};

INSTANTIATE_TEST_SUITE_P(Autodiff, Rule, ::testing::ValuesIn(kRules),
                         [](const auto &info) { return std::string(info.param.name); });

// A small ViT of each kind the builder makes, batch 2, random weights, with a loss appended.
struct ModelCase {
  const char *name;
  frontend::ModelConfig config;
  passes::LossKind loss = passes::LossKind::SoftmaxCrossEntropy;
};

frontend::ModelConfig tinyVit() {
  frontend::ModelConfig c;
  c.image = 8;
  c.patch = 4;
  c.channels = 2;
  c.width = 8;
  c.depth = 2;
  c.mlp = 16;
  c.heads = 2;
  c.classes = 5;
  return c;
}

std::vector<ModelCase> modelCases() {
  using frontend::BlockKind, frontend::PoolKind, frontend::GeluKind;
  std::vector<ModelCase> cases;
  frontend::ModelConfig c = tinyVit();
  cases.push_back({"sequential_token_all_biases", c});
  c = tinyVit();
  c.block = BlockKind::Parallel;
  c.qkNorm = true;
  c.biasQkv = false;
  c.biasNorm = false;
  c.pool = PoolKind::Map;
  cases.push_back({"parallel_qknorm_map", c});
  c = tinyVit();
  c.pool = PoolKind::Gap;
  cases.push_back({"sequential_gap", c});
  cases.push_back({"sequential_gap_sigmoid_loss", c, passes::LossKind::SigmoidCrossEntropy});
  c = tinyVit();
  c.gelu = GeluKind::Tanh;
  c.qkNorm = true;
  cases.push_back({"sequential_token_tanh_qknorm", c});
  return cases;
}

class WholeModel : public ::testing::TestWithParam<ModelCase> {};

// Three entries of every parameter within 2e-3 of its largest gradient (measured: at most 6.1e-4,
// the class token's: curvature), and gradients that are zero in exact arithmetic within 1e-4 of
// the module's largest (measured: 1.5e-5).
TEST_P(WholeModel, MatchesFiniteDifferences) {
  const ModelCase &c = GetParam();
  const int64_t batch = 2;
  std::unique_ptr<ir::Module> m = frontend::buildVit(c.config, batch);
  auto source = frontend::openWeights("random:5", m.get());
  ASSERT_TRUE(source) << source.error().str();
  passes::appendLoss(*m, c.loss);
  Program forward(*m);
  auto bound = frontend::bindWeights(forward.signature(), **source);
  ASSERT_TRUE(bound) << bound.error().str();
  Named params, inputs;
  for (size_t i = 0; i < bound->size(); ++i)
    params[forward.signature().params[i].name] = (*bound)[i];
  std::mt19937 rng(3);
  inputs["pixels"] =
      randomTensor({batch, c.config.channels, c.config.image, c.config.image}, rng, false);
  Tensor labels = Tensor::zeros({batch, c.config.classes});
  std::uniform_int_distribution<int64_t> cls(0, c.config.classes - 1);
  for (int64_t i = 0; i < batch; ++i) {
    labels.mutableData()[i * c.config.classes + cls(rng)] = 1;
    if (c.loss == passes::LossKind::SigmoidCrossEntropy)
      labels.mutableData()[i * c.config.classes + cls(rng)] = 1; // multi-label
  }
  inputs["labels"] = labels;
  FdOptions o;
  o.entriesPerParam = 3;
  std::map<std::string, FdError> errors = finiteDifferenceErrors(*m, params, inputs, o);
  ASSERT_EQ(errors.size(), params.size());
  std::string worstName, zeros;
  double worst = 0, worstZero = 0;
  for (const auto &[name, e] : errors) {
    EXPECT_LE(e.error, e.zero ? 1e-4 : 2e-3) << c.name << ": " << name;
    if (e.zero) {
      zeros += (zeros.empty() ? "" : ", ") + name;
      worstZero = std::max(worstZero, e.error);
    } else if (e.error >= worst) {
      worst = e.error;
      worstName = name;
    }
  }
  std::printf("[ gradient check ] model %-30s %zu params, worst error %.1e (%s); zero gradients "
              "(%s) within %.1e of the largest\n",
              c.name, errors.size(), worst, worstName.c_str(), zeros.c_str(), worstZero);
}

INSTANTIATE_TEST_SUITE_P(Autodiff, WholeModel, ::testing::ValuesIn(modelCases()),
                         [](const auto &info) { return std::string(info.param.name); });

// The PyTorch fixtures with training results (tests/fixtures/README.md, "Training fixtures"): at
// their initial weights, on their batch of two images and labels, the gradient of the mean softmax
// cross-entropy from autograd (grads.safetensors) and its loss (train_loss.npy, first entry).
// Also after the fusions of the forward pipeline: fuse-parallel-linear merges parallel_map's
// backward matmuls too.
struct FixtureCase {
  const char *fixture;
  bool fused;
};

class PyTorchGradients : public ::testing::TestWithParam<FixtureCase> {};

// Every gradient within 1e-4 of its tensor's largest entry (measured: at most 1.4e-6); the key
// biases, whose exact gradient is zero and whose float32 gradients are rounding noise on both
// sides, within 1e-4 of the model's largest gradient (measured: 3.5e-8). The loss within 1e-5.
TEST_P(PyTorchGradients, MatchAutogradWithin1e4OfEachTensorsLargest) {
  namespace fs = std::filesystem;
  const FixtureCase &c = GetParam();
  fs::path dir = fs::path(VITC_TEST_DATA) / "fixtures" / c.fixture;
  auto data = formats::NpzFile::open((dir / "train.npz").string());
  ASSERT_TRUE(data) << data.error().str();
  auto images = data->load("images");
  auto classes = data->load("labels");
  auto losses = formats::readNpy((dir / "train_loss.npy").string());
  ASSERT_TRUE(images && classes && losses);
  bool spec = fs::exists(dir / "model.vit");
  auto loaded = frontend::loadModel((spec ? dir / "model.vit" : dir).string(), {images->dim(0)});
  ASSERT_TRUE(loaded) << loaded.error().str();
  ir::Module &m = *loaded->module;
  passes::appendLoss(m, passes::LossKind::SoftmaxCrossEntropy);
  std::unique_ptr<ir::Module> step =
      c.fused ? differentiate(m, {"canonicalize", "fuse-parallel-linear", "canonicalize"})
              : differentiate(m);
  Program program(*step);
  const Signature &sig = program.signature();
  auto weights = frontend::openWeights((dir / "model.safetensors").string());
  auto reference = frontend::openWeights((dir / "grads.safetensors").string());
  ASSERT_TRUE(weights && reference);
  auto bound = frontend::bindWeights(sig, **weights);
  auto expected = frontend::bindWeights(sig, **reference);
  ASSERT_TRUE(bound) << bound.error().str();
  ASSERT_TRUE(expected) << expected.error().str();
  Named params, inputs;
  for (size_t i = 0; i < sig.params.size(); ++i)
    params[sig.params[i].name] = (*bound)[i];
  int64_t batch = images->dim(0), numClasses = m.findByName("labels")->shape()[1];
  Tensor labels = Tensor::zeros({batch, numClasses});
  for (int64_t i = 0; i < batch; ++i)
    labels.mutableData()[i * numClasses + static_cast<int64_t>(classes->data()[i])] = 1;
  inputs["pixels"] = *images;
  inputs["labels"] = labels;
  std::vector<Tensor> outs = program.run(params, inputs);
  ASSERT_EQ(outs.size(), sig.params.size() + 1);
  EXPECT_NEAR(outs[0].data()[0], losses->data()[0], 1e-5) << "the loss";
  double largest = 0;
  for (const Tensor &g : *expected)
    largest = std::max(largest, maxAbs(g));
  double worst = 0, worstZero = 0;
  std::string worstName;
  for (size_t i = 0; i < sig.params.size(); ++i) {
    const Tensor &ours = outs[i + 1], &theirs = (*expected)[i];
    ASSERT_EQ(ours.shape(), theirs.shape()) << sig.params[i].name;
    double diff = 0;
    for (int64_t k = 0; k < ours.numel(); ++k)
      diff = std::max(diff, static_cast<double>(std::abs(ours.data()[k] - theirs.data()[k])));
    bool zero = maxAbs(theirs) < 1e-6 * largest;
    double error = diff / (zero ? largest : maxAbs(theirs));
    EXPECT_LE(error, 1e-4) << sig.params[i].name << (zero ? " (a zero gradient)" : "");
    if (zero) {
      worstZero = std::max(worstZero, error);
    } else if (error >= worst) {
      worst = error;
      worstName = sig.params[i].name;
    }
  }
  std::printf("[ gradient check ] fixture %-12s%s loss %.6f (PyTorch %.6f), %zu gradients, "
              "worst error %.1e (%s); zero gradients within %.1e of the largest\n",
              c.fixture, c.fused ? " fused" : "", outs[0].data()[0], losses->data()[0],
              sig.params.size(), worst, worstName.c_str(), worstZero);
}

INSTANTIATE_TEST_SUITE_P(Autodiff, PyTorchGradients,
                         ::testing::Values(FixtureCase{"tv_tok", false},
                                           FixtureCase{"parallel_map", false},
                                           FixtureCase{"parallel_map", true}),
                         [](const auto &info) {
                           return std::string(info.param.fixture) +
                                  (info.param.fused ? "_fused" : "");
                         });

} // namespace
} // namespace vitc
