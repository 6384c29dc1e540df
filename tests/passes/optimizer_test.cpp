// The optimizer pass: its updates, run by the interpreter, against the optimizers' formulas
// written out here in double precision (PyTorch's AdamW; Adafactor as passes/optimizer.h states).
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "ir/builder.h"
#include "ir/verifier.h"
#include "passes/optimizer.h"
#include "runtime/runner.h"
#include "tests/common/executables.h"
#include "train/schedule.h"

namespace vitc::passes {
namespace {

using Kind = OptimizerOptions::Kind;
using Values = std::vector<std::vector<double>>;

// A module in autodiff's output form whose "gradients" are inputs, so that a test chooses them:
// params w0 [3, 4] and w1 [5], inputs g0 and g1 of the same shapes, the loss a constant.
std::unique_ptr<ir::Module> gradientsAsInputs() {
  auto m = std::make_unique<ir::Module>();
  m->name = "opt";
  ir::Builder b(*m);
  ir::Op *w0 = b.param("w0", {3, 4}, false);
  ir::Op *w1 = b.param("w1", {5}, false);
  ir::Op *g0 = b.input("g0", {3, 4});
  ir::Op *g1 = b.input("g1", {5});
  (void)w0;
  (void)w1;
  b.output({b.fill({}, 0.5, "loss"), g0, g1});
  return m;
}

Tensor tensorOf(const Shape &shape, const std::vector<double> &v) {
  Tensor t = Tensor::zeros(shape);
  for (size_t i = 0; i < v.size(); ++i)
    t.mutableData()[i] = static_cast<float>(v[i]);
  return t;
}

std::vector<double> random(size_t n, std::mt19937_64 &rng, double scale) {
  std::vector<double> v(n);
  for (double &x : v)
    x = scale * (static_cast<double>(rng() % 2001) / 1000.0 - 1.0);
  return v;
}

// Runs `steps` steps of `o` through the pass and the interpreter; returns the weights.
Values runPass(const OptimizerOptions &o, const Values &w0, const std::vector<Values> &grads,
               double lr) {
  std::unique_ptr<ir::Module> m = gradientsAsInputs();
  PassContext ctx;
  ctx.options.optimizer = o;
  Expected<bool> changed = createOptimizer()->run(*m, ctx);
  EXPECT_TRUE(changed) << changed.error().str();
  EXPECT_TRUE(ir::verify(*m).empty()) << ir::verify(*m).str();
  std::shared_ptr<const ir::Module> module = std::move(m);
  auto exe = test::interpret(module);
  const Signature &sig = exe->signature();
  std::vector<Tensor> params;
  for (const TensorSpec &p : sig.params)
    params.push_back(p.name == "w0"   ? tensorOf(p.shape, w0[0])
                     : p.name == "w1" ? tensorOf(p.shape, w0[1])
                                      : Tensor::zeros(p.shape));
  auto runner = runtime::MeshRunner::create(exe, params).take();
  for (size_t t = 0; t < grads.size(); ++t) {
    std::vector<Tensor> inputs;
    auto scalars = train::optimizerScalars(o, lr, static_cast<int64_t>(t));
    for (const TensorSpec &in : sig.inputs) {
      if (in.name == "g0" || in.name == "g1") {
        inputs.push_back(tensorOf(in.shape, grads[t][in.name == "g0" ? 0 : 1]));
        continue;
      }
      auto it = std::find_if(scalars.begin(), scalars.end(),
                             [&](const auto &s) { return s.first == in.name; });
      EXPECT_NE(it, scalars.end()) << in.name;
      inputs.push_back(tensorOf({}, {it == scalars.end() ? 0.0 : it->second}));
    }
    Expected<std::vector<Tensor>> out = runner->run(inputs);
    EXPECT_TRUE(out) << out.error().str();
    params.assign(out->begin() + 1, out->end());
    EXPECT_TRUE(runner->setParams(params));
  }
  Values w(2);
  for (size_t i = 0; i < sig.params.size(); ++i)
    if (sig.params[i].name == "w0" || sig.params[i].name == "w1")
      w[sig.params[i].name == "w0" ? 0 : 1].assign(params[i].data(),
                                                   params[i].data() + params[i].numel());
  return w;
}

// The reference updates, in double precision.
Values reference(const OptimizerOptions &o, Values w, const std::vector<Values> &grads, double lr) {
  const std::vector<Shape> shapes{{3, 4}, {5}};
  Values m(2), v(2), row(2), col(2), mom(2);
  for (size_t i = 0; i < 2; ++i) {
    m[i].assign(w[i].size(), 0);
    v[i].assign(w[i].size(), 0);
    mom[i].assign(w[i].size(), 0);
    row[i].assign(3, 0);
    col[i].assign(4, 0);
  }
  for (size_t t = 0; t < grads.size(); ++t) {
    Values g = grads[t];
    if (o.clip > 0) {
      double norm = 0;
      for (const auto &gi : g)
        for (double x : gi)
          norm += x * x;
      norm = std::sqrt(norm);
      double factor = o.clip / std::max(norm, o.clip);
      for (auto &gi : g)
        for (double &x : gi)
          x *= factor;
    }
    double step = static_cast<double>(t + 1);
    for (size_t i = 0; i < 2; ++i) {
      size_t n = w[i].size();
      std::vector<double> u(n);
      if (o.kind == Kind::Sgd) {
        for (size_t j = 0; j < n; ++j)
          u[j] = g[i][j];
      } else if (o.kind == Kind::AdamW) {
        for (size_t j = 0; j < n; ++j) {
          m[i][j] = o.beta1 * m[i][j] + (1 - o.beta1) * g[i][j];
          v[i][j] = o.beta2 * v[i][j] + (1 - o.beta2) * g[i][j] * g[i][j];
          double mh = m[i][j] / (1 - std::pow(o.beta1, step));
          double denom = std::sqrt(v[i][j]) / std::sqrt(1 - std::pow(o.beta2, step)) + o.eps;
          u[j] = mh / denom;
        }
      } else {
        double beta2 = 1 - std::pow(step, -0.8);
        if (i == 0) { // [3, 4]: factored
          std::vector<double> r(3, 0), c(4, 0);
          for (size_t a = 0; a < 3; ++a)
            for (size_t b = 0; b < 4; ++b) {
              double g2 = g[i][a * 4 + b] * g[i][a * 4 + b] + o.adafactorEps;
              r[a] += g2 / 4;
              c[b] += g2 / 3;
            }
          double rowMean = 0;
          for (size_t a = 0; a < 3; ++a) {
            row[i][a] = beta2 * row[i][a] + (1 - beta2) * r[a];
            rowMean += row[i][a] / 3;
          }
          for (size_t b = 0; b < 4; ++b)
            col[i][b] = beta2 * col[i][b] + (1 - beta2) * c[b];
          for (size_t a = 0; a < 3; ++a)
            for (size_t b = 0; b < 4; ++b)
              u[a * 4 + b] = g[i][a * 4 + b] / std::sqrt(row[i][a] * col[i][b] / rowMean);
        } else {
          for (size_t j = 0; j < n; ++j) {
            v[i][j] = beta2 * v[i][j] + (1 - beta2) * (g[i][j] * g[i][j] + o.adafactorEps);
            u[j] = g[i][j] / std::sqrt(v[i][j]);
          }
        }
        double rms = 0;
        for (double x : u)
          rms += x * x / static_cast<double>(n);
        double scale = std::max(1.0, std::sqrt(rms) / o.updateClip);
        for (size_t j = 0; j < n; ++j) {
          u[j] /= scale;
          if (o.momentum > 0) {
            mom[i][j] = o.momentum * mom[i][j] + (1 - o.momentum) * u[j];
            u[j] = mom[i][j];
          }
        }
      }
      double decay = o.kind == Kind::AdamW || o.weightDecay > 0 ? 1 - lr * o.weightDecay : 1;
      double rate = lr;
      for (size_t j = 0; j < n; ++j)
        w[i][j] = w[i][j] * decay - rate * u[j];
    }
  }
  return w;
}

struct OptimizerCase {
  const char *name;
  OptimizerOptions options;
};

class OptimizerUpdates : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(OptimizerUpdates, MatchTheFormulasOverThreeSteps) {
  const OptimizerOptions &o = GetParam().options;
  std::mt19937_64 rng(7);
  Values w0{random(12, rng, 1), random(5, rng, 1)};
  std::vector<Values> grads;
  for (int t = 0; t < 3; ++t)
    grads.push_back({random(12, rng, 0.5), random(5, rng, 0.5)});
  double lr = 0.05;
  Values got = runPass(o, w0, grads, lr);
  Values want = reference(o, w0, grads, lr);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    for (size_t j = 0; j < want[i].size(); ++j) {
      // Relative to the size of the update (the weights move by about lr per step).
      EXPECT_NEAR(got[i][j], want[i][j], 1e-5 * std::max(1.0, std::abs(want[i][j] - w0[i][j]) / lr))
          << GetParam().name << " w" << i << "[" << j << "]";
      EXPECT_NE(got[i][j], w0[i][j]) << "the update must move every weight";
    }
  }
}

OptimizerOptions make(Kind kind, double weightDecay = 0, double clip = 0, double momentum = 0) {
  OptimizerOptions o;
  o.kind = kind;
  o.weightDecay = weightDecay;
  o.clip = clip;
  o.momentum = momentum;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    All, OptimizerUpdates,
    ::testing::Values(OptimizerCase{"sgd", make(Kind::Sgd)},
                      OptimizerCase{"sgd_decay_clip", make(Kind::Sgd, 0.1, 0.3)},
                      OptimizerCase{"adamw", make(Kind::AdamW, 0.1)},
                      OptimizerCase{"adamw_clip", make(Kind::AdamW, 0.0, 0.2)},
                      OptimizerCase{"adafactor", make(Kind::Adafactor)},
                      OptimizerCase{"adafactor_momentum_decay", make(Kind::Adafactor, 0.1, 0, 0.9)}),
    [](const auto &info) { return std::string(info.param.name); });

// The state each optimizer keeps, by name and size: what checkpoints hold and `vitc stats --train`
// counts.
TEST(OptimizerState, NamesAndSizesPerOptimizer) {
  OptimizerOptions adamw = make(Kind::AdamW), adafactor = make(Kind::Adafactor),
                   withMomentum = make(Kind::Adafactor, 0, 0, 0.9);
  EXPECT_EQ(optimizerStateNames(make(Kind::Sgd), "w", {3, 4}).size(), 0u);
  EXPECT_EQ(optimizerStateNames(adamw, "w", {3, 4}),
            (std::vector<std::string>{"w/adamw.m", "w/adamw.v"}));
  EXPECT_EQ(optimizerStateFloats(adamw, {3, 4}), 24);
  EXPECT_EQ(optimizerStateNames(adafactor, "w", {64, 3, 8, 8}),
            (std::vector<std::string>{"w/adafactor.row", "w/adafactor.col"}));
  EXPECT_EQ(optimizerStateFloats(adafactor, {64, 3, 8, 8}), 64 + 192);
  EXPECT_EQ(optimizerStateFloats(adafactor, {64}), 64);
  EXPECT_EQ(optimizerStateFloats(adafactor, {1, 16, 64}), 16 * 64);
  EXPECT_EQ(optimizerStateFloats(withMomentum, {8, 8}), 16 + 64);
}

// Anything but autodiff's output is refused in one line.
TEST(OptimizerPass, RefusesAModuleThatIsNotAGradientStep) {
  auto m = std::make_unique<ir::Module>();
  ir::Builder b(*m);
  ir::Op *w = b.param("w", {4}, false);
  b.output({b.scale(w, 2.0)});
  PassContext ctx;
  Expected<bool> r = createOptimizer()->run(*m, ctx);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find("needs autodiff's output"), std::string::npos) << r.error().str();
}

} // namespace
} // namespace vitc::passes
