// The autodiff pass.
#include "passes/autodiff.h"

#include <cassert>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "ir/text.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// The ops whose value depends on a parameter.
std::unordered_set<const Op *> dependOnParams(const ir::Module &m) {
  std::unordered_set<const Op *> varying;
  for (const auto &op : m.ops()) {
    bool depends = op->is(OpKind::Param);
    for (const Op *operand : op->operands)
      depends = depends || varying.count(operand) > 0;
    if (depends)
      varying.insert(op.get());
  }
  return varying;
}

// Removes the ops the output does not need, keeping every param and input: they are the step's
// signature, which the optimizer and the caller's weights follow.
void eraseUnneeded(ir::Module &m) {
  std::unordered_set<const Op *> needed{m.output()};
  std::unordered_set<const Op *> unneeded;
  for (auto it = m.ops().rbegin(); it != m.ops().rend(); ++it) {
    const Op *op = it->get();
    if (!needed.count(op)) {
      if (!op->is(OpKind::Param) && !op->is(OpKind::Input))
        unneeded.insert(op);
      continue;
    }
    for (const Op *operand : op->operands)
      needed.insert(operand);
  }
  m.eraseAll(unneeded);
}

class Autodiff : public Pass {
public:
  std::string_view name() const override { return "autodiff"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    Op *out = m.output();
    if (!out)
      return Error(fmt::format("module @{}: autodiff needs an output", m.name));
    Op *loss = out->operand(0);
    if (loss->rank() != 0 || loss->type.dtype != DType::F32)
      return makeError(out->loc,
                       "module @{}: autodiff needs a loss, an f32[] value, as the first output; "
                       "%{} is {}",
                       m.name, loss->name, ir::typeString(loss->type, m.mesh));
    std::unordered_set<const Op *> varying = dependOnParams(m);
    std::vector<Op *> params = m.params();
    std::vector<Op *> forward;
    for (const auto &op : m.ops())
      if (op.get() != out)
        forward.push_back(op.get());
    m.erase(out);

    ir::Builder b(m);
    // The gradient of the loss with respect to each value, summed over its users so far; the walk
    // reaches a value after all its users, when its total is complete and gets its name.
    std::unordered_map<const Op *, Op *> grads;
    std::unordered_set<const Op *> named;
    std::unordered_map<const Op *, int>
        partialSums; // numbered by hand: a value may have many users
    b.setLoc(loss->loc);
    grads[loss] = b.fill({}, 1.0, "d." + loss->name);
    for (auto it = forward.rbegin(); it != forward.rend(); ++it) {
      Op *op = *it;
      auto found = grads.find(op);
      if (found == grads.end())
        continue;
      Op *dy = found->second;
      if (named.insert(dy).second)
        m.rename(dy, "d." + op->name);
      if (op->is(OpKind::Param) || !varying.count(op))
        continue;
      b.setLoc(op->loc);
      Expected<std::vector<Op *>> operandGrads = op->info().grad(b, *op, dy);
      if (!operandGrads)
        return makeError(op->loc, "cannot differentiate %{}: {}", op->name,
                         operandGrads.error().message());
      assert(operandGrads->size() == op->operands.size() && "one gradient per operand");
      for (size_t i = 0; i < op->operands.size(); ++i) {
        Op *x = op->operand(i);
        if (!varying.count(x))
          continue;
        Op *dx = (*operandGrads)[i];
        if (!dx)
          return makeError(op->loc,
                           "cannot differentiate %{}: op '{}' gives its operand {} (%{}) no "
                           "gradient, and it depends on a parameter",
                           op->name, op->keyword(), i + 1, x->name);
        assert(dx->type.shape == x->shape() && "a gradient has its operand's shape");
        // The newest term goes first: the walk is backwards, so the sum lists its terms in
        // program order, and fuse-parallel-linear concatenates the weights of a sum of
        // projections (dX of Q, K, V and MLP-in) as it does the forward's siblings: one value.
        auto [slot, first] = grads.try_emplace(x, dx);
        if (!first)
          slot->second =
              b.add(dx, slot->second, fmt::format("d.{}.part{}", x->name, ++partialSums[x]));
      }
    }

    b.setLoc(Loc{});
    std::vector<Op *> outputs{loss};
    std::unordered_set<const Op *> claimed;
    size_t zeros = 0;
    for (Op *p : params) {
      auto found = grads.find(p);
      Op *g = found == grads.end() ? nullptr : found->second;
      if (!g) {
        g = b.fill(p->shape(), 0.0);
        ++zeros;
      } else if (claimed.count(g)) {
        // Two params with one gradient value (add %p1, %p2): each output gets a value of its own.
        g = b.reshape(g, p->shape());
      }
      claimed.insert(g);
      m.rename(g, "grad." + ir::valueName(p->attrs.getStr("name")));
      outputs.push_back(g);
    }
    b.output(std::move(outputs));
    eraseUnneeded(m);
    std::unordered_set<const Op *> forwardSet(forward.begin(), forward.end());
    size_t backwardOps = 0;
    for (const auto &op : m.ops())
      backwardOps += forwardSet.count(op.get()) ? 0 : 1;
    ctx.remark(fmt::format("gradients of %{} for {} parameter{} ({} zero: the loss does not depend "
                           "on them), {} backward ops",
                           loss->name, params.size(), params.size() == 1 ? "" : "s", zeros,
                           backwardOps - 1));
    return true;
  }
};

} // namespace

std::unique_ptr<Pass> createAutodiff() { return std::make_unique<Autodiff>(); }

} // namespace vitc::passes
