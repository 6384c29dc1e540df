// raise-onnx: the op chains PyTorch's ONNX exporter writes, raised back to vitc's own ops.
//
// An imported model spells LayerNorm, GELU and attention in generic ops; raised, it gets the
// fusions, the sharding rules and the fast kernels of a spec model. Generic over the IR: each
// rewrite matches a computation, never a name.
//
// LayerNorm (opset 13 and older: ReduceMean, Sub, Pow, Sqrt, Div; `keep` is the reshape that
// keeps the reduced axis):
//   %m = keep(mean %x {axis = last}) ; %d = sub %x, %m ; %p = mul %d, %d
//   %v = keep(mean %p {axis = last}) ; %s = sqrt (add %v, (fill eps)) ; %n = div %d, %s
//   [%y = mul %n, %w] [%z = add %y, %b]           (%w and %b of shape [D])
//     =>  %z = layer_norm %x, %w, %b {eps}        (a missing %w is a fill of ones)
// GELU, both forms, with the constant factors in any order:
//   %h * 0.5 * (1 + erf(%h * 0.7071...))                              =>  gelu %h
//   %h * 0.5 * (1 + tanh(0.7978... * (%h + 0.044715 * %h * %h * %h)))  =>  gelu %h {approximate}
// Attention: PyTorch writes the scores as `q @ k.transpose(-1, -2)` and may scale q before the
// product; raised, they take the spec's form that fuse-elementwise turns into one attention op:
//   %s = matmul %q, (transpose %k {perm = [.., n-1, n-2]})  =>  %s = matmul %q, %k {transpose_b}
//   %s = matmul (scale %q {factor = c}), %k                  =>  %s = scale (matmul %q, %k) {c}
// nn.MultiheadAttention (torchvision's ViT) works token-major ([T, B, D]) and merges batch and
// heads ([B*H, T, dh]). Chains of reshapes and transposes are traced as strided views of the
// value they start from; where q, k and v are each the heads of a [B, T, H*dh] value, the
// attention is rebuilt on [B, H, T, dh] (the head split and merge above), and the old value is a
// view of the merged heads. A row-wise op (a matmul by a weight, a bias add, a slice of features,
// ...) that reads a view which moves whole rows is moved above it, R(view(x)) => view(R(x)),
// until the views meet and an identity view goes:
//   %t = transpose %y {perm=[1,0,2]} ; %p = matmul %t, %w     =>  %p = matmul %y, %w ; ...
//
// Preconditions: a verified module. Every value a rewrite folds away has one user (the chain's
// next op). Postconditions: the same outputs up to float rounding; nothing changes in a module
// with nothing to raise (a spec model). What stays generic is named in a remark: an erf or tanh
// that is not a GELU, and softmax scores that are not [B, H, Tq, Tk] from a q·k^T product (they
// run, unfused). Cost: none; it removes ops and copies.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createRaiseOnnx();

} // namespace vitc::passes
