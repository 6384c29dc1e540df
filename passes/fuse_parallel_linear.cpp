// The fuse-parallel-linear pass.
#include "passes/fuse_parallel_linear.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "passes/deferred_edits.h"
#include "passes/layout.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// A linear projection: a matmul by a weight, and the add of its bias when there is one.
struct Term {
  Op *matmul = nullptr;
  Op *bias = nullptr;  // a weight-only [N] vector, or nullptr
  Op *value = nullptr; // what the projection's users read: the bias add, or the matmul
  Op *input() const { return matmul->operand(0); }
  Op *weight() const { return matmul->operand(1); }
  bool transposeB() const { return matmul->attrs.getBool("transpose_b"); }
  int64_t outFeatures() const { return matmul->shape().back(); }
};

// What a round of merges reads: users, weight-only ops and program positions, all computed once
// on the module as the round found it. Rounds plan every merge on that snapshot first and rewrite
// afterwards, so that a deep model costs one pass over its ops per round, not one per merge.
class Context {
public:
  explicit Context(ir::Module &m) : m(m), users(m.users()), weightOnly(ir::weightOnlyOps(m)) {
    for (size_t i = 0; i < m.ops().size(); ++i)
      position[m.ops()[i].get()] = i;
  }

  const std::vector<Op *> &usersOf(const Op *op) const {
    static const std::vector<Op *> none;
    auto it = users.find(op);
    return it == users.end() ? none : it->second;
  }

  size_t positionOf(const Op *op) const { return position.at(op); }

  // The projection a matmul starts, if its right operand is a weight matrix.
  std::optional<Term> projection(Op *mm) const {
    if (!mm->is(OpKind::MatMul) || !weightOnly.count(mm->operand(1)) ||
        mm->operand(1)->rank() != 2 || weightOnly.count(mm->operand(0)))
      return std::nullopt;
    Term t{mm, nullptr, mm};
    const auto &us = usersOf(mm);
    if (us.size() != 1 || !us[0]->is(OpKind::Add))
      return t;
    Op *add = us[0];
    Op *other = add->operand(0) == mm ? add->operand(1) : add->operand(0);
    if (other != mm && weightOnly.count(other) && other->rank() == 1 &&
        other->shape()[0] == mm->shape().back() && add->type == mm->type) {
      t.bias = other;
      t.value = add;
    }
    return t;
  }

  // The projection whose value `op` is (its matmul, or its bias add).
  std::optional<Term> projectionOf(Op *op) const {
    if (op->is(OpKind::MatMul))
      return projection(op);
    if (!op->is(OpKind::Add))
      return std::nullopt;
    for (Op *operand : op->operands)
      if (auto t = projection(operand); t && t->value == op)
        return t;
    return std::nullopt;
  }

  // Whether `from` depends on `target` (target is `from` or among its transitive operands). The
  // program order is topological, so ops before `target` cannot depend on it: the search stays
  // between the two.
  bool dependsOn(const Op *from, const Op *target) const {
    size_t floor = positionOf(target);
    std::vector<const Op *> stack{from};
    std::unordered_set<const Op *> seen;
    while (!stack.empty()) {
      const Op *op = stack.back();
      stack.pop_back();
      if (op == target)
        return true;
      if (positionOf(op) < floor || !seen.insert(op).second || weightOnly.count(op))
        continue;
      for (const Op *operand : op->operands)
        stack.push_back(operand);
    }
    return false;
  }

  ir::Module &m;
  ir::UserMap users;
  std::unordered_set<const Op *> weightOnly;
  std::unordered_map<const Op *, size_t> position;
};

// The rewrites of one round. New ops are created at the end of the module and placed before the op
// they replace when the round finishes (inserting each in the middle of the program would cost a
// pass over the module per op); an op replaced earlier in the round is read through `current`.
class Round {
public:
  explicit Round(ir::Module &m) : m_(m), oldSize_(m.size()) {}

  // Ops created from now until `endGroup` go before `anchor`.
  void beginGroup(Op *anchor) {
    anchor_ = anchor;
    groupStart_ = m_.size();
  }
  void endGroup() {
    std::vector<Op *> &placed = before_[anchor_];
    for (size_t i = groupStart_; i < m_.size(); ++i)
      placed.push_back(m_.ops()[i].get());
  }

