// The fuse-elementwise pass.
#include "passes/fuse_elementwise.h"

#include <unordered_set>

#include "ir/builder.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

class Fuser {
public:
  explicit Fuser(ir::Module &m) : m_(m) { refresh(); }

  void refresh() {
    users_ = m_.users();
    weightOnly_ = ir::weightOnlyOps(m_);
  }

  Op *soleUser(const Op *op) const {
    auto it = users_.find(op);
    return it != users_.end() && it->second.size() == 1 ? it->second[0] : nullptr;
  }

  bool isPerm0213(const Op *op) const {
    return op->is(OpKind::Transpose) &&
           op->attrs.getInts("perm") == std::vector<int64_t>{0, 2, 1, 3};
  }

  // [B, T, D] -> reshape [B, T, H, dh] -> transpose [B, H, T, dh]: returns the [B, T, D] value.
  Op *headSplitSource(Op *op) const {
    if (!isPerm0213(op) || soleUser(op) == nullptr)
      return nullptr;
    Op *r = op->operand(0);
    if (!r->is(OpKind::Reshape) || soleUser(r) != op || r->rank() != 4)
      return nullptr;
    // The source is [B, T, D], or [B, T, groups, D/groups] when the fused projection it was
    // sliced from is interleaved for the model axis (canonicalize folds the reshapes between).
    Op *src = r->operand(0);
    if (src->rank() < 3 || src->shape()[0] != r->shape()[0] || src->shape()[1] != r->shape()[1])
      return nullptr;
    return src;
  }

  // Rewrites one projection chain starting at matmul `mm`; returns whether it did.
  bool fuseLinear(Op *mm) {
    if (!mm->is(OpKind::MatMul) || !weightOnly_.count(mm->operand(1)) ||
        mm->operand(1)->rank() != 2)
      return false;
    Op *last = mm;
    Op *bias = nullptr, *residual = nullptr;
    bool gelu = false, geluApprox = false;
    int folded = 0;
    if (Op *u = soleUser(last); u && u->is(OpKind::Add) && u->type == last->type) {
      Op *other = u->operand(0) == last ? u->operand(1) : u->operand(0);
      if (other != last && weightOnly_.count(other) && other->rank() == 1) {
        bias = other;
        last = u;
        ++folded;
      }
    }
    if (Op *u = soleUser(last); u && u->is(OpKind::Gelu)) {
      gelu = true;
      geluApprox = u->attrs.getBool("approximate");
      last = u;
      ++folded;
    }
    if (Op *u = soleUser(last); u && u->is(OpKind::Add) && u->type == last->type) {
      Op *other = u->operand(0) == last ? u->operand(1) : u->operand(0);
      // A residual that arrives by an asynchronous collective stays a separate add: folding it
      // would make the matmul wait for the communication it is meant to hide.
      if (other != last && other->type == last->type && !other->info().has(ir::kAsyncDone)) {
        residual = other;
        last = u;
        ++folded;
      }
    }
    if (folded == 0)
      return false; // a bare matmul stays a matmul
    ir::Attrs attrs;
    if (mm->attrs.getBool("transpose_b"))
      attrs.set("transpose_b", true);
    std::vector<Op *> operands{mm->operand(0), mm->operand(1)};
    if (bias) {
      attrs.set("bias", true);
      operands.push_back(bias);
    }
    if (gelu) {
      attrs.set("gelu", true);
      if (geluApprox)
        attrs.set("gelu_approximate", true);
    }
    if (residual) {
      attrs.set("residual", true);
      operands.push_back(residual);
    }
    ir::Builder b(m_);
    b.setInsertionPoint(last);
    b.setLoc(last->loc);
    Expected<Op *> fused = b.tryCreate(OpKind::FusedLinear, operands, attrs, last->name + ".fused");
    if (!fused || !((*fused)->type == last->type)) {
      if (fused)
        m_.erase(*fused);
      return false;
    }
    replace(last, *fused);
    return true;
  }

