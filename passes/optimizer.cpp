// The optimizer pass.
#include "passes/optimizer.h"

#include <cassert>
#include <map>
#include <optional>
#include <unordered_map>

#include "ir/builder.h"
#include "ir/text.h"

namespace vitc::passes {

using ir::Op;
using ir::OpKind;
using ir::valueName;
using Kind = OptimizerOptions::Kind;

namespace {

// The 2-D view Adafactor factors a parameter as: [first dimension, the rest], when both are over 1.
std::optional<std::pair<int64_t, int64_t>> factoredView(const Shape &shape) {
  if (shape.size() < 2)
    return std::nullopt;
  int64_t rows = shape[0], cols = numElements(shape) / rows;
  if (rows < 2 || cols < 2)
    return std::nullopt;
  return std::pair{rows, cols};
}

class Updater {
public:
  Updater(ir::Module &m, const OptimizerOptions &o) : m_(m), b_(m), o_(o) {}

  // The ops that follow are named after `value` (the weight being updated, or the clipping).
  void nameAfter(std::string value) { prefix_ = std::move(value); }

  Op *scalarInput(const std::string &name) {
    auto [it, fresh] = scalars_.try_emplace(name, nullptr);
    if (fresh) {
      b_.setInsertionPoint(m_.ops().front().get());
      it->second = b_.input(name, Shape{});
      b_.setInsertionPoint(nullptr);
    }
    return it->second;
  }
  // One f32[] fill per value, and one `1 - a` per per-step scalar a, whichever parameter asks
  // first: they precede every later use, since ops are created at the end.
  Op *constant(double value) {
    auto [it, fresh] = constants_.try_emplace(value, nullptr);
    if (fresh)
      it->second = b_.fill(Shape{}, value, "optimizer.constant");
    return it->second;
  }
  Op *oneMinus(Op *a) {
    auto [it, fresh] = oneMinus_.try_emplace(a, nullptr);
    if (fresh)
      it->second = b_.sub(constant(1), a, "optimizer.one_minus");
    return it->second;
  }

  Op *stateParam(const std::string &name, Shape shape) {
    b_.setInsertionPoint(m_.ops().front().get());
    Op *p = b_.param(name, std::move(shape), false, valueName(name));
    b_.setInsertionPoint(nullptr);
    return p;
  }

  // a * x + (1 - a) * y for a constant a.
  Op *average(Op *x, Op *y, double a) {
    return b_.add(b_.scale(x, a, n()), b_.scale(y, 1 - a, n()), n());
  }
  // The same for a per-step a (an f32[] value).
  Op *average(Op *x, Op *y, Op *a) {
    return b_.add(b_.mul(x, a, n()), b_.mul(y, oneMinus(a), n()), n());
  }

  Op *flatSumOfSquares(Op *g) {
    Op *flat = b_.reshape(b_.mul(g, g, n()), Shape{numElements(g->shape())}, n());
    return b_.sum(flat, 0, n());
  }

  // Scales every gradient by min(1, clip / ||g||), ||g|| over all of them.
  void clipGlobalNorm(std::vector<Op *> &grads) {
    Op *total = nullptr;
    for (Op *g : grads) {
      Op *s = flatSumOfSquares(g);
      total = total ? b_.add(total, s, n()) : s;
    }
    Op *norm = b_.sqrt(total, "grad_norm");
    Op *clip = constant(o_.clip);
    Op *factor = b_.div(clip, b_.maximum(norm, clip, n()), "clip_factor");
    for (Op *&g : grads)
      g = b_.mul(g, factor, n());
  }