  // What reads of `op` see now: `op`, or what replaced it this round.
  Op *current(Op *op) const {
    for (auto it = replaced_.find(op); it != replaced_.end(); it = replaced_.find(op))
      op = it->second;
    return op;
  }

  // Points the uses of `from` (as `users` lists them, before this round) at `to`.
  void replaceUses(Op *from, Op *to, const std::vector<Op *> &users) {
    for (Op *user : users)
      for (Op *&operand : user->operands)
        if (operand == from)
          operand = to;
    replaced_[from] = to;
  }

  // `op` takes `name` once the op that holds it now is gone.
  void renameLater(Op *op, std::string name) { renames_.emplace_back(op, std::move(name)); }

  // Puts the new ops in place, drops what nothing reads any more, renames and sorts.
  void finish() {
    placeNewOps(m_, oldSize_, before_);
    ir::eraseDeadOps(m_);
    for (auto &[op, name] : renames_)
      m_.rename(op, name);
    m_.topologicalSort();
  }

private:
  ir::Module &m_;
  size_t oldSize_;
  Op *anchor_ = nullptr;
  size_t groupStart_ = 0;
  OpsBefore before_;
  std::unordered_map<Op *, Op *> replaced_;
  std::vector<std::pair<Op *, std::string>> renames_;
};

// "l0.q", "l0.k", "l0.fc1" -> "l0."
std::string commonPrefix(const std::vector<Term> &terms) {
  std::string prefix = terms[0].value->name;
  for (const Term &t : terms) {
    size_t n = 0;
    while (n < prefix.size() && n < t.value->name.size() && prefix[n] == t.value->name[n])
      ++n;
    prefix.resize(n);
  }
  size_t dot = prefix.rfind('.');
  return dot == std::string::npos ? "" : prefix.substr(0, dot + 1);
}

// Concatenation along `axis` in k interleaved groups: with k > 1 each of the k blocks of the
// result holds the k-th block of every operand, so that when the result is split k ways over the
// model axis every device gets its share of each operand (Megatron's fused QKV layout). With
// k = 1 this is a plain concat.
Op *interleavedConcat(ir::Builder &b, const std::vector<Op *> &xs, int64_t axis, int64_t k,
                      const std::string &name) {
  if (k == 1)
    return b.concat(xs, axis, name);
  std::vector<Op *> split;
  for (Op *x : xs) {
    Shape s = x->shape();
    s[static_cast<size_t>(axis)] /= k;
    s.insert(s.begin() + axis, k);
    split.push_back(b.reshape(x, s, x->name + ".groups"));
  }
  Op *joined = b.concat(split, axis + 1, name + ".groups");
  Shape s = joined->shape();
  s[static_cast<size_t>(axis)] *= s[static_cast<size_t>(axis) + 1];
  s.erase(s.begin() + axis + 1);
  return b.reshape(joined, s, name);
}

// The part [offset, offset + size) of one operand of an interleavedConcat along `axis`.
Op *interleavedSlice(ir::Builder &b, Op *y, int64_t axis, int64_t k, int64_t offset, int64_t size,
                     const std::string &name) {
  if (k == 1)
    return b.slice(y, axis, offset, size, name);
  Shape s = y->shape();
  s[static_cast<size_t>(axis)] /= k;
  s.insert(s.begin() + axis, k);
  Op *groups = b.reshape(y, s, name + ".groups");
  Op *part = b.slice(groups, axis + 1, offset / k, size / k, name + ".group_slice");
  Shape out = y->shape();
  out[static_cast<size_t>(axis)] = size;
  return b.reshape(part, out, name);
}

// How many ways the model axis splits, if every size divides by it; otherwise 1.
int64_t interleaving(const ir::Module &m, const PassContext &ctx,
                     const std::vector<int64_t> &sizes) {
  int axis = m.mesh.axisIndex(ctx.options.layout.modelAxis);
  int64_t k = axis < 0 ? 1 : m.mesh.axisSize(axis);
  for (int64_t n : sizes)
    if (n % k != 0)
      return 1;
  return k;
}

