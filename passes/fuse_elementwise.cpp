// The fuse-elementwise pass.
#include "passes/fuse_elementwise.h"

#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "passes/deferred_edits.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// Users and weight-only ops are computed once per round and kept up to date as ops are created and
// erased; new ops are created at the end of the module and put in place (before the op they
// replace) when the round finishes, and erased ops leave it then. Recomputing the users, erasing
// and inserting in the middle of the program once per fusion made a deep model quadratic (a
// depth-512 model took 10 s here).
class Fuser {
public:
  explicit Fuser(ir::Module &m) : m_(m) {}

  // Starts a round over the module as it is now.
  void beginRound() {
    users_ = m_.users();
    weightOnly_ = ir::weightOnlyOps(m_);
    roundStart_ = m_.size();
  }

  bool erased(const Op *op) const { return erased_.count(op) > 0; }

  // Places the round's new ops, drops its erased ones and gives fused ops their names.
  void finishRound() {
    placeAndErase(m_, roundStart_, before_, erased_);
    for (auto &[op, name] : renames_)
      m_.rename(op, name);
    before_.clear();
    erased_.clear();
    renames_.clear();
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
    b.setLoc(last->loc);
    Expected<Op *> fused = b.tryCreate(OpKind::FusedLinear, operands, attrs, last->name + ".fused");
    if (fused)
      added(*fused, last);
    if (!fused || !((*fused)->type == last->type)) {
      if (fused)
        dropNew(*fused);
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
    b.setLoc(merged->loc);
    std::vector<Op *> operands, created;
    // Takes back what this attempt created when it fails.
    auto fail = [&] {
      for (auto it = created.rbegin(); it != created.rend(); ++it)
        dropNew(*it);
      return false;
    };
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
        return fail();
      created.push_back(added(*flat, merged));
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
    if (fused)
      created.push_back(added(*fused, merged));
    if (fused && merged->rank() != 3) {
      fused = b.tryCreate(OpKind::Reshape, {*fused}, {}, merged->name + ".split",
                          ir::TensorType::of(merged->shape()));
      if (fused)
        created.push_back(added(*fused, merged));
    }
    if (!fused || !((*fused)->type == merged->type))
      return fail();
    replace(merged, *fused);
    return true;
  }

private:
  // Records an op just created at the end of the module, to go before `anchor`.
  Op *added(Op *op, Op *anchor) {
    before_[anchor].push_back(op);
    bool allWeights = !op->info().has(ir::kCollective);
    for (Op *operand : op->operands) {
      std::vector<Op *> &us = users_[operand];
      if (us.empty() || us.back() != op)
        us.push_back(op);
      allWeights &= weightOnly_.count(operand) > 0;
    }
    if (allWeights)
      weightOnly_.insert(op);
    return op;
  }

  // Erases an op nothing reads, and then whatever only it read.
  void erase(Op *op) { eraseUnread(op, users_, erased_); }

  // Takes back an op this fuser created that nothing reads (it leaves with the erased ops).
  void dropNew(Op *op) { erase(op); }

  // Points users of `last` at `fused` and lets it take over the name; what was folded is dead
  // then and goes.
  void replace(Op *last, Op *fused) {
    std::vector<Op *> readers = std::move(users_[last]);
    users_[last].clear();
    std::vector<Op *> &now = users_[fused];
    for (Op *user : readers) {
      if (user == fused)
        continue;
      for (Op *&operand : user->operands)
        if (operand == last)
          operand = fused;
      now.push_back(user);
    }
    erase(last);
    renames_.emplace_back(fused, last->name);
  }

  ir::Module &m_;
  ir::UserMap users_;
  std::unordered_set<const Op *> weightOnly_;
  size_t roundStart_ = 0;
  OpsBefore before_;
  std::unordered_set<const Op *> erased_;
  std::vector<std::pair<Op *, std::string>> renames_;
};

class FuseElementwise : public Pass {
public:
  std::string_view name() const override { return "fuse-elementwise"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    Fuser f(m);
    int linears = 0, attentions = 0;
    // Rounds over the program in order until one fuses nothing. Attention first: its matmuls must
    // not be taken for projections.
    auto rounds = [&](auto fuse) {
      int fused = 0;
      for (bool again = true; again;) {
        again = false;
        f.beginRound();
        std::vector<Op *> ops;
        for (const auto &op : m.ops())
          ops.push_back(op.get());
        for (Op *op : ops)
          if (!f.erased(op) && fuse(op)) {
            ++fused;
            again = true;
          }
        f.finishRound();
      }
      return fused;
    };
    attentions = rounds([&](Op *op) { return f.fuseAttention(op); });
    linears = rounds([&](Op *op) { return f.fuseLinear(op); });
    if (linears + attentions > 0)
      ir::eraseDeadOps(m); // dead before the pass, as each fusion used to erase them
    if (linears + attentions > 0)
      ctx.remark(fmt::format("{} fused_linear, {} attention", linears, attentions));
    return linears + attentions > 0;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseElementwise() { return std::make_unique<FuseElementwise>(); }

} // namespace vitc::passes
