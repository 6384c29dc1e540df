// The raise-onnx pass.
#include "passes/raise_onnx.h"

#include <cmath>

#include "ir/builder.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

bool near(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(1.0, std::abs(b)); }

// The value of a fill of one element (or of a fill of any shape: every element is the same).
std::optional<double> fillValue(const Op *op) {
  if (!op->is(OpKind::Fill))
    return std::nullopt;
  return op->attrs.getFloat("value");
}

class Raiser {
public:
  explicit Raiser(ir::Module &m) : m_(m), b_(m), users_(m.users()) {}

  int layerNorms = 0, gelus = 0, products = 0;

  bool run() {
    std::vector<Op *> ops;
    for (const auto &op : m_.ops())
      ops.push_back(op.get());
    bool changed = false;
    for (Op *op : ops) {
      if (dead_.count(op))
        continue;
      changed |= raiseLayerNorm(op) || raiseGelu(op) || raiseScoreProduct(op);
    }
    if (changed) {
      m_.topologicalSort();
      ir::eraseDeadOps(m_);
      // A raised op takes the name of the value it replaced, now that that one is gone.
      for (auto &[op, name] : renames_)
        m_.rename(op, name);
    }
    return changed;
  }

private:
  Op *soleUser(const Op *op) const {
    auto it = users_.find(op);
    return it != users_.end() && it->second.size() == 1 ? it->second[0] : nullptr;
  }

  // The other operand of a binary op that reads `x`.
  static Op *other(const Op *binary, const Op *x) {
    return binary->operand(0) == x ? binary->operand(1) : binary->operand(0);
  }

  // `keep(mean %x {axis = last})`: the mean over the last axis, reshaped to keep it as size 1.
  static Op *meanKeptOf(Op *op) {
    if (!op->is(OpKind::Reshape))
      return nullptr;
    Op *mean = op->operand(0);
    if (!mean->is(OpKind::Mean))
      return nullptr;
    Op *x = mean->operand(0);
    Shape kept = x->shape();
    if (kept.empty() || mean->attrs.getInt("axis") != static_cast<int64_t>(kept.size()) - 1)
      return nullptr;
    kept.back() = 1;
    return op->shape() == kept ? x : nullptr;
  }

  // Points the users of `from` at `to` and keeps the user map right.
  void replace(Op *from, Op *to) {
    m_.replaceAllUsesWith(from, to);
    std::vector<Op *> &now = users_[to];
    for (Op *u : users_[from])
      if (u != to)
        now.push_back(u);
    users_[from].clear();
    dead_.insert(from);
  }

  Expected<Op *> create(OpKind kind, std::vector<Op *> operands, ir::Attrs attrs, const Op *anchor,
                        const std::string &name, Shape declared = {}) {
    b_.setInsertionPoint(anchor);
    b_.setLoc(anchor->loc);
    Expected<Op *> op =
        b_.tryCreate(kind, operands, std::move(attrs), name, ir::TensorType::of(declared));
    if (op)
      for (Op *x : operands)
        users_[x].push_back(*op);
    return op;
  }

