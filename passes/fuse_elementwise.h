// fuse-elementwise: fold elementwise work into the kernels that produce its input.
//
// Matmul epilogues: a projection and what follows it become one fused_linear, whose output is
// written once:
//
//   %m = matmul %x, %w {transpose_b}         %y = fused_linear %x, %w, %b, %r
//   %a = add %m, %b           (bias [N])  =>      {bias, gelu, residual, transpose_b}
//   %g = gelu %a
//   %y = add %r, %g           (residual, same type)
//
// Attention: the head split, QK-normalization, scores, scaling, softmax, values and head merge of
// multi-head attention become one attention op on token-major tensors:
//
//   %qh = transpose (reshape %q : [B,T,H,dh]) {perm=[0,2,1,3]}    (same for %k and %v)
//   %qn = layer_norm %qh, %sq {eps}   %kn = layer_norm %kh, %sk {eps}   (optional)
//   %s = matmul %qn, %kn {transpose_b} ; %p = softmax (scale %s {factor = c})
//   %o = reshape (transpose (matmul %p, %vh) {perm=[0,2,1,3]}) : [B,T,D]
//     =>  %o = attention %q, %k, %v, %sq, %sk {heads = H, scale = c, qk_norm, eps}
//
// Preconditions: a verified module. Every intermediate value folded away has exactly one user;
// weights and biases depend on parameters alone. Not fused: a bias that is not a weight vector of
// the output's size, a residual of another type (broadcast), an epilogue after a partial sum, a
// QK-norm on only one of queries and keys. Postconditions: same outputs up to float rounding.
// Cost: none in memory; it removes the intermediate tensors (the attention scores among them).
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createFuseElementwise();

} // namespace vitc::passes
