// The canonicalize pass.
#include "passes/canonicalize.h"

#include <algorithm>
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

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &) override {
    bool changed = false;
    for (bool again = true; again;) {
      again = foldOnce(m);
      again |= eliminateCommonSubexpressions(m);
      again |= ir::eraseDeadOps(m) > 0;
      changed |= again;
    }
    return changed;
  }

  // Who reads each op, kept up to date as the rewrites below change operands: replacing a value
  // visits its readers only (a walk over the whole module per replacement made deep models
  // quadratic). A list may name an op that reads the value no more, or name one twice (finding
  // and erasing entries would be quadratic in a value read by thousands, such as a zero bias that
  // every block shares); replacing skips those.
  class Readers {
  public:
    explicit Readers(const ir::Module &m) : users_(m.users()) {}

    // Points every reader of `from` at `to`.
    void replaceAllUses(Op *from, Op *to) {
      std::vector<Op *> readers = std::move(users_[from]);
      users_[from].clear();
      for (Op *user : readers) {
        if (user == to) { // `to` keeps reading `from`, as Module::replaceAllUsesWith leaves it
          addUser(from, user);
          continue;
        }
        bool reads = false;
        for (Op *&operand : user->operands)
          if (operand == from) {
            operand = to;
            reads = true;
          }
        if (reads)
          addUser(to, user);
      }
    }

    // Gives `op` new operands.
    void setOperands(Op *op, std::vector<Op *> operands) {
      op->operands = std::move(operands);
      for (Op *x : op->operands)
        addUser(x, op);
    }

  private:
    void addUser(Op *of, Op *user) {
      std::vector<Op *> &list = users_[of];
      if (list.empty() || list.back() != user)
        list.push_back(user);
    }

    ir::UserMap users_;
  };

  // Replaces `op` by `with` if their types agree exactly.
  static bool replace(Readers &readers, Op *op, Op *with) {
    if (!(op->type == with->type))
      return false;
    readers.replaceAllUses(op, with);
    return true;
  }

  static bool foldOnce(ir::Module &m) {
    bool changed = false;
    Readers readers(m);
    ir::UserMap users = m.users();
    std::vector<Op *> ops;
    for (const auto &op : m.ops())
      ops.push_back(op.get());
    for (Op *op : ops) {
      if (!users.count(op))
        continue; // dead; removed later
      changed |= foldOp(m, readers, op);
    }
    return changed;
  }

  static bool foldOp(ir::Module &m, Readers &readers, Op *op) {
    Op *x = op->operands.empty() ? nullptr : op->operand(0);
    switch (op->kind) {
    case OpKind::Reshape:
    case OpKind::Broadcast:
      if (x->shape() == op->shape())
        return replace(readers, op, x);
      if (op->is(OpKind::Reshape) && x->is(OpKind::Reshape)) {
        // reshape(reshape(y)) reads y directly, if the sharding rule agrees.
        Op probe = *op;
        probe.operands = {x->operand(0)};
        Expected<ir::TensorType> t = op->info().rule(probe, m.mesh);
        if (t && *t == op->type) {
          readers.setOperands(op, {x->operand(0)});
          return true;
        }
      }
      return false;
    case OpKind::Slice:
      if (x->shape() == op->shape())
        return replace(readers, op, x);
      return false;
    case OpKind::Concat:
      if (op->operands.size() == 1)
        return replace(readers, op, x);
      return false;
    case OpKind::Scale: {
      double f = op->attrs.getFloat("factor");
      if (f == 1.0)
        return replace(readers, op, x);
      if (x->is(OpKind::Scale)) {
        op->attrs.set("factor", f * x->attrs.getFloat("factor"));
        readers.setOperands(op, {x->operand(0)});
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
        return replace(readers, op, x);
      if (x->is(OpKind::Transpose)) {
        // transpose(transpose(y, p), q) = transpose(y, p[q[i]])
        const std::vector<int64_t> &inner = x->attrs.getInts("perm");
        std::vector<int64_t> composed(perm.size());
        for (size_t i = 0; i < perm.size(); ++i)
          composed[i] = inner[static_cast<size_t>(perm[i])];
        op->attrs.set("perm", composed);
        readers.setOperands(op, {x->operand(0)});
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
    Readers readers(m);
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
        readers.replaceAllUses(op, it->second);
        changed = true;
      }
    }
    return changed;
  }
};

} // namespace

std::unique_ptr<Pass> createCanonicalize() { return std::make_unique<Canonicalize>(); }

} // namespace vitc::passes
