// Kernel descriptions: what one generated kernel computes, with every shape and attribute fixed.
//
// The planner (plan.h) turns each op into calls of kernels described here; the code generator
// (codegen.h) turns each distinct description into one LLVM function. Two calls with equal
// descriptions share a function: `kernelKey` is the deduplication key and also the comment on the
// generated function. Descriptions hold local (per-device) sizes, so every device of a mesh runs
// the same kernels.
//
// Every kernel has the C signature
//   void kernel(float *const *args, int64_t begin, int64_t end, float *scratch)
// `args[0]` is the output and the operands follow in op order. The kernel does work items
// [begin, end) of `workItems(desc)` (row blocks of a matmul, heads of an attention, rows of a
// LayerNorm, ...), so a caller may split one call over threads; `scratch` is 64-byte aligned and
// holds at least `scratchBytes(desc)` bytes for the calling thread. Pointers to operands need only
// float alignment: parameters may be borrowed from a mapped file.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace vitc::llvmbe {

// Matmul tile sizes after defaults are applied (see llvm_backend.h: Tiles).
struct TileConfig {
  int64_t vectorWidth = 16; // floats per vector register
  int64_t mr = 8;           // rows of the register tile
  int64_t nr = 48;          // columns of the register tile, a multiple of vectorWidth
  int64_t kc = 768;         // depth of a cache block
  int64_t mc = 160;         // rows of a cache block, a multiple of mr
  int64_t nc = 768;         // columns of a cache block, a multiple of nr
  int64_t threads = 1;      // threads that will split each call: blocks are sized to feed them
};

// C[b] (m x n) = A[b] (m x k) * B[b] (k x n), then + bias, gelu, + residual (fused_linear's order),
// applied to the register tile of the last depth block so C holds its final values after one
// store. B is one matrix for every batch (`bBatched` false) or one per batch. When `bPacked`, B
// comes already in panels (see PackDesc); otherwise the kernel packs each batch's B into scratch.
// A work item is one (batch, row block, column block) of C. Args: C, A, B, [bias [n]],
// [residual like C].
// With `bf16`, A and B hold bfloat16 and k (and the tiles' kc) counts pairs of the depth: A's rows
// are k 32-bit words of two neighbouring bf16, and word [kk][j] of a B panel is the pair
// (B[2kk][j], B[2kk+1][j]), the "VNNI" order that vdpbf16ps and AMX's tdpbf16ps read. Everything
// else (C, bias, residual, accumulation) is f32.
struct MatmulDesc {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool bf16 = false;
  bool bBatched = false;
  bool transposeB = false; // B is stored [n, k] (not for packed B: packing did the transpose)
  bool bPacked = false;
  bool bias = false, gelu = false, geluApprox = false, residual = false;
  TileConfig tiles;
};

// B (k x n, or n x k when `transposeB`), `batch` of them back to back, into panels of `nr`
// columns: panel p holds B[kk][p*nr + j] at [p][kk][j], zero past column n. Args: packed, B.
// With `bf16`, B holds bfloat16 and k counts pairs of its depth; the panels hold the pairs of
// MatmulDesc (VNNI order).
struct PackDesc {
  int64_t batch = 1, n = 0, k = 0;
  bool bf16 = false;
  bool transposeB = false;
  int64_t nr = 32, vectorWidth = 16;
};

enum class EltOp : uint8_t { Add, Mul, Scale, Gelu, Sub, Div, Maximum, Sqrt, Sigmoid, GeluGrad, Erf, Tanh };
// The op's IR keyword: "add", "gelu_grad", ...
const char *eltOpName(EltOp op);

// out = op(in0[, in1]) (gelu_grad: in1 * gelu'(in0)) over a row-major output of `shape`;
// `strides[i]` gives operand i's stride (in floats) for each output dimension, 0 where it
// broadcasts. Args: out, in0, [in1].
struct EltwiseDesc {
  EltOp op = EltOp::Add;
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;
  float factor = 1.0f;      // Scale
  bool approximate = false; // Gelu, GeluGrad
  int64_t vectorWidth = 16;
};

