// canonicalize: local simplifications that leave a smaller, equivalent program.
//
//   %a = reshape %x : f32[2,6]         %b = reshape %x : f32[3,4]
//   %b = reshape %a : f32[3,4]    =>
//   %t = transpose %x {perm=[1,0]}     (uses of %u become uses of %x)
//   %u = transpose %t {perm=[1,0]}
//
// Rewrites, applied until nothing changes:
//   reshape of reshape -> one reshape; reshape, broadcast or slice that changes nothing -> operand;
//   transpose of transpose -> one transpose (or nothing if the permutations cancel);
//   scale by 1 -> operand; scale of scale -> one scale; concat of one operand -> operand;
//   identical pure ops on the same operands -> one op (common subexpression elimination);
//   ops whose results nobody uses -> removed (inputs stay: they are the program's signature).
// Preconditions: a verified module. Postconditions: the module verifies and computes the same
// outputs; every value keeps its type, sharding included (a fold that would change a sharding is
// not done). Cost: none; it only removes work.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createCanonicalize();

} // namespace vitc::passes
