// The propagate-sharding pass.
#include "passes/propagate_sharding.h"

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "ir/shape_rules.h"
#include "ir/verifier.h"
#include "passes/layout.h"

namespace vitc::passes {
namespace {

using ir::DimSharding;
using ir::kNoAxis;
using ir::Op;
using ir::OpKind;
using ir::Sharding;

Sharding withoutAxis(Sharding s, int axis) {
  for (DimSharding &d : s.dims)
    if (d.axis == axis)
      d = DimSharding{};
  s.partial &= ~(1u << axis);
  return s;
}

bool usesAxis(const Sharding &s, int axis) {
  if (s.isPartial(axis))
    return true;
  for (const DimSharding &d : s.dims)
    if (d.axis == axis)
      return true;
  return false;
}

Sharding withoutPartial(Sharding s) {
  s.partial = 0;
  return s;
}

class Propagator {
public:
  Propagator(ir::Module &m, PassContext &ctx)
      : m_(m), ctx_(ctx), layout_(ctx.options.layout), data_(m.mesh.axisIndex(layout_.dataAxis)),
        model_(m.mesh.axisIndex(layout_.modelAxis)), weightOnly_(ir::weightOnlyOps(m)) {
    if (data_ >= 0 && m.mesh.axisSize(data_) == 1)
      data_ = -1;
    if (model_ >= 0 && m.mesh.axisSize(model_) == 1)
      model_ = -1;
    k_ = model_ >= 0 ? m.mesh.axisSize(model_) : 1;
  }

  Status checkDivisibility() const {
    const Loc &at = ctx_.options.meshLoc; // --mesh, the layout file or the IR's header
    auto attr = [&](const char *name) -> int64_t {
      const ir::AttrValue *v = m_.attrs.find(name);
      return v && std::holds_alternative<int64_t>(*v) ? std::get<int64_t>(*v) : 0;
    };
    if (model_ >= 0)
      for (const char *dim : {"width", "heads", "mlp"}) {
        int64_t n = attr(dim);
        if (n > 0 && n % k_ != 0)
          return makeError(at, "the model axis '{}' ({} devices) does not divide {} ({})",
                           layout_.modelAxis, k_, dim, n);
      }
    if (data_ >= 0) {
      int64_t t = m_.mesh.axisSize(data_);
      for (const Op *in : m_.inputs())
        if (in->rank() > 0 && in->shape()[0] % t != 0)
          return makeError(at, "the data axis '{}' ({} devices) does not divide the batch ({})",
                           layout_.dataAxis, t, in->shape()[0]);
    }
    return Status::ok();
  }

  Status run() {
    VITC_TRY(checkDivisibility());
    users_ = m_.users();
    findHomes();
    std::vector<Op *> order;
    for (const auto &op : m_.ops())
      order.push_back(op.get());
    for (Op *op : order) {
      if (weightOnly_.count(op) || !op->hasResult()) {
        if (op->is(OpKind::Output))
          visitOutput(op);
        continue;
      }
      if (Status s = visit(op); !s) {
        placeReshards(order);
        return s;
      }
      conformToHome(op);
    }
    placeReshards(order);
    ctx_.remark(fmt::format("{} column-parallel and {} row-parallel matmuls, "
                            "{} token-parallel; {} reshards",
                            columns_, rows_, tokenParallel_, reshards_));
    if (!homes_.empty())
      ctx_.remark(gradientRemark());
    return Status::ok();
  }

private:
  // --- a training step's updates: each param's gradient and update live in its sharding ---

  // The values each param's next value is computed from elementwise (the update, the optimizer's
  // terms, the gradient itself): the ops of the param's shape on the way back from its output,
  // through elementwise ops only, so that the walk stops at the op that computes the gradient
  // (whose operands may have the param's shape by coincidence). Weight-only terms (the param, its
  // state) are sharded on demand and are not walked.
  void findHomes() {
    std::vector<size_t> updates = m_.paramUpdates();
    if (updates.empty())
      return;
    std::vector<Op *> params = m_.params();
    Op *out = m_.output();
    for (size_t i = 0; i < params.size(); ++i) {
      Op *p = params[i];
      updateParamAt_[updates[i]] = p;
      std::vector<Op *> stack{out->operand(updates[i])};
      std::unordered_set<const Op *> seen;
      while (!stack.empty()) {
        Op *v = stack.back();
        stack.pop_back();
        if (weightOnly_.count(v) || v->shape() != p->shape() || !seen.insert(v).second)
          continue;
        homes_[v].push_back(p);
        if (v->info().has(ir::kElementwise) && !sumsGradients(v, p->shape()))
          for (Op *o : v->operands)
            stack.push_back(o);
      }
    }
  }

