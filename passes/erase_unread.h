// Erasing ops nothing reads while a pass keeps its own user map up to date.
//
// Passes that rewrite a deep module in rounds (collective-matmul, fuse-elementwise) keep the users
// they computed once instead of recomputing them per rewrite, and collect erased ops to drop from
// the module in one go (Module::eraseAll) when the round ends.
#pragma once

#include <unordered_set>

#include "ir/module.h"

namespace vitc::passes {

// Marks `op` erased if it has a result, is no input and nothing reads it, then whatever only it
// read, removing each erased op from its operands' entries in `users`.
void eraseUnread(ir::Op *op, ir::UserMap &users, std::unordered_set<const ir::Op *> &erased);

} // namespace vitc::passes