// Sibling projections of one activation -> one matmul and slices of its result. Merges every
// group of siblings the module holds; returns whether there was one.
bool mergeSiblings(ir::Module &m, PassContext &ctx) {
  Context c(m);
  struct Group {
    Op *x;
    bool transposeB;
    std::vector<Term> terms;
  };
  std::vector<Group> groups;
  for (const auto &owned : m.ops()) {
    Op *x = owned.get();
    std::map<bool, std::vector<Term>> byLayout;
    for (Op *u : c.usersOf(x))
      if (u->is(OpKind::MatMul) && u->operand(0) == x)
        if (auto t = c.projection(u))
          byLayout[t->transposeB()].push_back(*t);
    for (auto &[transposeB, terms] : byLayout) {
      if (terms.size() < 2)
        continue;
      // In the order of their weights, so that the backward of a sum of projections (autodiff's
      // dX of attention-out and MLP-out, made in reverse) concatenates the weights as the
      // forward's sum does, and canonicalize keeps one copy of them.
      std::sort(terms.begin(), terms.end(), [&](const Term &a, const Term &b) {
        return std::pair(c.positionOf(a.weight()), c.positionOf(a.matmul)) <
               std::pair(c.positionOf(b.weight()), c.positionOf(b.matmul));
      });
      groups.push_back({x, transposeB, std::move(terms)});
    }
  }
  if (groups.empty())
    return false;
  Round round(m);
  for (Group &group : groups) {
    std::vector<Term> &terms = group.terms;
    Op *x = round.current(group.x);
    Op *first = terms[0].matmul;
    for (const Term &t : terms)
      if (c.positionOf(t.matmul) < c.positionOf(first))
        first = t.matmul;
    round.beginGroup(first);
    ir::Builder b(m);
    b.setLoc(terms[0].matmul->loc);
    std::string prefix = commonPrefix(terms) + "fused";
    std::vector<Op *> weights, biases;
    std::vector<int64_t> sizes;
    bool anyBias = false;
    for (const Term &t : terms) {
      weights.push_back(t.weight());
      sizes.push_back(t.outFeatures());
      anyBias |= t.bias != nullptr;
    }
    int64_t k = interleaving(m, ctx, sizes);
    int64_t outAxis = group.transposeB ? 0 : 1;
    Op *w = interleavedConcat(b, weights, outAxis, k, prefix + ".w");
    Op *y = b.matmul(x, w, group.transposeB, prefix + (anyBias ? ".mm" : ""));
    if (anyBias) {
      for (const Term &t : terms)
        biases.push_back(t.bias ? t.bias
                                : b.fill({t.outFeatures()}, 0.0, t.value->name + ".zero_bias"));
      y = b.add(y, interleavedConcat(b, biases, 0, k, prefix + ".b"), prefix);
    }
    int64_t offset = 0;
    for (const Term &t : terms) {
      Op *slice = interleavedSlice(b, y, y->rank() - 1, k, offset, t.outFeatures(),
                                   t.value->name + ".slice");
      offset += t.outFeatures();
      round.replaceUses(t.value, slice, c.usersOf(t.value));
      round.renameLater(slice, t.value->name);
    }
    round.endGroup();
    ctx.remark(fmt::format("{} projections of %{} -> %{} ({} x {})", terms.size(), x->name, y->name,
                           x->shape().back(), offset));
  }
  round.finish();
  return true;
}