  // Whether `v` adds up parts of a gradient (a param's several uses, or micro-batches): two
  // operands of the param's shape that are not weight-only. The walk stops there, so that the
  // parts stay partial sums and the total is reduced once instead of each part.
  bool sumsGradients(const Op *v, const Shape &shape) const {
    if (!v->is(OpKind::Add))
      return false;
    int parts = 0;
    for (const Op *o : v->operands)
      parts += !weightOnly_.count(o) && o->shape() == shape;
    return parts > 1;
  }

  // The sharding `op`'s value should have as part of a param's update: that of the first param it
  // is computed for whose sharding the walk has settled (a weight, by its use in the forward pass;
  // optimizer state has none of its own until its update assigns it one).
  std::optional<Sharding> homeSharding(const Op *op) const {
    auto it = homes_.find(op);
    if (it == homes_.end())
      return std::nullopt;
    for (const Op *p : it->second)
      if (settled_.count(p))
        return p->type.sharding;
    return std::nullopt;
  }

  // Gives `op`'s value its param's sharding for every user at once, right after it is computed:
  // a data-parallel gradient (a partial sum over the data axis) is reduced once per step, by an
  // all-reduce, or a reduce-scatter where the param is split over the data axis too, so that each
  // device then updates only its own shard of the param and of its optimizer state.
  void conformToHome(Op *op) {
    std::optional<Sharding> home = homeSharding(op);
    if (!home || op->type.sharding == *home)
      return;
    auto it = users_.find(op);
    if (it == users_.end() || it->second.empty())
      return;
    if (data_ >= 0 && op->type.sharding.isPartial(data_)) {
      bool scattered = std::any_of(home->dims.begin(), home->dims.end(),
                                   [&](const DimSharding &d) { return d.axis == data_; });
      ++(scattered ? gradientsScattered_ : gradientsReduced_);
    }
    std::vector<Op *> users = it->second;
    Op *r = reshard(op, *home, users.front());
    for (Op *u : users)
      for (Op *&o : u->operands)
        if (o == op)
          o = r;
  }

  std::string gradientRemark() const {
    return fmt::format("training step: {} data-parallel gradient{} all-reduced, {} "
                       "reduce-scattered over '{}' (their params and optimizer state split over "
                       "it, each device updating its shard)",
                       gradientsReduced_, gradientsReduced_ == 1 ? "" : "s", gradientsScattered_,
                       layout_.dataAxis);
  }

  // Puts each reshard before the op it was made for (`order` holds the ops the pass began with).
  void placeReshards(const std::vector<Op *> &order) {
    std::vector<Op *> placed;
    placed.reserve(m_.size());
    std::function<void(Op *)> emit = [&](Op *op) {
      if (auto it = placeBefore_.find(op); it != placeBefore_.end())
        for (Op *r : it->second)
          emit(r);
      placed.push_back(op);
    };
    for (Op *op : order)
      emit(op);
    m_.reorder(placed);
  }

  // --- weights: sharded backwards from their use ---

  // The value to use where `w` is needed with sharding `want`: `w` itself when it can be given
  // that sharding, else a reshard of it.
  Op *demand(Op *w, const Sharding &want, const Op *before) {
    // Only the first use may choose `w`'s sharding: later uses (the backward pass's, the
    // optimizer's) must not change what earlier ones read.
    bool first = settled_.insert(w).second;
    if (w->type.sharding == want)
      return w;
    if (first && !assigned_.count(w) && assign(w, want))
      return w;
    return reshard(w, want, before);
  }