  // Rewrites the attention ending at `merged` (the head-merging reshape); returns whether it did.
  bool fuseAttention(Op *merged) {
    // The head merge: [B, T, H, dh] back to [B, T, D] (or straight to the [B, T, groups,
    // D/groups] an interleaved fused projection reads, when canonicalize folded the two).
    if (!merged->is(OpKind::Reshape) || merged->rank() < 3)
      return false;
    Op *bthd = merged->operand(0);
    if (!isPerm0213(bthd) || soleUser(bthd) != merged)
      return false;
    Op *context = bthd->operand(0);
    if (!context->is(OpKind::MatMul) || context->attrs.getBool("transpose_b") ||
        soleUser(context) != bthd)
      return false;
    Op *probs = context->operand(0), *vh = context->operand(1);
    if (!probs->is(OpKind::Softmax) || soleUser(probs) != context)
      return false;
    Op *scores = probs->operand(0);
    Op *scoresUser = probs;
    double scale = 1.0;
    if (scores->is(OpKind::Scale) && soleUser(scores) == probs) {
      scale = scores->attrs.getFloat("factor");
      scoresUser = scores;
      scores = scores->operand(0);
    }
    if (!scores->is(OpKind::MatMul) || !scores->attrs.getBool("transpose_b") ||
        soleUser(scores) != scoresUser)
      return false;
    Op *qn = scores->operand(0), *kn = scores->operand(1);
    // QK-normalization on both or on neither.
    Op *qNorm = qn->is(OpKind::LayerNorm) && soleUser(qn) == scores ? qn : nullptr;
    Op *kNorm = kn->is(OpKind::LayerNorm) && soleUser(kn) == scores ? kn : nullptr;
    if ((qNorm == nullptr) != (kNorm == nullptr))
      return false;
    if (qNorm && (qNorm->operands.size() != kNorm->operands.size() ||
                  qNorm->attrs.getFloat("eps") != kNorm->attrs.getFloat("eps")))
      return false;
    Op *qh = qNorm ? qNorm->operand(0) : qn;
    Op *kh = kNorm ? kNorm->operand(0) : kn;
    Op *q = headSplitSource(qh), *k = headSplitSource(kh), *v = headSplitSource(vh);
    if (!q || !k || !v || soleUser(vh) != context)
      return false;
    int64_t heads = qh->shape()[1];
    if (merged->shape()[0] != q->shape()[0] || merged->shape()[1] != q->shape()[1] ||
        numElements(merged->shape()) != numElements(q->shape()) || kh->shape()[1] != heads ||
        vh->shape()[1] != heads)
      return false;
    ir::Builder b(m_);
    b.setInsertionPoint(merged);
    b.setLoc(merged->loc);
    std::vector<Op *> operands;
    for (Op *x : {q, k, v}) {
      if (x->rank() == 3) {
        operands.push_back(x);
        continue;
      }
      Expected<Op *> flat = b.tryCreate(
          OpKind::Reshape, {x}, {}, x->name + ".tokens",
          ir::TensorType::of({x->shape()[0], x->shape()[1],
                              numElements(x->shape()) / (x->shape()[0] * x->shape()[1])}));
      if (!flat)
        return false;
      operands.push_back(*flat);
    }
    ir::Attrs attrs{{"heads", heads}, {"scale", scale}};
    if (qNorm) {
      attrs.set("qk_norm", true);
      attrs.set("eps", qNorm->attrs.getFloat("eps"));
      bool bias = qNorm->operands.size() > 2;
      if (bias)
        attrs.set("norm_bias", true);
      for (Op *norm : {qNorm, kNorm})
        for (size_t i = 1; i < norm->operands.size(); ++i)
          operands.push_back(norm->operand(i));
    }
    Expected<Op *> fused = b.tryCreate(OpKind::Attention, operands, attrs, merged->name + ".fused");
    if (fused && merged->rank() != 3)
      fused = b.tryCreate(OpKind::Reshape, {*fused}, {}, merged->name + ".split",
                          ir::TensorType::of(merged->shape()));
    if (!fused || !((*fused)->type == merged->type)) {
      ir::eraseDeadOps(m_); // whatever was created on the way
      return false;
    }
    replace(merged, *fused);
    return true;
  }

private:
  // Points users of `last` at `fused` and lets it take over the name; what was folded is dead
  // then and goes.
  void replace(Op *last, Op *fused) {
    m_.replaceAllUsesWith(last, fused);
    std::string name = last->name;
    ir::eraseDeadOps(m_);
    m_.rename(fused, name);
  }

  ir::Module &m_;
  ir::UserMap users_;
  std::unordered_set<const Op *> weightOnly_;
};

class FuseElementwise : public Pass {
public:
  std::string_view name() const override { return "fuse-elementwise"; }
  Expected<bool> run(ir::Module &m, PassContext &ctx) override {
    Fuser f(m);
    int linears = 0, attentions = 0;
    // Attention first: its matmuls must not be taken for projections.
    for (bool again = true; again;) {
      again = false;
      for (const auto &op : m.ops())
        if (f.fuseAttention(op.get())) {
          ++attentions;
          f.refresh();
          again = true;
          break;
        }
    }
    for (bool again = true; again;) {
      again = false;
      for (const auto &op : m.ops())
        if (f.fuseLinear(op.get())) {
          ++linears;
          f.refresh();
          again = true;
          break;
        }
    }
    if (linears + attentions > 0)
      ctx.remark(
          fmt::format("fuse-elementwise: {} fused_linear, {} attention", linears, attentions));
    return linears + attentions > 0;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseElementwise() { return std::make_unique<FuseElementwise>(); }

} // namespace vitc::passes
