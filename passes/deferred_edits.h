// Edits that passes rewriting a deep module in rounds defer to the end of a round.
//
// collective-matmul and fuse-elementwise keep the users they computed once instead of recomputing
// them per rewrite, create new ops at the end of the module (each recorded to go before the op it
// replaces), and collect erased ops; when the round ends the new ops are put in place and the
// erased ones dropped in one go. (Recomputing users, erasing and inserting in the middle of the
// program once per rewrite made a deep model quadratic.)
#pragma once

#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/module.h"

namespace vitc::passes {

// New ops by the op they go before, in the order they go.
using OpsBefore = std::unordered_map<const ir::Op *, std::vector<ir::Op *>>;

// Marks `op` erased if it has a result, is no input and nothing reads it, then whatever only it
// read, removing each erased op from its operands' entries in `users`.
void eraseUnread(ir::Op *op, ir::UserMap &users, std::unordered_set<const ir::Op *> &erased);

// Orders the module's first `oldSize` ops with each one's new ops (`before`, recursively) in front
// of it; the ops after the first `oldSize` must all be listed in `before`.
void placeNewOps(ir::Module &m, size_t oldSize, const OpsBefore &before);
// placeNewOps, then drops the `erased` ops.
void placeAndErase(ir::Module &m, size_t oldSize, const OpsBefore &before,
                   const std::unordered_set<const ir::Op *> &erased);

} // namespace vitc::passes