  // Gives weight-only `w` (not yet assigned) sharding `want`, demanding what that needs of its
  // operands. Returns false (leaving `w` as it was) when the rules do not allow it.
  bool assign(Op *w, const Sharding &want) {
    ir::TensorType wanted = w->type;
    wanted.sharding = want;
    if (ir::checkType(wanted, m_.mesh))
      return false;
    std::vector<std::optional<Sharding>> needs;
    if (!operandShardings(*w, want, needs))
      return false;
    for (size_t i = 0; i < w->operands.size(); ++i)
      if (needs[i])
        w->operands[i] = demand(w->operand(i), *needs[i], w);
    ir::TensorType before = w->type;
    w->type = wanted;
    Expected<ir::TensorType> t = ir::inferType(*w, m_.mesh);
    if (!t || !(*t == wanted)) {
      w->type = before;
      return false;
    }
    assigned_.insert(w);
    return true;
  }

  // What the operands of weight-only `w` must be for `w` to come out as `want`.
  bool operandShardings(const Op &w, const Sharding &want,
                        std::vector<std::optional<Sharding>> &needs) const {
    needs.assign(w.operands.size(), std::nullopt);
    const ir::Shape &out = w.shape();
    switch (w.kind) {
    case OpKind::Param:
    case OpKind::Fill:
      return true;
    case OpKind::Transpose: {
      const auto &perm = w.attrs.getInts("perm");
      Sharding s = Sharding::replicated(out.size());
      s.partial = want.partial;
      for (size_t d = 0; d < perm.size(); ++d)
        s.dims[static_cast<size_t>(perm[d])] = want.dims[d];
      needs[0] = s;
      return true;
    }
    case OpKind::Reshape: {
      const ir::Shape &in = w.operand(0)->shape();
      Sharding s = Sharding::replicated(in.size());
      s.partial = want.partial;
      for (const ir::ReshapeGroup &g : ir::reshapeGroups(in, out)) {
        size_t firstOut = g.outBegin, firstIn = g.inBegin;
        while (firstOut + 1 < g.outEnd && out[firstOut] == 1)
          ++firstOut;
        while (firstIn + 1 < g.inEnd && in[firstIn] == 1)
          ++firstIn;
        for (size_t d = g.outBegin; d < g.outEnd; ++d) {
          if (want.dims[d].axis == kNoAxis)
            continue;
          if (d != firstOut || firstIn >= g.inEnd)
            return false;
          s.dims[firstIn] = want.dims[d];
        }
      }
      needs[0] = s;
      return true;
    }
    case OpKind::Concat:
    case OpKind::Slice: {
      int64_t axis = w.attrs.getInt("axis");
      if (want.dims[static_cast<size_t>(axis)].axis != kNoAxis)
        return false;
      for (auto &n : needs)
        n = want;
      return true;
    }
    case OpKind::Add:
    case OpKind::Mul:
    case OpKind::Broadcast:
      return alignedShardings(w, want, needs);
    case OpKind::MatMul: {
      // Weight-only products (the MAP head's query of its probe): no sums across devices.
      const Op &a = *w.operand(0), &b = *w.operand(1);
      bool tb = w.attrs.getBool("transpose_b");
      if (want.partial)
        return false;
      size_t ra = a.type.rank(), rb = b.type.rank();
      Sharding sa = Sharding::replicated(ra), sb = Sharding::replicated(rb);
      for (size_t d = 0; d + 1 < out.size(); ++d)
        sa.dims[d] = want.dims[d];
      sb.dims[tb ? rb - 2 : rb - 1] = want.dims.back();
      if (rb == ra)
        for (size_t d = 0; d + 2 < rb; ++d)
          sb.dims[d] = want.dims[d];
      needs[0] = sa;
      needs[1] = sb;
      return true;
    }
    default:
      // Other elementwise ops (AdamW's beta1 * m of its state) follow their operands alike, so
      // that optimizer state takes the sharding its update asks of it.
      return w.info().has(ir::kElementwise) && alignedShardings(w, want, needs);
    }
  }

