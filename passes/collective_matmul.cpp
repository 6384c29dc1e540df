// The collective-matmul pass.
#include "passes/collective_matmul.h"

#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "passes/deferred_edits.h"
#include "passes/layout.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// Rings are built with the module's users computed once and kept up to date as ops are created and
// erased; new ops are created at the end of the module and put before the op they replace when all
// rings are built, and replaced ops leave then. (Recomputing the users, erasing and inserting in
// the middle of the program once per ring made a deep sharded model quadratic: a depth-512 model
// took 27 s here.)
class Ring {
public:
  Ring(ir::Module &m, PassContext &ctx)
      : m_(m), ctx_(ctx), weightOnly_(ir::weightOnlyOps(m)), users_(m.users()), oldSize_(m.size()) {
  }

  const ir::UserMap &users() const { return users_; }

  // Puts the new ops in place and drops the replaced ones.
  void finishAll() {
    placeAndErase(m_, oldSize_, before_, erased_);
  }

  // Why the all_gather `g` cannot become a ring, or "" if it can.
  std::string allGatherVeto(const Op &g, const ir::UserMap &users) const {
    auto it = users.find(&g);
    if (it == users.end() || it->second.size() != 1)
      return fmt::format("its result has {} users; a ring feeds one matmul",
                         it == users.end() ? 0 : it->second.size());
    const Op &mm = *it->second[0];
    if (!mm.is(OpKind::MatMul) || mm.operand(0) != &g)
      return fmt::format("it feeds {} %{}, not the left side of a matmul", mm.keyword(), mm.name);
    if (mm.operand(1)->rank() != 2)
      return "the matmul's right side is not a matrix";
    if (g.attrs.getInt("dim") >= g.rank() - 1)
      return "it gathers the contracted dimension";
    if (g.operand(0)->type.sharding.dims[static_cast<size_t>(g.attrs.getInt("dim"))].rotation)
      return "its operand is already rotated";
    return "";
  }

  // Why the reduce_scatter `r` cannot become a ring, or "" if it can.
  std::string reduceScatterVeto(const Op &r, const ir::UserMap &users) const {
    const Op &mm = *r.operand(0);
    if (!mm.is(OpKind::MatMul))
      return fmt::format("it reduces {} %{}, not a matmul", mm.keyword(), mm.name);
    auto it = users.find(&mm);
    if (it == users.end() || it->second.size() != 1)
      return "the matmul's result has other users";
    if (mm.operand(1)->rank() != 2)
      return "the matmul's right side is not a matrix";
    if (r.attrs.getInt("dim") >= r.rank() - 1)
      return "it scatters the output features";
    if (mm.operand(0)->type.sharding.partial)
      return "the matmul's input is itself a partial sum";
    return "";
  }

  void allGatherRing(Op *g) {
    Op *mm = users_.at(g)[0];
    size_t created = m_.size();
    std::string axis(g->meshAxisName());
    int64_t k = m_.mesh.axisSize(m_.mesh.axisIndex(axis));
    ir::Builder b(m_);
    b.setLoc(mm->loc);
    bool tb = mm->attrs.getBool("transpose_b");
    Op *chunk = g->operand(0);
    std::vector<Op *> parts;
    for (int64_t s = 0; s < k; ++s) {
      if (s > 0)
        chunk = b.create(OpKind::CollectivePermute, {chunk},
                         {{"mesh_axis", axis}, {"shift", int64_t{-1}}},
                         fmt::format("{}.ring{}", g->name, s));
      parts.push_back(b.matmul(chunk, mm->operand(1), tb, fmt::format("{}.step{}", mm->name, s)));
    }
    Op *joined =
        b.create(OpKind::RingConcat, parts, {{"mesh_axis", axis}, {"dim", g->attrs.getInt("dim")}},
                 mm->name + ".ring");
    ctx_.remark(fmt::format("all_gather %{} -> {}-step ring into %{}", g->name, k, mm->name));
    finish(mm, joined, created); // erases g and mm
  }

