// fuse-parallel-linear: merge linear projections that can run as one matmul.
//
// Sibling matmuls that read the same activation merge into one matmul over concatenated weights
// (ViT-22B's Q, K, V and MLP-in projections of the one LayerNorm output, D x (3D + F)):
//
//   %q = matmul %y, %wq {transpose_b}          %w = concat %wq, %wk, %wv, %w1 {axis = 0}
//   %k = matmul %y, %wk {transpose_b}          %b = concat %zeros, %b1 {axis = 0}  (bias only on
//   %v = matmul %y, %wv {transpose_b}    =>    %f = matmul %y, %w {transpose_b}     the MLP slice)
//   %h = matmul %y, %w1 {transpose_b}          %fb = add %f, %b
//   %hb = add %h, %b1                          %q = slice %fb {axis = 2, start = 0, size = D} ...
//
// Matmuls whose results are summed into one value merge into one matmul over concatenated inputs
// (ViT-22B's attention out-projection and MLP out-projection, (D + F) x D):
//
//   %a = matmul %o, %wo ; %ab = add %a, %bo    %i = concat %o, %g {axis = 2}
//   %m = matmul %g, %w2 ; %mb = add %m, %b2 => %w = concat %wo, %w2 {axis = 1}; %b = add %bo, %b2
//   %r = add %x, %ab ; %s = add %r, %mb        %f = matmul %i, %w ; %s = add %x, (add %f, %b)
//
// Both rewrites are generic: siblings are found by their shared operand, sums by walking trees of
// single-use adds; nothing looks at names. After autodiff they merge the backward too: dX of
// sibling projections is a sum of matmuls against their weights, and the summed projections' dX
// are siblings reading the residual's gradient. Siblings are ordered by their weights, so both
// concatenate the weights as the forward does and canonicalize keeps one copy. Weight-side ops
// (concatenations, bias sums, zero fills) depend on parameters alone, so programs compute them once
// at load.
// Preconditions: a verified module, before sharding. Merged: matmuls with rank-2 weight-only right
// operands and the same transpose_b; for sums, also the same output size and leading shape.
// Not merged: matmuls whose left operand depends on another candidate (the two halves of a
// sequential block: the MLP reads the attention result), matmuls with activation or batched right
// operands (attention scores and values), and terms of different types.
// Postconditions: same outputs up to float reassociation; same FLOPs. Cost: one larger live
// buffer per merge — the fused output [.., 3D + F] or the concatenated input [.., D + F] — and a
// copy of each slice or operand (XLA's dot merger has the same trade).
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createFuseParallelLinear();

} // namespace vitc::passes
