// Erasing ops nothing reads while a pass keeps its own user map up to date.
#include "passes/erase_unread.h"

#include <vector>

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

} // namespace vitc::passes