  // The operands of a broadcasting op `w`, aligned on the right: the dimensions they share with
  // the result as `want` has them, broadcast ones whole.
  static bool alignedShardings(const Op &w, const Sharding &want,
                               std::vector<std::optional<Sharding>> &needs) {
    const ir::Shape &out = w.shape();
    for (size_t i = 0; i < w.operands.size(); ++i) {
      const ir::Shape &in = w.operand(i)->shape();
      Sharding s = Sharding::replicated(in.size());
      for (size_t d = 0; d < in.size(); ++d) {
        size_t od = out.size() - in.size() + d;
        if (in[d] == out[od])
          s.dims[d] = want.dims[od];
        else if (want.dims[od].axis != kNoAxis)
          return false;
      }
      needs[i] = s;
    }
    return true;
  }

  // --- activations ---

  Op *reshard(Op *x, const Sharding &want, const Op *before) {
    if (x->type.sharding == want)
      return x;
    // Created at the end and put before `before` when the pass is done: inserting in the middle of
    // the program once per reshard made deep models quadratic.
    ir::Builder b(m_);
    b.setLoc(x->loc);
    ir::TensorType t = x->type;
    t.sharding = want;
    ++reshards_;
    Op *r = b.create(OpKind::Reshard, {x}, {}, x->name + ".rs", t);
    placeBefore_[before].push_back(r);
    if (weightOnly_.count(x))
      weightOnly_.insert(r);
    return r;
  }

  // `x` with only its batch split kept (batchOnly), for `user`: one reshard for every op that
  // falls back to it (a backward pass reads an activation's gradient in several such ops).
  Op *gathered(Op *x, const Op *user) {
    Sharding want = batchOnly(*x);
    if (x->type.sharding == want)
      return x;
    for (Op *r : gathered_[x])
      if (r->type.sharding == want)
        return r;
    Op *r = reshard(x, want, user);
    gathered_[x].push_back(r);
    return r;
  }

  // The sharding of `x` with its batch split kept and everything else whole and summed.
  Sharding batchOnly(const Op &x) const {
    Sharding s = Sharding::replicated(x.type.rank());
    if (data_ >= 0 && x.rank() > 0 && x.type.sharding.dimAxis(0) == data_)
      s.dims[0] = DimSharding{data_, 0};
    return s;
  }

  // The sharding of `x` with the model axis dropped (all-gathered, summed).
  Sharding withoutModel(const Op &x) const {
    return model_ < 0 ? x.type.sharding : withoutAxis(x.type.sharding, model_);
  }

  // Where the residual stream lives: tokens split over the model axis under the tokens layout.
  Sharding residual(const Sharding &s, const ir::Shape &shape) const {
    Sharding r = model_ < 0 ? s : withoutAxis(s, model_);
    if (model_ >= 0 && layout_.activations == Layout::Activations::Tokens && shape.size() >= 3 &&
        shape[1] % k_ == 0 && r.dims[1].axis == kNoAxis)
      r.dims[1] = DimSharding{model_, 0};
    return r;
  }

  // Replaces operand i of `op` by a reshard of it to `want` (weights by demand).
  void require(Op *op, size_t i, const Sharding &want) {
    Op *x = op->operand(i);
    op->operands[i] = weightOnly_.count(x) ? demand(x, want, op) : reshard(x, want, op);
  }

  Status retype(Op *op) {
    Expected<ir::TensorType> t = ir::inferType(*op, m_.mesh);
    if (!t)
      return t.error();
    op->type = *t;
    return Status::ok();
  }

