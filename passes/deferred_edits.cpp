// Edits that passes rewriting a deep module in rounds defer to the end of a round.
#include "passes/deferred_edits.h"

#include <functional>

namespace vitc::passes {

void eraseUnread(ir::Op *op, ir::UserMap &users, std::unordered_set<const ir::Op *> &erased) {
  std::vector<ir::Op *> work{op};
  while (!work.empty()) {
    ir::Op *dead = work.back();
    work.pop_back();
    if (erased.count(dead) || !dead->hasResult() || dead->is(ir::OpKind::Input))
      continue;
    if (auto it = users.find(dead); it != users.end() && !it->second.empty())
      continue;
    erased.insert(dead);
    for (ir::Op *operand : dead->operands) {
      auto it = users.find(operand);
      if (it == users.end())
        continue;
      std::erase(it->second, dead);
      if (it->second.empty())
        work.push_back(operand);
    }
  }
}

void placeNewOps(ir::Module &m, size_t oldSize, const OpsBefore &before) {
  std::vector<ir::Op *> order;
  order.reserve(m.size());
  std::function<void(ir::Op *)> emit = [&](ir::Op *op) {
    if (auto it = before.find(op); it != before.end())
      for (ir::Op *x : it->second)
        emit(x);
    order.push_back(op);
  };
  for (size_t i = 0; i < oldSize; ++i)
    emit(m.ops()[i].get());
  m.reorder(order);
}

void placeAndErase(ir::Module &m, size_t oldSize, const OpsBefore &before,
                   const std::unordered_set<const ir::Op *> &erased) {
  placeNewOps(m, oldSize, before);
  m.eraseAll(erased);
}

} // namespace vitc::passes
