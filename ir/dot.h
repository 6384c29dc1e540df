// Graphviz drawing of a module, for people who would rather look than read.
#pragma once

#include <string>

#include "ir/module.h"

namespace vitc::ir {

// A `digraph` with one node per op (name, keyword, type) and an edge per operand. Parameters are
// grey ellipses, collectives orange, inputs and the output green.
std::string printDot(const Module &m);

} // namespace vitc::ir