// Over rows of `d`: (x - mean) / sqrt(var + eps) * scale (+ bias). Args: out, x, scale, [bias].
struct LayerNormDesc {
  int64_t rows = 0, d = 0;
  bool bias = false;
  float eps = 0;
  int64_t vectorWidth = 16;
};

// Over rows of `d`: the gradient of LayerNorm with respect to x given dy,
// inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * scale, xhat = (x - mean) * inv.
// Args: out, x, scale, dy.
struct LayerNormGradDesc {
  int64_t rows = 0, d = 0;
  float eps = 0;
  int64_t vectorWidth = 16;
};

// Over rows of `d`: y * (dy - sum(dy * y)), softmax's gradient from its output y. Args: out, y, dy.
struct SoftmaxGradDesc {
  int64_t rows = 0, d = 0;
  int64_t vectorWidth = 16;
};

// One loss per row of `d` classes (ir/ops.def): softmax cross-entropy, or sigmoid cross-entropy
// when `sigmoid`. Args: out [rows], logits, labels.
struct LossDesc {
  int64_t rows = 0, d = 0;
  bool sigmoid = false;
  int64_t vectorWidth = 16;
};

// Softmax over rows of `d`. Args: out, x.
struct SoftmaxDesc {
  int64_t rows = 0, d = 0;
  int64_t vectorWidth = 16;
};

// out[o][j] = mean (or, unless `divide`, sum) over i of x[o][i][j], x viewed as [outer, n, inner].
// A work item is one o where inner is 1, else one block of `meanColumnBlock` columns of one o
// (the gradient of a bias sums [tokens, features] over its tokens: outer is 1). Args: out, x.
struct MeanDesc {
  int64_t outer = 0, n = 0, inner = 0;
  bool divide = true;
  int64_t vectorWidth = 16;
};

// Columns in one work item of a mean or sum over a middle dimension: rows are read this many
// floats at a time, each vector summed in its own register.
inline int64_t meanColumnBlock(const MeanDesc &d) { return 8 * d.vectorWidth; }

// dst[dstOffset + sum i_d * dstStrides[d]] = src[srcOffset + sum i_d * srcStrides[d]] over every
// index of `shape`: transposes, slices, broadcasts, patchify, and one operand of a concat.
// Args: dst, src.
struct CopyDesc {
  std::vector<int64_t> shape, srcStrides, dstStrides;
  int64_t srcOffset = 0, dstOffset = 0;
  int64_t vectorWidth = 16;
};
// The rows (of the last dimension) one work item of a copy moves: all of the next-to-last
// dimension where rows are short (a patchify's 16 floats), so that the index arithmetic of an
// item is spread over many of them; otherwise one.
int64_t copyRowsPerItem(const CopyDesc &desc);

// out[0, n) = value. Args: out.
struct FillDesc {
  int64_t n = 0;
  float value = 0;
  int64_t vectorWidth = 16;
};

// Multi-head attention (the `attention` op) on q [batch, tq, heads*dh], k and v
// [batch, tk, heads*dh]. Per head: K^T and V are packed (K normalized when qkNorm) into scratch,
// then each block of `tiles.mr` query rows is normalized and scaled, its scores block
// (mr x tk) computed with the matmul tile, soft-maxed in scratch and multiplied by V; the score
// matrix never exists whole. Work items: batch * heads. Args: out, q, k, v, [qScale, [qBias],
// kScale, [kBias]].
// With `bf16`, q, k and v hold bfloat16 (dh even; strides and offsets count elements): the two
// products take bf16 pairs as the bf16 matmul does (K^T's panels hold pairs of features, V's
// pairs of keys, VNNI order) and accumulate in f32; QK-norm, the scale and softmax are f32 on the
// widened values, the normalized queries and keys and the softmax numerators P are rounded to
// bf16 for the products (P as flash-attention does), and 1 / sum stays f32.
struct AttentionDesc {
  int64_t batch = 0, tq = 0, tk = 0, heads = 0, dh = 0;
  bool bf16 = false;
  // Work items per head: its queries in this many parts of whole row tiles (each packs the head's
  // K and V again), so that few heads still split evenly over threads.
  int64_t queryChunks = 1;
  // Floats from one row (token) of q, k and v to the next: heads * dh, or more when they are
  // views of a wider value (the fused q/k/v projection).
  int64_t qRow = 0, kRow = 0, vRow = 0;
  float scale = 1;
  bool qkNorm = false, normBias = false;
  float eps = 0;
  TileConfig tiles;
};

