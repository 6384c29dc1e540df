// autodiff: the backward pass of a forward module and its loss (reverse-mode differentiation).
//
// The module's first output is the loss, an f32[] value. The pass walks the ops backwards from a
// seed gradient of 1, asks the gradient rule of each op (the op table's last column,
// ir/gradient_rules.h) for the gradients of its operands, sums the gradients of a value that has
// several users, and makes the outputs the loss and the gradient of every parameter, in the
// order of the params:
//
//   %w = param {name = "W"} : f32[3,4]        ...
//   %y = matmul %x, %w {transpose_b = true}   %l = sum %f {axis = 0} : f32[]
//   %g = gelu %y : f32[2,3]                   %d.l = fill {value = 1.0} : f32[]
//   %f = reshape %g : f32[6]            =>    %l.bwd = reshape %d.l : f32[1]
//   %l = sum %f {axis = 0} : f32[]            %d.f = broadcast %l.bwd : f32[6]
//   output %l                                 %d.g = reshape %d.f : f32[2,3]
//                                             %d.y = gelu_grad %y, %d.g : f32[2,3]
//                                             %y.bwd.1 = transpose %d.y {perm = [1, 0]}
//                                             %grad.W = matmul %y.bwd.1, %x : f32[3,4]
//                                             output %l, %grad.W
//
// The total gradient of each value is named `d.<value>`, the ops of one rule `<op>.bwd`, and the
// gradient of a parameter `grad.<weight name>` (characters a value name cannot hold become '_').
// A value's gradients are summed with `add` in the program order of its users, so that the dX of
// sibling projections is a sum fuse-parallel-linear merges against the forward's concatenated
// weights. Only ops with an operand that depends on a parameter are differentiated: an op without
// a rule (patchify, fused ops, collectives) is an error only where a parameter's gradient flows
// through it. Nothing looks at names.
// Preconditions: a verified forward module, before fusion and sharding (the rules know the ops the
// builders emit, not fused kernels or collectives); its first output is an f32[] loss.
// Postconditions: output 0 is the loss, output i + 1 the gradient of param i (a zero fill where
// the loss does not depend on it), typed like the param; the other outputs and the ops only they
// used are gone; every param stays. Cost: the step computes about twice the forward FLOPs again,
// and every activation a backward op reads stays alive until that op runs (until the gradient
// reaches its layer), so a step's peak memory holds the activations of every layer.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createAutodiff();

} // namespace vitc::passes