  // Whether a projection's output reaches another projection's contracted features through
  // feature-preserving ops (bias, GELU, scaling, slices, head reshapes, attention): Megatron's
  // column/row pair.
  bool feedsProjection(const Op *mm) const {
    // The users as the pass found them: the walk goes forward from the op being visited, through
    // ops not visited yet, whose operands are still those.
    const ir::UserMap &users = users_;
    std::vector<const Op *> stack{mm};
    std::unordered_set<const Op *> seen;
    while (!stack.empty()) {
      const Op *v = stack.back();
      stack.pop_back();
      if (!seen.insert(v).second)
        continue;
      auto it = users.find(v);
      if (it == users.end())
        continue;
      for (const Op *u : it->second) {
        bool weightRhs = u->operands.size() > 1 && weightOnly_.count(u->operand(1));
        switch (u->kind) {
        case OpKind::MatMul:
          if (weightRhs && u->operand(0) == v)
            return true;
          if (!weightRhs)
            stack.push_back(u); // attention scores and values
          break;
        case OpKind::Add:
        case OpKind::Mul: {
          const Op *other = u->operand(0) == v ? u->operand(1) : u->operand(0);
          if (weightOnly_.count(other))
            stack.push_back(u); // a bias
          break;
        }
        case OpKind::LayerNorm:
          if (u->rank() >= 4)
            stack.push_back(u); // QK-normalization of split heads
          break;
        case OpKind::Gelu:
        case OpKind::Scale:
        case OpKind::Softmax:
        case OpKind::Slice:
        case OpKind::Reshape:
        case OpKind::Transpose:
        case OpKind::Concat:
        case OpKind::Attention:
          stack.push_back(u);
          break;
        default:
          break;
        }
      }
    }
    return false;
  }

  // A product of two activations (attention's, and the backward pass's weight gradients).
  Status visitActivationMatMul(Op *op) {
    // dW = dYᵀ A of a model-parallel layer can have both free dimensions split over the model
    // axis (dY along the outputs, A along the inputs; the rule allows it for collective-matmul's
    // ring steps, whose blocks rotate): the left one is gathered, which leaves the gradient split
    // as the row-parallel weight it belongs to is.
    Op *a = op->operand(0), *b = op->operand(1);
    bool tb = op->attrs.getBool("transpose_b");
    // A product over the batch split over the data axis on one side only (a weight gradient whose
    // other factor was computed from weights alone, as the query of an exported MAP head's probe
    // expanded over the batch): the whole side is split alike, a local slice, and the product is
    // a partial sum over the data axis that the gradient's reduction completes.
    size_t ak = a->rank() - 1, bk = tb ? b->rank() - 1 : b->rank() - 2;
    int aData = a->type.sharding.dimAxis(ak), bData = b->type.sharding.dimAxis(bk);
    if (data_ >= 0 && aData != bData && (aData == data_ || bData == data_) &&
        (aData == kNoAxis || bData == kNoAxis)) {
      size_t whole = aData == kNoAxis ? 0 : 1;
      Op *w = op->operand(whole);
      if (!w->type.sharding.isPartial(data_)) {
        Sharding s = w->type.sharding;
        s.dims[whole == 0 ? ak : bk] = DimSharding{data_, 0};
        require(op, whole, s);
      }
    }
    a = op->operand(0);
    b = op->operand(1);
    size_t bn = tb ? b->rank() - 2 : b->rank() - 1;
    int axis = b->type.sharding.dimAxis(bn);
    if (axis != kNoAxis) {
      Sharding s = a->type.sharding;
      bool changed = false;
      for (size_t d = 0; d + 1 < a->type.rank(); ++d)
        if (s.dims[d].axis == axis) {
          s.dims[d] = DimSharding{};
          changed = true;
        }
      if (changed)
        require(op, 0, s);
    }
    if (retype(op))
      return Status::ok();
    return visitGeneric(op);
  }

