// The canonicalize pass.
#include "passes/canonicalize.h"

#include <map>

#include "ir/builder.h"
#include "ir/text.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

bool isPure(const Op &op) {
  const ir::OpInfo &info = op.info();
  return op.hasResult() && !info.has(ir::kCollective) && !op.is(OpKind::Input) &&
         !op.is(OpKind::Param);
}

class Canonicalize : public Pass {
public:
  std::string_view name() const override { return "canonicalize"; }

  Expected<bool> run(ir::Module &m, PassContext &) override {
    bool changed = false;
    for (bool again = true; again;) {
      again = foldOnce(m);
      again |= eliminateCommonSubexpressions(m);
      again |= ir::eraseDeadOps(m) > 0;
      changed |= again;
    }
    return changed;
  }

private:
  // Replaces `op` by `with` if their types agree exactly.
  static bool replace(ir::Module &m, Op *op, Op *with) {
    if (!(op->type == with->type))
      return false;
    m.replaceAllUsesWith(op, with);
    return true;
  }

  static bool foldOnce(ir::Module &m) {
    bool changed = false;
    ir::UserMap users = m.users();
    std::vector<Op *> ops;
    for (const auto &op : m.ops())
      ops.push_back(op.get());
    for (Op *op : ops) {
      if (!users.count(op))
        continue; // dead; removed later
      changed |= foldOp(m, op);
    }
    return changed;
  }

  static bool foldOp(ir::Module &m, Op *op) {
    Op *x = op->operands.empty() ? nullptr : op->operand(0);
    switch (op->kind) {
    case OpKind::Reshape:
    case OpKind::Broadcast:
      if (x->shape() == op->shape())
        return replace(m, op, x);
      if (op->is(OpKind::Reshape) && x->is(OpKind::Reshape)) {
        // reshape(reshape(y)) reads y directly, if the sharding rule agrees.
        Op probe = *op;
        probe.operands = {x->operand(0)};
        Expected<ir::TensorType> t = op->info().rule(probe, m.mesh);
        if (t && *t == op->type) {
          op->operands = {x->operand(0)};
          return true;
        }
      }
      return false;
    case OpKind::Slice:
      if (x->shape() == op->shape())
        return replace(m, op, x);
      return false;
    case OpKind::Concat:
      if (op->operands.size() == 1)
        return replace(m, op, x);
      return false;
    case OpKind::Scale: {
      double f = op->attrs.getFloat("factor");
      if (f == 1.0)
        return replace(m, op, x);
      if (x->is(OpKind::Scale)) {
        op->attrs.set("factor", f * x->attrs.getFloat("factor"));
        op->operands = {x->operand(0)};
        return true;
      }
      return false;
    }
    case OpKind::Transpose: {
      const std::vector<int64_t> &perm = op->attrs.getInts("perm");
      bool identity = true;
      for (size_t i = 0; i < perm.size(); ++i)
        identity &= perm[i] == static_cast<int64_t>(i);
      if (identity)
        return replace(m, op, x);
      if (x->is(OpKind::Transpose)) {
        // transpose(transpose(y, p), q) = transpose(y, p[q[i]])
        const std::vector<int64_t> &inner = x->attrs.getInts("perm");
        std::vector<int64_t> composed(perm.size());
        for (size_t i = 0; i < perm.size(); ++i)
          composed[i] = inner[static_cast<size_t>(perm[i])];
        op->attrs.set("perm", composed);
        op->operands = {x->operand(0)};
        return true;
      }
      return false;
    }
    default:
      return false;
    }
  }

  static bool eliminateCommonSubexpressions(ir::Module &m) {
    bool changed = false;
    std::map<std::string, Op *> seen;
    for (const auto &owned : m.ops()) {
      Op *op = owned.get();
      if (!isPure(*op))
        continue;
      // The printed op without its name is a complete key: kind, operands, attributes, type.
      std::string key = ir::printOp(*op, m.mesh);
      key.erase(0, key.find(" = "));
      auto [it, inserted] = seen.emplace(key, op);
      if (!inserted) {
        m.replaceAllUsesWith(op, it->second);
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createCanonicalize() { return std::make_unique<Canonicalize>(); }

} // namespace vitc::passes