  // The next value of `w`, and of its state (appended to `next` in the order of `state`).
  Op *update(Op *w, Op *g, const std::vector<Op *> &state, std::vector<Op *> &next) {
    switch (o_.kind) {
    case Kind::Sgd: {
      Op *lr = scalarInput("optimizer.lr");
      return withDecay(w, b_.mul(g, lr, n()), lr);
    }
    case Kind::AdamW: {
      Op *m = average(state[0], g, o_.beta1);
      Op *v = average(state[1], b_.mul(g, g, n()), o_.beta2);
      next.push_back(m);
      next.push_back(v);
      Op *denom = b_.add(b_.mul(b_.sqrt(v, n()), scalarInput("optimizer.rsqrt_bias2"), n()),
                         constant(o_.eps), n());
      Op *step = b_.mul(b_.div(m, denom, n()), scalarInput("optimizer.step_size"), n());
      return b_.sub(b_.mul(w, scalarInput("optimizer.decay"), n()), step, n());
    }
    case Kind::Adafactor: {
      Op *beta2 = scalarInput("optimizer.beta2");
      Op *g2 = b_.add(b_.mul(g, g, n()), constant(o_.adafactorEps), n());
      Op *u = nullptr;
      size_t used = 0;
      if (auto view = factoredView(w->shape())) {
        auto [rows, cols] = *view;
        Op *g2d = b_.reshape(g2, Shape{rows, cols}, n());
        Op *row = average(state[0], b_.mean(g2d, 1, n()), beta2);
        Op *col = average(state[1], b_.mean(g2d, 0, n()), beta2);
        next.push_back(row);
        next.push_back(col);
        used = 2;
        // v ~ row * col / mean(row): the rank-1 estimate of the second moments.
        Op *v = b_.div(b_.mul(b_.reshape(row, Shape{rows, 1}, n()), col, n()), b_.mean(row, 0, n()),
                       n());
        u = b_.reshape(b_.div(b_.reshape(g, Shape{rows, cols}, n()), b_.sqrt(v, n()), n()),
                       w->shape(), n());
      } else {
        Op *v = average(state[0], g2, beta2);
        next.push_back(v);
        used = 1;
        u = b_.div(g, b_.sqrt(v, n()), n());
      }
      // Clip the update to an RMS of at most updateClip.
      Op *rms = b_.sqrt(
          b_.mean(b_.reshape(b_.mul(u, u, n()), Shape{numElements(u->shape())}, n()), 0, n()), n());
      u = b_.div(u, b_.maximum(constant(1), b_.scale(rms, 1 / o_.updateClip, n()), n()), n());
      if (o_.momentum > 0) {
        u = average(state[used], u, o_.momentum);
        next.push_back(u);
      }
      Op *lr = scalarInput("optimizer.lr");
      return withDecay(w, b_.mul(u, lr, n()), lr);
    }
    }
    return nullptr;
  }

private:
  // w - step, with decoupled weight decay: w - lr * weight_decay * w - step.
  Op *withDecay(Op *w, Op *step, Op *lr) {
    if (o_.weightDecay == 0)
      return b_.sub(w, step, n());
    if (!decay_)
      decay_ = oneMinus(b_.scale(lr, o_.weightDecay, "optimizer.lr_decay"));
    return b_.sub(b_.mul(w, decay_, n()), step, n());
  }

  ir::Module &m_;
  ir::Builder b_;
  const OptimizerOptions &o_;
  std::unordered_map<std::string, Op *> scalars_;
  std::map<double, Op *> constants_;
  std::unordered_map<const Op *, Op *> oneMinus_;
  Op *decay_ = nullptr; // 1 - lr * weight_decay
  std::string prefix_ = "opt";