  Status visitMatMul(Op *op) {
    Op *x = op->operand(0), *w = op->operand(1);
    if (!weightOnly_.count(w) || w->rank() != 2)
      return visitActivationMatMul(op);
    bool tb = op->attrs.getBool("transpose_b");
    size_t nDim = tb ? 0 : 1, kDim = tb ? 1 : 0;
    int64_t n = w->shape()[nDim];
    Sharding ws = Sharding::replicated(2);
    // A weight used again (the backward pass's dX = dY W) keeps the split its first use gave it:
    // the activation adapts, so that a column-parallel weight's backward is row-parallel and the
    // reverse (Megatron's backward), and the weight is never gathered for it.
    int weightModelDim = -1;
    if (model_ >= 0 && settled_.count(w))
      for (int d = 0; d < 2; ++d)
        if (w->type.sharding.dimAxis(static_cast<size_t>(d)) == model_)
          weightModelDim = d;
    if (weightModelDim == static_cast<int>(kDim)) {
      Sharding s = withoutAxis(x->type.sharding, model_);
      s.dims.back() = DimSharding{model_, 0};
      require(op, 0, s);
      ws.dims[kDim] = DimSharding{model_, 0};
      ++rows_;
    } else if (weightModelDim == static_cast<int>(nDim)) {
      require(op, 0, withoutModel(*x));
      ws.dims[nDim] = DimSharding{model_, 0};
      ++columns_;
    } else if (model_ >= 0 && x->type.sharding.dimAxis(x->rank() - 1) == model_ &&
               !x->type.sharding.isPartial(model_)) {
      // Row-parallel: the input's features are split; each device sums its share.
      ws.dims[kDim] = x->type.sharding.dims.back();
      ++rows_;
    } else if (model_ >= 0 && n % k_ == 0 && feedsProjection(op)) {
      // Column-parallel: every device needs every token, and computes its share of features.
      require(op, 0, withoutModel(*x));
      ws.dims[nDim] = DimSharding{model_, 0};
      ++columns_;
    } else if (model_ >= 0 && layout_.activations == Layout::Activations::Tokens &&
               x->rank() >= 3 && !usesAxis(x->type.sharding, model_) && x->shape()[1] % k_ == 0) {
      // Token-parallel: a projection into the residual stream (the patch embedding).
      require(op, 0, residual(x->type.sharding, x->shape()));
      ++tokenParallel_;
    } else {
      require(op, 0, withoutModel(*op->operand(0)));
      // A product over a dimension split over another axis (the batch, in the backward of a
      // product with a broadcast weight): the weight is split alike and each device owes its
      // partial sum.
      int contracted = op->operand(0)->type.sharding.dimAxis(op->operand(0)->rank() - 1);
      if (contracted != kNoAxis)
        ws.dims[kDim] = DimSharding{contracted, 0};
    }
    op->operands[1] = weightWithDataSplit(op, ws, nDim);
    return retype(op);
  }

  // The weight operand with sharding `use`; with params_over_data, stored split over the data
  // axis too and gathered before use.
  Op *weightWithDataSplit(Op *op, const Sharding &use, size_t nDim) {
    Op *w = op->operand(1);
    if (!layout_.paramsOverData || data_ < 0 ||
        w->type.numel() * 4 < layout_.paramsOverDataMinBytes)
      return demand(w, use, op);
    Sharding stored = use;
    size_t other = use.dims[nDim].axis == kNoAxis ? nDim : 1 - nDim;
    if (stored.dims[other].axis == kNoAxis && w->shape()[other] % m_.mesh.axisSize(data_) == 0)
      stored.dims[other] = DimSharding{data_, 0};
    Op *kept = demand(w, stored, op);
    return reshard(kept, use, op);
  }

  Status visitBinary(Op *op) {
    Op *a = op->operand(0), *b = op->operand(1);
    bool wa = weightOnly_.count(a), wb = weightOnly_.count(b);
    if (wa || wb) {
      // A bias or an embedding: the weight follows the activation.
      size_t xi = wa ? 1 : 0;
      Op *x = op->operand(xi);
      if ((op->is(OpKind::Add) || op->is(OpKind::Sub)) && model_ >= 0 &&
          x->type.sharding.isPartial(model_))
        require(op, xi, residual(x->type.sharding, x->shape()));
      x = op->operand(xi);
      Op *w = op->operand(1 - xi);
      Sharding s = Sharding::replicated(w->type.rank());
      if (w->type.rank() > x->type.rank()) {
        // A weight scaled by a smaller activation (weight decay's factor): it keeps its sharding.
        s = withoutPartial(w->type.sharding);
      } else {
        for (size_t d = 0; d < w->type.rank(); ++d) {
          size_t xd = x->type.rank() - w->type.rank() + d;
          if (w->shape()[d] == x->shape()[xd])
            s.dims[d] = x->type.sharding.dims[xd];
        }
      }
      require(op, 1 - xi, s);
      if (retype(op))
        return Status::ok();
      return visitGeneric(op);
    }
    const Sharding sa = a->type.sharding, sb = b->type.sharding;
    if (a->type.shape == b->type.shape && !(sa == sb)) {
      bool pa = model_ >= 0 && sa.isPartial(model_), pb = model_ >= 0 && sb.isPartial(model_);
      Sharding wholeA = withoutPartial(sa), wholeB = withoutPartial(sb);
      bool sum = op->is(OpKind::Add) || op->is(OpKind::Sub);
      if (sum && (pa || pb) && !(pa && pb)) {
        // A residual add (or difference) of an out-projection's partial sum: both into the
        // residual layout.
        Sharding target = residual(pa ? sb : sa, a->shape());
        require(op, 0, target);
        require(op, 1, target);
      } else if (sum || op->is(OpKind::Maximum)) {
        // Partial sums owed over different axes are reduced before they meet.
        require(op, 0, wholeA);
        require(op, 1, wholeA);
      } else if (op->is(OpKind::Mul) && !sa.partial && sb.partial) {
        // A product is linear in each factor: the partial one stays partial, the other is whole.
        require(op, 0, wholeB);
      } else {
        // A product or a quotient of a partial numerator: the other operand whole, laid out alike.
        require(op, 1, wholeA);
      }
    }
    if (retype(op))
      return Status::ok();
    return visitGeneric(op);
  }