// The `convert` op over rows of `cols` elements: f32 to bf16 (rounded to nearest even, NaN kept)
// when `toBf16`, else bf16 to f32 (exact). A work item is a row. Args: out, in.
struct ConvertDesc {
  int64_t rows = 0, cols = 0;
  bool toBf16 = true;
  int64_t vectorWidth = 16;
};

using KernelDesc = std::variant<MatmulDesc, PackDesc, EltwiseDesc, LayerNormDesc, SoftmaxDesc,
                                MeanDesc, CopyDesc, FillDesc, AttentionDesc, LayerNormGradDesc,
                                SoftmaxGradDesc, LossDesc, ConvertDesc>;

// A canonical one-line description: equal keys mean identical generated code.
std::string kernelKey(const KernelDesc &desc);
// A short name for symbols and reports: "matmul", "attention", ...
std::string kernelKindName(const KernelDesc &desc);
int64_t workItems(const KernelDesc &desc);
int64_t scratchBytes(const KernelDesc &desc);
int64_t numArgs(const KernelDesc &desc);

// Floats in a packed B of `desc` (all batches).
int64_t packedFloats(const PackDesc &desc);

// Sizes derived from the tiles, shared by the planner and the code generator.
inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }
// The tiles for an m x n product: row blocks of equal size (a multiple of mr) of about mc rows,
// and column blocks (a multiple of nr) of about nc columns; one block where two would be small.
// With several threads (t.threads), more blocks: by rows where B is small, else by columns.
// A bf16 product (k counting pairs) deeper than one block of t.kc takes blocks twice as deep and
// row blocks half as tall (see matmulTiles).
TileConfig matmulTiles(int64_t m, int64_t n, int64_t k, const TileConfig &t, int64_t batch = 1,
                       bool bf16 = false);
// Depth of the cache blocks of a k-long product: at most kc, all blocks but the last equal.
int64_t depthBlock(int64_t k, const TileConfig &t);
// A row stride (floats) of at least `n` that is an odd number of 64-byte lines, so that the rows
// of a tile fall into different cache sets.
int64_t oddLineStride(int64_t n);

// Where a matmul keeps its scratch data (offsets and sizes in floats).
struct MatmulScratch {
  // Whether the tiles read A where it is (rows k apart) rather than from a copy of the block at
  // an odd cache-line stride: they do unless too many rows of a tile would share an L1 set.
  bool aInPlace = false;
  int64_t aStride = 0; // row stride of the A the tiles read: k in place, else the copy's
  int64_t b = 0;       // offset of the packed B of one batch, when B is not packed at load
  int64_t total = 0;
};
MatmulScratch matmulScratch(const MatmulDesc &desc);

// The query chunks for an attention kernel of `heads` heads per batch: 1 unless the heads of
// a call would split unevenly over the tiles' threads.
int64_t attentionQueryChunks(const AttentionDesc &desc);
// Rows of queries in each chunk but the last (a multiple of mr).
int64_t attentionChunkRows(const AttentionDesc &desc);

// Where an attention kernel keeps one head's data (offsets and sizes in floats).
// With bf16, K^T's and V's panels and the query block hold pairs (dh / 2 of features, ceil(tk / 2)
// of keys) and the numerators P are rounded into a block of pairs of their own.
struct AttentionScratch {
  int64_t kPanels = 0;  // K^T in panels of nr keys: [ceil(tk/nr)][dh][nr]
  int64_t vPanels = 0;  // V in panels of nr features: [ceil(dh/nr)][tk][nr]
  int64_t q = 0;        // the query block, mr rows of qStride
  int64_t s = 0;        // the score block, mr rows of sStride
  int64_t p = 0;        // with bf16: the numerators' pairs, mr rows of pStride
  int64_t rowScale = 0; // 1 / sum of each score row
  int64_t qStride = 0, sStride = 0, pStride = 0;
  int64_t total = 0;
};
AttentionScratch attentionScratch(const AttentionDesc &desc);

} // namespace vitc::llvmbe
