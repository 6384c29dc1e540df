// convert-bf16: matmul and attention inputs in bf16, accumulation and everything else in f32.
//
//   %y = fused_linear %x, %w, %b {bias}        %x.bf16 = convert %x : bf16[197,768]
//          : f32[197,3072]                =>   %w.bf16 = convert %w : bf16[3072,768]
//                                              %y = fused_linear %x.bf16, %w.bf16, %b {bias}
//                                                     : f32[197,3072]
//
//   %q = slice %qkv {axis = 2, start = 0, ...}    %qkv.bf16 = convert %qkv : bf16[1,197,2304]
//   %k = slice %qkv {... start = 768}       =>   %q.bf16 = slice %qkv.bf16 {axis = 2, start = 0,
//   ...} %v = slice %qkv {... start = 1536}            (and %k.bf16, %v.bf16) %o = attention %q,
//   %k, %v : f32[...]          %o = attention %q.bf16, %k.bf16, %v.bf16 : f32[...]
//
// The policy of mixed precision (ViT-22B, PaLM): the operands of every matmul and fused_linear,
// and the queries, keys and values of every attention, are rounded to bf16 and the products
// accumulate in f32, so results, biases, residuals, LayerNorm statistics, softmax (and QK-norm,
// whose parameters stay f32), the loss and optimizer state stay f32. A weight's convert depends
// on parameters alone, so the backends compute it once, when weights load (weight-only values),
// never per step; in a training step the f32 parameters are the master weights. Each value is
// converted once however many ops read it. Slices that attention reads in place (the fused QKV
// projection's) become slices of the projection's bf16 copy, so they stay views. A matmul whose
// contraction is odd, or an attention whose head size is odd, stays f32: bf16 kernels multiply
// pairs of the depth at a time.
// Runs only when the pass options say `dtype=bf16`; otherwise it changes nothing.
// Preconditions: a verified module, matmul and attention operands f32. Postconditions: the module
// verifies; matmul and fused_linear operands (even depth) and attention's queries, keys and
// values (even head size) are bf16 converts or slices of them; outputs are the same up to bf16
// rounding of those operands. Cost: each converted activation has a bf16 copy (half its
// size) alive until its last matmul reads it; weights have a bf16 copy besides the f32 one.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createConvertBf16();

} // namespace vitc::passes