// A sum whose terms include projections with the same output -> one matmul of the concatenated
// inputs. Merges in every such sum the module holds; returns whether there was one.
bool mergeSums(ir::Module &m, PassContext &ctx) {
  Context c(m);
  struct Group {
    Op *root;
    std::vector<Op *> leaves;
    std::vector<Term> terms;
  };
  std::vector<Group> groups;
  for (const auto &owned : m.ops()) {
    Op *root = owned.get();
    if (!root->is(OpKind::Add))
      continue;
    auto isInner = [&](Op *op) {
      const auto &us = c.usersOf(op);
      return op->is(OpKind::Add) && us.size() == 1 && us[0]->is(OpKind::Add) &&
             op->type == root->type && !c.projectionOf(op);
    };
    if (isInner(root) || c.projectionOf(root))
      continue;
    // The leaves of the tree of single-use adds under root, left to right.
    std::vector<Op *> leaves;
    std::function<void(Op *)> walk = [&](Op *op) {
      for (Op *operand : op->operands) {
        if (operand != root && isInner(operand) && c.usersOf(operand)[0] == op) {
          walk(operand);
          continue;
        }
        leaves.push_back(operand);
      }
    };
    walk(root);
    // Group projection terms that could share one matmul.
    std::vector<Term> group;
    for (Op *leaf : leaves) {
      auto t = c.projectionOf(leaf);
      if (!t || t->value != leaf || !(leaf->type == root->type))
        continue;
      if (!group.empty()) {
        const Term &g = group[0];
        Shape lead(t->input()->shape().begin(), t->input()->shape().end() - 1);
        Shape glead(g.input()->shape().begin(), g.input()->shape().end() - 1);
        if (t->transposeB() != g.transposeB() || t->outFeatures() != g.outFeatures() ||
            lead != glead || t->input()->type.dtype != g.input()->type.dtype)
          continue;
      }
      bool independent = true;
      for (const Term &g : group)
        independent &= !c.dependsOn(t->input(), g.matmul) && !c.dependsOn(g.input(), t->matmul);
      if (independent)
        group.push_back(*t);
    }
    if (group.size() >= 2)
      groups.push_back({root, std::move(leaves), std::move(group)});
  }
  if (groups.empty())
    return false;
  Round round(m);
  for (const Group &g : groups) {
    Op *root = g.root;
    const std::vector<Term> &group = g.terms;
    round.beginGroup(root);
    ir::Builder b(m);
    b.setLoc(root->loc);
    std::string prefix = commonPrefix(group) + "fused_sum";
    bool transposeB = group[0].transposeB();
    std::vector<Op *> inputs, weights, biases;
    std::vector<int64_t> sizes;
    for (const Term &t : group) {
      inputs.push_back(round.current(t.input()));
      weights.push_back(t.weight());
      sizes.push_back(t.input()->shape().back());
      if (t.bias)
        biases.push_back(t.bias);
    }
    int64_t k = interleaving(m, ctx, sizes);
    Op *in = interleavedConcat(b, inputs, group[0].input()->rank() - 1, k, prefix + ".in");
    Op *w = interleavedConcat(b, weights, transposeB ? 1 : 0, k, prefix + ".w");
    Op *y = b.matmul(in, w, transposeB, prefix + (biases.empty() ? "" : ".mm"));
    if (!biases.empty()) {
      Op *bias = biases[0];
      for (size_t i = 1; i < biases.size(); ++i)
        bias = b.add(bias, biases[i], prefix + ".b");
      y = b.add(y, bias, prefix);
    }
    // The new tree: the other leaves as they were, the merged product where its first term was.
    std::unordered_set<Op *> merged;
    for (const Term &t : group)
      merged.insert(t.value);
    Op *sum = nullptr;
    for (Op *leaf : g.leaves) {
      Op *term = merged.count(leaf) ? (leaf == group[0].value ? y : nullptr) : round.current(leaf);
      if (!term)
        continue;
      sum = sum ? b.add(sum, term, root->name + ".part") : term;
    }
    round.replaceUses(root, sum, c.usersOf(root));
    round.renameLater(sum, root->name);
    round.endGroup();
    ctx.remark(fmt::format("{} projections summed into %{} -> %{} ({} x {})", group.size(),
                           root->name, y->name, in->shape().back(), y->shape().back()));
  }
  round.finish();
  return true;
}

class FuseParallelLinear : public Pass {
public:
  std::string_view name() const override { return "fuse-parallel-linear"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    bool changed = false;
    while (mergeSiblings(m, ctx))
      changed = true;
    while (mergeSums(m, ctx))
      changed = true;
    if (changed)
      ir::eraseDeadOps(m);
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createFuseParallelLinear() { return std::make_unique<FuseParallelLinear>(); }

} // namespace vitc::passes