  // %n = div %d, (sqrt (add keep(mean (mul %d, %d)), eps)) with %d = sub %x, keep(mean %x)
  bool raiseLayerNorm(Op *div) {
    if (!div->is(OpKind::Div))
      return false;
    Op *d = div->operand(0), *s = div->operand(1);
    if (!d->is(OpKind::Sub) || !s->is(OpKind::Sqrt) || soleUser(s) != div)
      return false;
    Op *x = d->operand(0);
    if (meanKeptOf(d->operand(1)) != x || x->rank() < 1 || d->type != x->type)
      return false;
    Op *a = s->operand(0);
    if (!a->is(OpKind::Add) || soleUser(a) != s)
      return false;
    Op *v = a->operand(0), *epsOp = a->operand(1);
    if (!fillValue(epsOp))
      std::swap(v, epsOp);
    std::optional<double> eps = fillValue(epsOp);
    if (!eps || numElements(epsOp->shape()) != 1)
      return false;
    Op *p = meanKeptOf(v);
    if (!p || !p->is(OpKind::Mul) || p->operand(0) != d || p->operand(1) != d)
      return false;
    // Users of %d: the square and the division only.
    auto du = users_.find(d);
    if (du == users_.end() || du->second.size() != 2)
      return false;
    int64_t width = x->shape().back();
    auto isVector = [&](const Op *w) { return w->shape() == Shape{width}; };
    Op *last = div, *scale = nullptr, *bias = nullptr;
    if (Op *u = soleUser(last);
        u && u->is(OpKind::Mul) && isVector(other(u, last)) && u->type == last->type) {
      scale = other(u, last);
      last = u;
    }
    if (Op *u = soleUser(last);
        u && u->is(OpKind::Add) && isVector(other(u, last)) && u->type == last->type) {
      bias = other(u, last);
      last = u;
    }
    if (!scale) {
      Expected<Op *> ones =
          create(OpKind::Fill, {}, {{"value", 1.0}}, last, last->name + ".ones", Shape{width});
      if (!ones)
        return false;
      scale = *ones;
    }
    std::vector<Op *> operands{x, scale};
    if (bias)
      operands.push_back(bias);
    Expected<Op *> ln =
        create(OpKind::LayerNorm, operands, {{"eps", *eps}}, last, last->name + ".layer_norm");
    if (!ln || !((*ln)->type == last->type))
      return false;
    renames_.emplace_back(*ln, last->name);
    replace(last, *ln);
    ++layerNorms;
    return true;
  }

  // Whether `op` is %h * %h * %h.
  static bool isCube(const Op *op, const Op *h) {
    if (!op->is(OpKind::Mul))
      return false;
    const Op *a = op->operand(0), *b = op->operand(1);
    auto square = [&](const Op *s) {
      return s->is(OpKind::Mul) && s->operand(0) == h && s->operand(1) == h;
    };
    return (a == h && square(b)) || (b == h && square(a));
  }

  // The GELU input of the inner argument of erf or tanh, and whether it is the tanh form.
  static Op *geluInput(const Op *f) {
    const Op *arg = f->operand(0);
    if (!arg->is(OpKind::Scale))
      return nullptr;
    double c = arg->attrs.getFloat("factor");
    Op *inner = arg->operand(0);
    if (f->is(OpKind::Erf))
      return near(c, 0.70710678118654752) ? inner : nullptr;
    // tanh: sqrt(2/pi) * (h + 0.044715 h^3)
    if (!near(c, 0.7978845608028654) || !inner->is(OpKind::Add))
      return nullptr;
    for (int side = 0; side < 2; ++side) {
      Op *h = inner->operand(side), *cubic = inner->operand(1 - side);
      if (cubic->is(OpKind::Scale) && near(cubic->attrs.getFloat("factor"), 0.044715) &&
          isCube(cubic->operand(0), h))
        return h;
    }
    return nullptr;
  }

  // erf or tanh inside %h * 0.5 * (1 + f(...)), the factors in any order.
  bool raiseGelu(Op *f) {
    if (!f->is(OpKind::Erf) && !f->is(OpKind::Tanh))
      return false;
    Op *h = geluInput(f);
    Op *one = soleUser(f);
    if (!h || !one || !one->is(OpKind::Add) || fillValue(other(one, f)) != 1.0 ||
        numElements(other(one, f)->shape()) != 1 || one->type != f->type)
      return false;
    // Walks the products after 1 + f(...) until it has %h and a factor of one half.
    Op *cur = one;
    double factor = 1.0;
    bool haveH = false;
    for (int step = 0; step < 3 && !(haveH && near(factor, 0.5)); ++step) {
      Op *u = soleUser(cur);
      if (!u || u->type != h->type)
        return false;
      if (u->is(OpKind::Scale)) {
        factor *= u->attrs.getFloat("factor");
      } else if (u->is(OpKind::Mul) && !haveH) {
        Op *o = other(u, cur);
        if (o->is(OpKind::Scale) && o->operand(0) == h) {
          factor *= o->attrs.getFloat("factor");
        } else if (o != h) {
          return false;
        }
        haveH = true;
      } else {
        return false;
      }
      cur = u;
    }
    if (!haveH || !near(factor, 0.5))
      return false;
    ir::Attrs attrs;
    if (f->is(OpKind::Tanh))
      attrs.set("approximate", true);
    Expected<Op *> gelu = create(OpKind::Gelu, {h}, attrs, cur, cur->name + ".gelu");
    if (!gelu || !((*gelu)->type == cur->type))
      return false;
    renames_.emplace_back(*gelu, cur->name);
    replace(cur, *gelu);
    ++gelus;
    return true;
  }