  void reduceScatterRing(Op *r) {
    Op *mm = r->operand(0);
    std::string axis(r->meshAxisName());
    int64_t k = m_.mesh.axisSize(m_.mesh.axisIndex(axis));
    int64_t dim = r->attrs.getInt("dim");
    size_t created = m_.size();
    ir::Builder b(m_);
    b.setLoc(r->loc);
    bool tb = mm->attrs.getBool("transpose_b");
    Op *manual = b.create(OpKind::ToManual, {mm->operand(0)}, {{"mesh_axis", axis}},
                          mm->operand(0)->name + ".manual");
    Op *sum = nullptr;
    for (int64_t s = 0; s < k; ++s) {
      Op *rows = b.create(OpKind::AllSlice, {manual},
                          {{"mesh_axis", axis}, {"dim", dim}, {"rotation", s + 1}},
                          fmt::format("{}.block{}", mm->operand(0)->name, s));
      Op *part = b.matmul(rows, mm->operand(1), tb, fmt::format("{}.step{}", mm->name, s));
      if (!sum) {
        sum = part;
        continue;
      }
      Op *moved =
          b.create(OpKind::CollectivePermute, {sum}, {{"mesh_axis", axis}, {"shift", int64_t{-1}}},
                   fmt::format("{}.ring{}", r->name, s));
      sum = b.add(moved, part, fmt::format("{}.sum{}", r->name, s));
    }
    Op *out =
        b.create(OpKind::FromManual, {sum}, {{"mesh_axis", axis}}, r->name + ".ring", r->type);
    ctx_.remark(fmt::format("reduce_scatter %{} of %{} -> {}-step ring", r->name, mm->name, k));
    finish(r, out, created); // erases r and mm
  }

private:
  // Records the ops created since `created` (to go before `old`), points the users of `old` at
  // `replacement` and erases what is dead then.
  void finish(Op *old, Op *replacement, size_t created) {
    for (size_t i = created; i < m_.size(); ++i) {
      Op *op = m_.ops()[i].get();
      before_[old].push_back(op);
      for (Op *operand : op->operands) {
        std::vector<Op *> &us = users_[operand];
        if (us.empty() || us.back() != op)
          us.push_back(op);
      }
    }
    std::vector<Op *> readers = std::move(users_[old]);
    users_[old].clear();
    std::vector<Op *> &now = users_[replacement];
    for (Op *user : readers) {
      if (user == replacement)
        continue;
      for (Op *&operand : user->operands)
        if (operand == old)
          operand = replacement;
      now.push_back(user);
    }
    erase(old);
    // The replacement takes the name now, as later rings name their ops after their operands;
    // the replaced op holds a name no value can have until it leaves.
    std::string name = old->name;
    m_.rename(old, name + "\x01replaced");
    m_.rename(replacement, name);
  }

  // Erases an op nothing reads, and then whatever only it read.
  void erase(Op *op) { eraseUnread(op, users_, erased_); }

  ir::Module &m_;
  PassContext &ctx_;
  std::unordered_set<const Op *> weightOnly_;
  ir::UserMap users_;
  size_t oldSize_;
  OpsBefore before_;
  std::unordered_set<const Op *> erased_;
};

class CollectiveMatmul : public Pass {
public:
  std::string_view name() const override { return "collective-matmul"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    const Layout &layout = ctx.options.layout;
    std::vector<Op *> gathers, scatters;
    int allReduces = 0;
    for (const auto &op : m.ops()) {
      allReduces += op->is(OpKind::AllReduce);
      if (op->is(OpKind::AllGather))
        gathers.push_back(op.get());
      if (op->is(OpKind::ReduceScatter))
        scatters.push_back(op.get());
    }
    if (gathers.empty() && scatters.empty())
      return false;
    if (!layout.collectiveMatmul) {
      ctx.remark(fmt::format("off in the layout; {} all_gathers and {} "
                             "reduce_scatters stay whole",
                             gathers.size(), scatters.size()));
      return false;
    }
    bool changed = false;
    Ring ring(m, ctx);
    for (Op *g : gathers) {
      std::string veto = ring.allGatherVeto(*g, ring.users());
      if (!veto.empty()) {
        ctx.remark(fmt::format("all_gather %{} not decomposed: {}", g->name, veto));
        continue;
      }
      ring.allGatherRing(g);
      changed = true;
    }
    for (Op *r : scatters) {
      std::string veto = ring.reduceScatterVeto(*r, ring.users());
      if (!veto.empty()) {
        ctx.remark(fmt::format("reduce_scatter %{} not decomposed: {}", r->name, veto));
        continue;
      }
      ring.reduceScatterRing(r);
      changed = true;
    }
    if (allReduces)
      ctx.remark(fmt::format("{} all_reduce(s) not decomposed: an all-reduce "
                             "leaves whole activations, which only a token split lets a ring "
                             "overlap",
                             allReduces));
    if (changed) {
      ring.finishAll();
      ir::eraseDeadOps(m); // dead before the pass, as each ring used to erase them
      m.topologicalSort();
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createCollectiveMatmul() { return std::make_unique<CollectiveMatmul>(); }

} // namespace vitc::passes