  // Ops that need their last dimension whole and their values summed.
  Status visitLastDim(Op *op) {
    Op *x = op->operand(0);
    Sharding s = x->type.sharding;
    if (model_ >= 0 && (s.isPartial(model_) || s.dimAxis(x->rank() - 1) != kNoAxis)) {
      s = residual(s, x->shape());
      if (s.dimAxis(x->rank() - 1) != kNoAxis)
        s.dims.back() = DimSharding{};
      require(op, 0, s);
    }
    for (size_t i = 1; i < op->operands.size(); ++i)
      require(op, i, Sharding::replicated(op->operand(i)->type.rank()));
    if (retype(op))
      return Status::ok();
    return visitGeneric(op);
  }

  // layer_norm_grad(x, scale, dy): x and dy laid out alike with the normalized dimension whole,
  // dy summed; the scale whole.
  Status visitLayerNormGrad(Op *op) {
    Op *x = op->operand(0);
    Sharding s = withoutPartial(x->type.sharding);
    if (model_ >= 0 && s.dimAxis(x->rank() - 1) != kNoAxis) {
      s = residual(s, x->shape());
      s.dims.back() = DimSharding{};
    }
    require(op, 0, s);
    require(op, 2, s);
    require(op, 1, Sharding::replicated(op->operand(1)->type.rank()));
    if (retype(op))
      return Status::ok();
    return visitGeneric(op);
  }

  // Ops of two operands of one type (gelu_grad, softmax_grad, the losses' logits and labels): the
  // second laid out as the first, both summed; softmax_grad and the losses work along the last
  // dimension, which stays whole.
  Status visitPaired(Op *op, bool lastDimWhole) {
    Op *x = op->operand(0);
    Sharding s = withoutPartial(x->type.sharding);
    if (lastDimWhole && x->rank() > 0)
      s.dims.back() = DimSharding{};
    require(op, 0, s);
    require(op, 1, s);
    if (retype(op))
      return Status::ok();
    return visitGeneric(op);
  }

  // Anything else: run on the given shardings if the op's rule allows it; otherwise gather
  // everything but the batch.
  Status visitGeneric(Op *op) {
    // Weight operands take the sharding of an activation operand of the same shape.
    const Op *activation = nullptr;
    for (const Op *o : op->operands)
      if (!weightOnly_.count(o))
        activation = activation ? activation : o;
    for (size_t i = 0; i < op->operands.size(); ++i) {
      Op *o = op->operand(i);
      if (!weightOnly_.count(o) || !activation)
        continue;
      Sharding s = activation->rank() == o->rank() ? activation->type.sharding
                                                   : Sharding::replicated(o->type.rank());
      if (op->is(OpKind::Concat))
        s.dims[static_cast<size_t>(op->attrs.getInt("axis"))] = DimSharding{};
      s.partial = 0;
      require(op, i, s);
    }
    if (retype(op))
      return Status::ok();
    // Fall back to splitting the batch only; weights of the activation's rank follow its batch.
    std::optional<Sharding> batch;
    for (const Op *o : op->operands)
      if (!weightOnly_.count(o) && !batch)
        batch = batchOnly(*o);
    for (size_t i = 0; i < op->operands.size(); ++i) {
      Op *o = op->operand(i);
      if (!weightOnly_.count(o))
        op->operands[i] = gathered(o, op);
      else if (batch && batch->dims.size() == o->type.rank())
        require(op, i, *batch);
      else
        require(op, i, Sharding::replicated(o->type.rank()));
    }
    return retype(op);
  }