  // The scores of attention: a transpose of the last two dimensions folds into transpose_b, and a
  // scaled query moves after the product.
  bool raiseScoreProduct(Op *mm) {
    if (!mm->is(OpKind::MatMul) || mm->attrs.getBool("transpose_b") || mm->rank() < 3)
      return false;
    Op *a = mm->operand(0), *kt = mm->operand(1);
    if (!kt->is(OpKind::Transpose) || kt->rank() != mm->rank() || soleUser(kt) != mm)
      return false;
    // transpose(%k, perm) is transpose(transpose(%k, perm'), swap of the last two) with perm' the
    // perm with its last two entries swapped (the exporter merges a head split's transpose with
    // the key's); the outer one folds into the product.
    std::vector<int64_t> inner = kt->attrs.getInts("perm");
    std::swap(inner[inner.size() - 1], inner[inner.size() - 2]);
    if (inner.back() != static_cast<int64_t>(inner.size()) - 1)
      return false; // the key's features are not its last dimension: not a q·k^T product
    bool identity = true;
    for (size_t d = 0; d < inner.size(); ++d)
      identity &= inner[d] == static_cast<int64_t>(d);
    Op *k = kt->operand(0);
    if (!identity) {
      Expected<Op *> heads =
          create(OpKind::Transpose, {k}, {{"perm", inner}}, mm, kt->name + ".heads");
      if (!heads)
        return false;
      k = *heads;
    }
    double factor = 1.0;
    if (a->is(OpKind::Scale) && soleUser(a) == mm) {
      factor = a->attrs.getFloat("factor");
      a = a->operand(0);
    }
    Expected<Op *> product =
        create(OpKind::MatMul, {a, k}, {{"transpose_b", true}}, mm, mm->name + ".scores");
    if (!product || !((*product)->type == mm->type))
      return false;
    Op *result = *product;
    if (factor != 1.0) {
      Expected<Op *> scaled =
          create(OpKind::Scale, {result}, {{"factor", factor}}, mm, mm->name + ".scaled");
      if (!scaled)
        return false;
      result = *scaled;
    }
    renames_.emplace_back(result, mm->name);
    replace(mm, result);
    ++products;
    return true;
  }

  ir::Module &m_;
  ir::Builder b_;
  ir::UserMap users_;
  std::unordered_set<const Op *> dead_;
  std::vector<std::pair<Op *, std::string>> renames_;
};

// What stays generic, and why.
void remarkLeftovers(const ir::Module &m, PassContext &ctx) {
  for (const auto &op : m.ops()) {
    if (op->is(OpKind::Erf) || op->is(OpKind::Tanh))
      ctx.remark(fmt::format("%{} stays a generic {}: it is not part of a GELU "
                             "(x * 0.5 * (1 + {}(...)) with the usual constants)",
                             op->name, op->keyword(), op->keyword()));
    if (op->is(OpKind::Softmax)) {
      const Op *s = op->operand(0);
      if (s->is(OpKind::Scale))
        s = s->operand(0);
      bool specForm = s->is(OpKind::MatMul) && s->attrs.getBool("transpose_b") && s->rank() == 4;
      if (!specForm)
        ctx.remark(fmt::format("%{} stays a generic softmax: its scores are {}, not [B, H, Tq, Tk] "
                               "from a q·k^T product, so the attention around it is not fused",
                               op->name, shapeString(op->shape())));
    }
  }
}

class RaiseOnnx : public Pass {
public:
  std::string_view name() const override { return "raise-onnx"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    Raiser r(m);
    bool changed = r.run();
    if (changed)
      ctx.remark(fmt::format("{} layer_norm, {} gelu, {} attention score products raised",
                             r.layerNorms, r.gelus, r.products));
    remarkLeftovers(m, ctx);
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createRaiseOnnx() { return std::make_unique<RaiseOnnx>(); }

} // namespace vitc::passes
