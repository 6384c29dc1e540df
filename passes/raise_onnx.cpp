// The raise-onnx pass.
#include "passes/raise_onnx.h"

#include <algorithm>
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

// ---- views: chains of reshapes and transposes, seen as strided views of one tensor ----

// One factor of a view's dimension: `size` steps of `stride` elements of the base.
struct Factor {
  int64_t size, stride;
  bool operator==(const Factor &) const = default;
};
using Dim = std::vector<Factor>; // outer to inner

// A value that only rearranges `base`: each of its dimensions as factors of the base's elements.
struct View {
  Op *base = nullptr;
  std::vector<Dim> dims;
};

// Drops size-1 factors and merges neighbours that are contiguous, so equal views compare equal.
Dim normalized(const Dim &d) {
  Dim out;
  for (const Factor &f : d) {
    if (f.size == 1)
      continue;
    if (!out.empty() && out.back().stride == f.size * f.stride) {
      out.back() = Factor{out.back().size * f.size, f.stride};
      continue;
    }
    out.push_back(f);
  }
  return out;
}

std::optional<View> reshapeView(const View &v, const Shape &shape) {
  std::vector<Factor> flat;
  for (const Dim &d : v.dims)
    for (const Factor &f : d)
      if (f.size != 1)
        flat.push_back(f);
  View r{v.base, {}};
  size_t next = 0;
  for (int64_t want : shape) {
    Dim d;
    int64_t have = 1;
    while (have < want) {
      if (next >= flat.size())
        return std::nullopt;
      Factor f = flat[next];
      if (want % have != 0)
        return std::nullopt;
      int64_t need = want / have;
      if (f.size <= need) {
        if (need % f.size != 0)
          return std::nullopt;
        d.push_back(f);
        have *= f.size;
        ++next;
        continue;
      }
      if (f.size % need != 0)
        return std::nullopt;
      // Split the factor: its outer part completes this dimension.
      d.push_back(Factor{need, f.stride * (f.size / need)});
      flat[next] = Factor{f.size / need, f.stride};
      have *= need;
    }
    if (have != want)
      return std::nullopt;
    r.dims.push_back(d);
  }
  if (next != flat.size())
    return std::nullopt;
  return r;
}

// The view `op` is of the first value up its chain of reshapes and transposes (or of the first
// of `stops`).
std::optional<View> traceView(Op *op, const std::unordered_set<const Op *> &stops = {}) {
  if ((op->is(OpKind::Reshape) || op->is(OpKind::Transpose)) && !stops.count(op)) {
    std::optional<View> inner = traceView(op->operand(0), stops);
    if (!inner)
      return std::nullopt;
    if (op->is(OpKind::Reshape))
      return reshapeView(*inner, op->shape());
    View r{inner->base, {}};
    for (int64_t p : op->attrs.getInts("perm"))
      r.dims.push_back(inner->dims[static_cast<size_t>(p)]);
    return r;
  }
  View v{op, {}};
  int64_t stride = numElements(op->shape());
  for (int64_t size : op->shape()) {
    stride /= std::max<int64_t>(size, 1);
    v.dims.push_back(Dim{Factor{size, stride}});
  }
  return v;
}

bool sameView(const std::vector<Dim> &a, const std::vector<Dim> &b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (normalized(a[i]) != normalized(b[i]))
      return false;
  return true;
}

// Attention with batch and heads merged, as nn.MultiheadAttention computes it, back in the
// spec's [B, H, T, dh] form; and the transposes of token-major activations moved below the
// row-wise ops they precede, until they meet and cancel.
class ViewRaiser {
public:
  explicit ViewRaiser(ir::Module &m) : m_(m), b_(m) {}

  int attentions = 0, sunk = 0;