  // Outputs are whole sums; a param's next value has exactly its param's sharding, so that a
  // runtime can keep it on the devices as the param of the next step.
  void visitOutput(Op *op) {
    for (size_t i = 0; i < op->operands.size(); ++i) {
      Op *x = op->operand(i);
      if (auto it = updateParamAt_.find(i); it != updateParamAt_.end()) {
        op->operands[i] = reshard(x, it->second->type.sharding, op);
        continue;
      }
      Sharding whole = x->type.sharding;
      whole.partial = 0;
      if (x->type.sharding.partial)
        op->operands[i] = reshard(x, whole, op);
    }
  }

  Status visit(Op *op) {
    switch (op->kind) {
    case OpKind::Input: {
      if (data_ >= 0 && op->rank() > 0)
        op->type.sharding.dims[0] = DimSharding{data_, 0};
      return Status::ok();
    }
    case OpKind::MatMul:
      return visitMatMul(op);
    case OpKind::Add:
    case OpKind::Mul:
    case OpKind::Sub:
    case OpKind::Div:
    case OpKind::Maximum:
      return visitBinary(op);
    case OpKind::LayerNorm:
    case OpKind::Softmax:
      return visitLastDim(op);
    case OpKind::LayerNormGrad:
      return visitLayerNormGrad(op);
    case OpKind::GeluGrad:
      return visitPaired(op, false);
    case OpKind::SoftmaxGrad:
    case OpKind::SoftmaxCrossEntropy:
    case OpKind::SigmoidCrossEntropy:
      return visitPaired(op, true);
    // Nonlinear in their operand: a partial sum is reduced first.
    case OpKind::Sqrt:
    case OpKind::Sigmoid:
    case OpKind::Gelu: {
      Op *x = op->operand(0);
      if (model_ >= 0 && x->type.sharding.isPartial(model_))
        require(op, 0, residual(x->type.sharding, x->shape()));
      return retype(op);
    }
    default:
      return visitGeneric(op);
    }
  }

  ir::Module &m_;
  PassContext &ctx_;
  const Layout &layout_;
  int data_, model_;
  int64_t k_ = 1;
  std::unordered_set<const Op *> weightOnly_;
  std::unordered_set<const Op *> assigned_;
  ir::UserMap users_;
  std::unordered_map<const Op *, std::vector<Op *>> placeBefore_;
  std::unordered_map<const Op *, std::vector<const Op *>> homes_; // value -> params it updates
  std::unordered_map<size_t, const Op *> updateParamAt_; // output operand -> the param it updates
  std::unordered_set<const Op *> settled_;
  std::unordered_map<const Op *, std::vector<Op *>> gathered_; // an activation's batch-only copies
  int columns_ = 0, rows_ = 0, tokenParallel_ = 0, reshards_ = 0;
  int gradientsReduced_ = 0, gradientsScattered_ = 0;
};

class PropagateSharding : public Pass {
public:
  std::string_view name() const override { return "propagate-sharding"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    if (m.mesh.numDevices() == 1)
      return false;
    // Already sharded (IR text compiled again): the shardings are the user's.
    for (const auto &op : m.ops())
      if (op->hasResult() && !op->type.sharding.isReplicated())
        return false;
    Propagator p(m, ctx);
    VITC_TRY(p.run());
    m.topologicalSort();
    return true;
  }
};

} // namespace

std::unique_ptr<Pass> createPropagateSharding() { return std::make_unique<PropagateSharding>(); }

} // namespace vitc::passes
