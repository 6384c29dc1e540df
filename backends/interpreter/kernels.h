// The interpreter's arithmetic: plain loops that define what each op computes.
//
// Every function works on one device's local tensors. They are written to be obviously right
// first; the few that dominate run time (matmul) are cache-blocked so that a ViT-B/16 image takes
// seconds, not minutes.
#pragma once

#include <vector>

#include "support/tensor.h"

namespace vitc::interp {

// a [..., M, K] x b [K, N] (or [..., K, N] with the same leading dimensions); `transposeB` reads b
// as [..., N, K].
Tensor matmul(const Tensor &a, const Tensor &b, bool transposeB);
// NumPy broadcasting: shapes aligned on the right, size-1 dimensions stretched.
Tensor add(const Tensor &a, const Tensor &b);
Tensor mul(const Tensor &a, const Tensor &b);
Tensor sub(const Tensor &a, const Tensor &b);
Tensor div(const Tensor &a, const Tensor &b);
Tensor maximum(const Tensor &a, const Tensor &b);
Tensor sqrt(const Tensor &x);
Tensor erf(const Tensor &x);
Tensor tanh(const Tensor &x);
Tensor sigmoid(const Tensor &x);
Tensor scale(const Tensor &x, float factor);
// Every element rounded to the nearest bfloat16 (ties to even, NaN kept): the interpreter holds a
// bf16 value as the float it stands for.
Tensor roundToBfloat16(const Tensor &x);
// Exact GELU, x * Phi(x), or its tanh approximation.
Tensor gelu(const Tensor &x, bool approximate);
// Over the last dimension: (x - mean) / sqrt(var + eps) * scale (+ bias); bias may be empty.
Tensor layerNorm(const Tensor &x, const Tensor &scale, const Tensor &bias, float eps);
Tensor softmax(const Tensor &x); // over the last dimension
Tensor mean(const Tensor &x, int64_t axis);
Tensor sum(const Tensor &x, int64_t axis);
// Losses over the last dimension (see ir/ops.def), one value per row, in double and stable for
// logits of any size: log-sum-exp with the row's maximum subtracted, and softplus(z) computed as
// max(z, 0) + log1p(exp(-|z|)).
Tensor softmaxCrossEntropy(const Tensor &logits, const Tensor &labels);
Tensor sigmoidCrossEntropy(const Tensor &logits, const Tensor &labels);
// Backward ops: dy * gelu'(x); the gradient of layerNorm(x, scale, bias) with respect to x given
// dy (the bias does not enter); y * (dy - sum(dy * y)) over the last dimension.
Tensor geluGrad(const Tensor &x, const Tensor &dy, bool approximate);
Tensor layerNormGrad(const Tensor &x, const Tensor &scale, const Tensor &dy, float eps);
Tensor softmaxGrad(const Tensor &y, const Tensor &dy);
Tensor transpose(const Tensor &x, const std::vector<int64_t> &perm);
Tensor broadcastTo(const Tensor &x, const Shape &shape);
Tensor concat(const std::vector<const Tensor *> &xs, int64_t axis);
Tensor slice(const Tensor &x, int64_t axis, int64_t start, int64_t size);
// [B, C, H, W] -> [B, (H/P)*(W/P), C*P*P]; patches row-major, features ordered (c, py, px) as in
// a flattened [D, C, P, P] convolution kernel.
Tensor patchify(const Tensor &x, int64_t patch);

// Multi-head attention on token-major [B, T, D] tensors (see the `attention` op in ir/ops.def).
// qScale/kScale are empty without QK-normalization; biases may be empty.
Tensor attention(const Tensor &q, const Tensor &k, const Tensor &v, int64_t heads, float scale,
                 const Tensor &qScale, const Tensor &qBias, const Tensor &kScale,
                 const Tensor &kBias, float eps);

// Moves the k blocks of dimension `dim` to the front: [.., k*b, ..] -> k contiguous [.., b, ..].
Tensor splitBlocks(const Tensor &x, int64_t dim, int64_t k);
// The inverse of splitBlocks for blocks given in `order` (order[j]: where block j of `flat` goes).
Tensor joinBlocks(const float *flat, const Shape &blockShape, int64_t dim,
                  const std::vector<int64_t> &order);

} // namespace vitc::interp