  bool run() {
    bool changed = false;
    for (int round = 0; round < 8; ++round) {
      bool again = false;
      users_ = m_.users();
      std::vector<Op *> ops;
      for (const auto &op : m_.ops())
        ops.push_back(op.get());
      for (Op *op : ops)
        if (!touched_.count(op))
          again |= raiseMergedAttention(op) || sinkView(op) || dropIdentityView(op);
      if (!again)
        break;
      changed = true;
      touched_.clear();
      m_.topologicalSort();
      ir::eraseDeadOps(m_);
    }
    return changed;
  }

private:
  Expected<Op *> create(OpKind kind, std::vector<Op *> operands, ir::Attrs attrs, const Op *anchor,
                        const std::string &name, Shape declared = {}) {
    b_.setInsertionPoint(anchor);
    b_.setLoc(anchor->loc);
    return b_.tryCreate(kind, std::move(operands), std::move(attrs), name,
                        ir::TensorType::of(std::move(declared)));
  }

  // `base` rearranged as `dims` (factors of its elements) into `shape`: a reshape into the
  // factors in memory order, a transpose into the wanted order, a reshape into `shape`.
  Expected<Op *> emitView(Op *base, const std::vector<Dim> &dims, const Shape &shape,
                          const Op *anchor, const std::string &name) {
    std::vector<Factor> wanted;
    for (const Dim &d : dims)
      for (const Factor &f : normalized(d))
        wanted.push_back(f);
    std::vector<size_t> order(wanted.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return wanted[a].stride > wanted[b].stride; });
    Shape memory;
    int64_t expect = 1;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      if (wanted[*it].stride != expect)
        return Error("not a rearrangement of the whole base");
      expect *= wanted[*it].size;
    }
    if (expect != numElements(base->shape()))
      return Error("not a rearrangement of the whole base");
    for (size_t i : order)
      memory.push_back(wanted[i].size);
    Op *x = base;
    if (memory != x->shape()) {
      VITC_ASSIGN(x, create(OpKind::Reshape, {x}, {}, anchor, name + ".factors", memory));
    }
    std::vector<int64_t> perm(order.size());
    bool identity = true;
    for (size_t pos = 0; pos < order.size(); ++pos) {
      // Target position i reads memory position where order[...] == i.
      size_t from = static_cast<size_t>(std::find(order.begin(), order.end(), pos) - order.begin());
      perm[pos] = static_cast<int64_t>(from);
      identity &= from == pos;
    }
    if (!identity) {
      VITC_ASSIGN(x, create(OpKind::Transpose, {x}, {{"perm", perm}}, anchor, name + ".order"));
    }
    if (x->shape() != shape) {
      VITC_ASSIGN(x, create(OpKind::Reshape, {x}, {}, anchor, name, shape));
    }
    for (Op *y = x; y != base; y = y->operand(0))
      emitted_.insert(y);
    return x;
  }

  void replace(Op *from, Op *to) {
    m_.replaceAllUsesWith(from, to);
    touched_.insert(from);
  }

  // A reshape or transpose that gives back its base unchanged goes.
  bool dropIdentityView(Op *op) {
    if (!op->is(OpKind::Reshape) && !op->is(OpKind::Transpose))
      return false;
    std::optional<View> v = traceView(op, merged_);
    if (!v || v->base == op || v->base->type != op->type)
      return false;
    std::optional<View> plain = traceView(v->base, {v->base});
    if (!sameView(v->dims, plain->dims))
      return false;
    replace(op, v->base);
    return true;
  }

  // Whether `op` works on each row (the last dimension) alone, reading its data from operand 0.
  static bool isRowWise(const Op *op) {
    switch (op->kind) {
    case OpKind::MatMul:
      return op->operand(1)->rank() == 2;
    case OpKind::Add:
    case OpKind::Sub:
    case OpKind::Mul:
    case OpKind::Div:
      return op->operand(1)->rank() <= 1 || op->operand(0)->rank() <= 1;
    case OpKind::Scale:
    case OpKind::Gelu:
    case OpKind::LayerNorm:
      return true;
    case OpKind::Slice:
      return op->attrs.getInt("axis") == op->rank() - 1;
    default:
      return false;
    }
  }

  // R(view(x)) => view(R(x)) for a row-wise R and a view that moves whole rows of x around (not
  // a plain reshape of them): the views then meet and cancel.
  bool sinkView(Op *r) {
    if (!isRowWise(r) || r->operands.empty())
      return false;
    size_t data =
        (r->operands.size() == 2 && !r->is(OpKind::MatMul) && r->operand(0)->rank() <= 1) ? 1 : 0;
    Op *x = r->operand(data);
    if (!x->is(OpKind::Reshape) && !x->is(OpKind::Transpose))
      return false;
    std::optional<View> v = traceView(x, merged_);
    if (!v || v->base == x || v->base->rank() < 1)
      return false;
    int64_t d = v->base->shape().back();
    if (x->shape().back() != d || normalized(v->dims.back()) != Dim{Factor{d, 1}})
      return false;
    // The rows' view: factors over the base's rows.
    std::vector<Dim> rows(v->dims.begin(), v->dims.end() - 1);
    for (Dim &dim : rows)
      for (Factor &f : dim) {
        if (f.stride % d != 0)
          return false;
        f.stride /= d;
      }
    Shape baseRows(v->base->shape().begin(), v->base->shape().end() - 1);
    View plainRows{nullptr, {}};
    int64_t stride = numElements(baseRows);
    for (int64_t size : baseRows) {
      stride /= std::max<int64_t>(size, 1);
      plainRows.dims.push_back(Dim{Factor{size, stride}});
    }
    // Rows in their order through reshapes alone: nothing to gain. (Through a transpose that moves
    // only size-1 dimensions, as nn.MultiheadAttention's with a batch of 1, or a view this pass
    // left behind, the rows keep their order too, but moving the op lets the views cancel.)
    std::vector<Factor> a, b;
    for (const Dim &dim : rows)
      for (const Factor &f : normalized(dim))
        a.push_back(f);
    for (const Dim &dim : plainRows.dims)
      for (const Factor &f : normalized(dim))
        b.push_back(f);
    bool transposes = false;
    for (Op *y = x; y != v->base; y = y->operand(0))
      transposes |= y->is(OpKind::Transpose);
    if (normalized(a) == normalized(b) && !transposes && !emitted_.count(x))
      return false;
    std::vector<Op *> operands = r->operands;
    operands[data] = v->base;
    Expected<Op *> moved = create(r->kind, operands, r->attrs, r, r->name + ".rows");
    if (!moved)
      return false;
    int64_t n = (*moved)->shape().back();
    for (Dim &dim : rows)
      for (Factor &f : dim)
        f.stride *= n;
    rows.push_back(Dim{Factor{n, 1}});
    Expected<Op *> back = emitView(*moved, rows, r->shape(), r, r->name + ".view");
    if (!back || (*back)->type != r->type)
      return false;
    replace(r, *back);
    ++sunk;
    return true;
  }

  // softmax(q·k^T)·v on [B*H, T, dh] values that are views of [B, T, H*dh] tensors.
  bool raiseMergedAttention(Op *probs) {
    if (!probs->is(OpKind::Softmax) || probs->rank() != 3)
      return false;
    auto us = users_.find(probs);
    if (us == users_.end() || us->second.size() != 1)
      return false;
    Op *context = us->second[0];
    if (!context->is(OpKind::MatMul) || context->operand(0) != probs ||
        context->attrs.getBool("transpose_b"))
      return false;
    Op *scores = probs->operand(0);
    double scale = 1.0;
    if (scores->is(OpKind::Scale)) {
      scale = scores->attrs.getFloat("factor");
      scores = scores->operand(0);
    }
    if (!scores->is(OpKind::MatMul) || !scores->attrs.getBool("transpose_b"))
      return false;
    Op *qs = scores->operand(0), *ks = scores->operand(1), *vs = context->operand(1);
    int64_t n = qs->shape()[0], dh = qs->shape()[2];
    std::optional<View> q = traceView(qs), k = traceView(ks), v = traceView(vs);
    if (!q || !k || !v)
      return false;
    // Each must be the heads of a [B, T, H*dh] base, batch and heads merged.
    // The base may have any shape whose elements are [B, T, H*dh] in order ([T, 1, D] when the
    // batch is 1).
    struct Base {
      int64_t h, batch, tokens;
      bool operator==(const Base &) const = default;
    };
    auto heads = [&](const View &view) -> std::optional<Base> {
      const Shape &s = view.base->shape();
      if (s.empty() || s.back() % dh != 0)
        return std::nullopt;
      int64_t width = s.back(), h = width / dh;
      if (n % h != 0)
        return std::nullopt;
      int64_t b = n / h, t = numElements(s) / (b * width);
      if (b * t * width != numElements(s))
        return std::nullopt;
      std::vector<Dim> want = {Dim{Factor{b, t * width}, Factor{h, dh}}, Dim{Factor{t, width}},
                               Dim{Factor{dh, 1}}};
      if (!sameView(view.dims, want))
        return std::nullopt;
      return Base{h, b, t};
    };
    std::optional<Base> hq = heads(*q), hk = heads(*k), hv = heads(*v);
    if (!hq || !hk || !hv || hq->h != hk->h || hq->h != hv->h || hq->batch != hk->batch ||
        hk->batch != hv->batch || hk->tokens != hv->tokens)
      return false;
    int64_t h = hq->h, batch = hq->batch, tq = hq->tokens;
    std::string name = context->name;
    auto split = [&](Op *base, const Base &shape, const std::string &suffix) -> Expected<Op *> {
      VITC_ASSIGN(Op * r, create(OpKind::Reshape, {base}, {}, context, name + suffix + ".heads",
                                 {shape.batch, shape.tokens, h, dh}));
      return create(OpKind::Transpose, {r}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}, context,
                    name + suffix + ".bhtd");
    };
    auto build = [&]() -> Expected<Op *> {
      VITC_ASSIGN(Op * qh, split(q->base, *hq, ".q"));
      VITC_ASSIGN(Op * kh, split(k->base, *hk, ".k"));
      VITC_ASSIGN(Op * vh, split(v->base, *hv, ".v"));
      VITC_ASSIGN(Op * s, create(OpKind::MatMul, {qh, kh}, {{"transpose_b", true}}, context,
                                 name + ".scores"));
      if (scale != 1.0) {
        VITC_ASSIGN(s, create(OpKind::Scale, {s}, {{"factor", scale}}, context, name + ".scaled"));
      }
      VITC_ASSIGN(Op * p, create(OpKind::Softmax, {s}, {}, context, name + ".probs"));
      VITC_ASSIGN(Op * c, create(OpKind::MatMul, {p, vh}, {}, context, name + ".context"));
      VITC_ASSIGN(Op * t,
                  create(OpKind::Transpose, {c}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}},
                         context, name + ".bthd"));
      VITC_ASSIGN(Op * merged,
                  create(OpKind::Reshape, {t}, {}, context, name + ".merged", {batch, tq, h * dh}));
      merged_.insert(merged);
      // The old [B*H, T, dh] value, as a view of the merged heads.
      std::vector<Dim> old = {Dim{Factor{batch, tq * h * dh}, Factor{h, dh}},
                              Dim{Factor{tq, h * dh}}, Dim{Factor{dh, 1}}};
      return emitView(merged, old, context->shape(), context, name + ".split");
    };
    Expected<Op *> replacement = build();
    if (!replacement || (*replacement)->type != context->type)
      return false;
    replace(context, *replacement);
    ++attentions;
    return true;
  }

  ir::Module &m_;
  ir::Builder b_;
  ir::UserMap users_;
  std::unordered_set<const Op *> touched_;
  // The heads merged back to [B, T, D] by raiseMergedAttention: views of them are traced to them,
  // not through them to the attention's [B, H, T, dh] product.
  std::unordered_set<const Op *> merged_;
  // The views emitViews made: moving an op above them is always worth it.
  std::unordered_set<const Op *> emitted_;
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
    ViewRaiser views(m);
    bool viewsChanged = views.run();
    if (changed || viewsChanged)
      ctx.remark(fmt::format("{} layer_norm, {} gelu, {} attention score products raised; {} "
                             "merged-head attention split back into heads, {} row-wise ops moved "
                             "above transposes",
                             r.layerNorms, r.gelus, r.products, views.attentions, views.sunk));
    changed |= viewsChanged;
    remarkLeftovers(m, ctx);
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createRaiseOnnx() { return std::make_unique<RaiseOnnx>(); }

} // namespace vitc::passes