  std::string n() const { return prefix_ + ".opt"; }
};

class Optimizer : public Pass {
public:
  std::string_view name() const override { return "optimizer"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    const OptimizerOptions &o = ctx.options.optimizer;
    Op *out = m.output();
    std::vector<Op *> params = m.params();
    if (!out || out->operands.size() != params.size() + 1 || out->operand(0)->rank() != 0)
      return Error(fmt::format("module @{}: the optimizer needs autodiff's output (the loss, then "
                               "one gradient per parameter: {} values), found {} outputs",
                               m.name, params.size() + 1, out ? out->operands.size() : 0));
    Op *loss = out->operand(0);
    std::vector<Op *> grads(out->operands.begin() + 1, out->operands.end());
    m.erase(out);

    Updater u(m, o);
    if (o.clip > 0) {
      u.nameAfter("clip");
      u.clipGlobalNorm(grads);
    }
    // The next value of every param, the weights' and the state's they bring.
    std::unordered_map<const Op *, Op *> nextOf;
    int64_t stateFloats = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      Op *w = params[i];
      const std::string &weight = w->attrs.getStr("name");
      std::vector<Op *> state;
      std::vector<std::string> names = optimizerStateNames(o, weight, w->shape());
      std::vector<Shape> shapes = optimizerStateShapes(o, w->shape());
      for (size_t s = 0; s < names.size(); ++s) {
        state.push_back(u.stateParam(names[s], shapes[s]));
        stateFloats += numElements(shapes[s]);
      }
      std::vector<Op *> nextState;
      u.nameAfter(w->name);
      Op *next = u.update(w, grads[i], state, nextState);
      assert(nextState.size() == state.size() && "one next value per state tensor");
      nextOf[w] = next;
      m.rename(next, "next." + valueName(weight));
      for (size_t s = 0; s < state.size(); ++s) {
        nextOf[state[s]] = nextState[s];
        m.rename(nextState[s], "next." + valueName(names[s]));
      }
    }
    std::vector<Op *> outputs{loss};
    for (const Op *p : m.params())
      outputs.push_back(nextOf.at(p));
    ir::Builder(m).output(std::move(outputs));
    // Says which outputs are the params' next values, so that the sharding passes keep each in its
    // param's sharding and a runtime can keep the params on the devices from step to step.
    m.attrs.set(std::string(ir::kParamUpdatesAttr), int64_t{1});
    ctx.remark(fmt::format(
        "{} over {} parameters, {} of state ({} floats){}", optimizerName(o.kind), params.size(),
        byteSize(stateFloats * 4), stateFloats,
        o.clip > 0 ? fmt::format(", gradients clipped to norm {}", o.clip) : std::string()));
    return true;
  }
};

} // namespace

std::string_view optimizerName(OptimizerOptions::Kind kind) {
  switch (kind) {
  case Kind::Sgd:
    return "sgd";
  case Kind::AdamW:
    return "adamw";
  case Kind::Adafactor:
    return "adafactor";
  }
  return "?";
}

bool parseOptimizerKind(std::string_view word, OptimizerOptions::Kind &kind) {
  for (Kind k : {Kind::Sgd, Kind::AdamW, Kind::Adafactor})
    if (optimizerName(k) == word) {
      kind = k;
      return true;
    }
  return false;
}

std::vector<std::string> optimizerStateNames(const OptimizerOptions &o, std::string_view weight,
                                             const Shape &shape) {
  std::string w(weight);
  switch (o.kind) {
  case Kind::Sgd:
    return {};
  case Kind::AdamW:
    return {w + "/adamw.m", w + "/adamw.v"};
  case Kind::Adafactor: {
    std::vector<std::string> names;
    if (factoredView(shape))
      names = {w + "/adafactor.row", w + "/adafactor.col"};
    else
      names = {w + "/adafactor.v"};
    if (o.momentum > 0)
      names.push_back(w + "/adafactor.m");
    return names;
  }
  }
  return {};
}

std::vector<Shape> optimizerStateShapes(const OptimizerOptions &o, const Shape &shape) {
  std::vector<Shape> shapes;
  if (o.kind == Kind::AdamW)
    shapes = {shape, shape};
  if (o.kind == Kind::Adafactor) {
    if (auto view = factoredView(shape))
      shapes = {Shape{view->first}, Shape{view->second}};
    else
      shapes = {shape};
    if (o.momentum > 0)
      shapes.push_back(shape);
  }
  return shapes;
}

int64_t optimizerStateFloats(const OptimizerOptions &o, const Shape &shape) {
  int64_t n = 0;
  for (const Shape &s : optimizerStateShapes(o, shape))
    n += numElements(s);
  return n;
}

std::unique_ptr<Pass> createOptimizer() { return std::make_unique<Optimizer>(); }

} // namespace vitc::passes
