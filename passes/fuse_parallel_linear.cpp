// The fuse-parallel-linear pass.
#include "passes/fuse_parallel_linear.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_set>

#include "ir/builder.h"

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

class Context {
public:
  explicit Context(ir::Module &m) : m(m), users(m.users()), weightOnly(ir::weightOnlyOps(m)) {}

  const std::vector<Op *> &usersOf(const Op *op) const {
    static const std::vector<Op *> none;
    auto it = users.find(op);
    return it == users.end() ? none : it->second;
  }

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

  // Whether `from` depends on `target` (target is `from` or among its transitive operands).
  bool dependsOn(const Op *from, const Op *target) const {
    std::vector<const Op *> stack{from};
    std::unordered_set<const Op *> seen;
    while (!stack.empty()) {
      const Op *op = stack.back();
      stack.pop_back();
      if (op == target)
        return true;
      if (!seen.insert(op).second || weightOnly.count(op))
        continue;
      for (const Op *operand : op->operands)
        stack.push_back(operand);
    }
    return false;
  }

  ir::Module &m;
  ir::UserMap users;
  std::unordered_set<const Op *> weightOnly;
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

// Removes a rewritten projection's old ops once nothing reads them.
void eraseTerm(ir::Module &m, const Term &t) {
  if (t.value != t.matmul)
    m.erase(t.value);
  m.erase(t.matmul);
}

// Sibling projections of one activation -> one matmul and slices of its result.
bool mergeSiblings(ir::Module &m, PassContext &ctx) {
  Context c(m);
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
      std::sort(terms.begin(), terms.end(), [&](const Term &a, const Term &b) {
        return m.indexOf(a.matmul) < m.indexOf(b.matmul);
      });
      ir::Builder b(m);
      b.setInsertionPoint(terms[0].matmul);
      b.setLoc(terms[0].matmul->loc);
      std::string prefix = commonPrefix(terms) + "fused";
      std::vector<Op *> weights, biases;
      bool anyBias = false;
      for (const Term &t : terms) {
        weights.push_back(t.weight());
        anyBias |= t.bias != nullptr;
      }
      Expected<Op *> w = b.tryCreate(OpKind::Concat, weights,
                                     {{"axis", int64_t{transposeB ? 0 : 1}}}, prefix + ".w");
      if (!w)
        continue;
      Op *y = b.matmul(x, *w, transposeB, prefix + (anyBias ? ".mm" : ""));
      if (anyBias) {
        // Projections without a bias get zeros; neighbours share one fill.
        int64_t zeros = 0;
        auto flushZeros = [&] {
          if (zeros > 0)
            biases.push_back(b.fill({zeros}, 0.0, prefix + ".zero_bias"));
          zeros = 0;
        };
        for (const Term &t : terms) {
          if (t.bias) {
            flushZeros();
            biases.push_back(t.bias);
          } else {
            zeros += t.outFeatures();
          }
        }
        flushZeros();
        y = b.add(y, b.concat(biases, 0, prefix + ".b"), prefix);
      }
      // All slices first: the insertion point is one of the ops replaced below.
      int64_t offset = 0;
      std::vector<Op *> slices;
      for (const Term &t : terms) {
        slices.push_back(
            b.slice(y, y->rank() - 1, offset, t.outFeatures(), t.value->name + ".slice"));
        offset += t.outFeatures();
      }
      for (size_t i = 0; i < terms.size(); ++i) {
        m.replaceAllUsesWith(terms[i].value, slices[i]);
        std::string name = terms[i].value->name;
        eraseTerm(m, terms[i]);
        m.rename(slices[i], name);
      }
      ctx.remark(fmt::format("fuse-parallel-linear: {} projections of %{} -> %{} ({} x {})",
                             terms.size(), x->name, y->name, x->shape().back(), offset));
      m.topologicalSort();
      return true;
    }
  }
  return false;
}

// A sum whose terms include projections with the same output -> one matmul of the concatenated
// inputs.
bool mergeSums(ir::Module &m, PassContext &ctx) {
  Context c(m);
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
    if (group.size() < 2)
      continue;

    ir::Builder b(m);
    b.setInsertionPoint(root);
    b.setLoc(root->loc);
    std::string prefix = commonPrefix(group) + "fused_sum";
    bool transposeB = group[0].transposeB();
    std::vector<Op *> inputs, weights, biases;
    for (const Term &t : group) {
      inputs.push_back(t.input());
      weights.push_back(t.weight());
      if (t.bias)
        biases.push_back(t.bias);
    }
    Expected<Op *> in = b.tryCreate(
        OpKind::Concat, inputs, {{"axis", int64_t{group[0].input()->rank() - 1}}}, prefix + ".in");
    if (!in)
      continue;
    Op *w = b.concat(weights, transposeB ? 1 : 0, prefix + ".w");
    Op *y = b.matmul(*in, w, transposeB, prefix + (biases.empty() ? "" : ".mm"));
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
    for (Op *leaf : leaves) {
      Op *term = merged.count(leaf) ? (leaf == group[0].value ? y : nullptr) : leaf;
      if (!term)
        continue;
      sum = sum ? b.add(sum, term, root->name + ".part") : term;
    }
    m.replaceAllUsesWith(root, sum);
    std::string name = root->name;
    ir::eraseDeadOps(m);
    m.rename(sum, name);
    ctx.remark(fmt::format("fuse-parallel-linear: {} projections summed into %{} -> %{} ({} x {})",
                           group.size(), name, y->name, (*in)->shape().back(), y->shape().back()));
    m.topologicalSort();
    return true;
  }
  return false;
}

class FuseParallelLinear : public Pass {
public:
  std::string_view name() const override { return "fuse-parallel-linear"; }
  Expected<bool> run(ir::Module &m, PassContext &ctx) override {
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
