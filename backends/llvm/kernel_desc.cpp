// Kernel descriptions: keys, work items and scratch sizes.
#include "backends/llvm/kernel_desc.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace vitc::llvmbe {
namespace {

std::string tilesKey(const TileConfig &t) {
  return fmt::format("vw{} mr{} nr{} kc{} mc{} nc{}", t.vectorWidth, t.mr, t.nr, t.kc, t.mc, t.nc);
}

// Floats are keyed by their exact bits: two kernels share code only if they compute the same.
std::string floatKey(float f) { return fmt::format("{:a}", f); }

struct KeyOf {
  std::string operator()(const MatmulDesc &d) const {
    return fmt::format("matmul{} batch{} m{} n{} k{} bb{} tb{} packed{} bias{} gelu{}{} res{} {}",
                       d.bf16 ? " bf16" : "", d.batch, d.m, d.n, d.k, d.bBatched, d.transposeB,
                       d.bPacked, d.bias, d.gelu, d.geluApprox ? "tanh" : "", d.residual,
                       tilesKey(d.tiles));
  }
  std::string operator()(const PackDesc &d) const {
    return fmt::format("pack{} batch{} n{} k{} tb{} nr{} vw{}", d.bf16 ? " bf16" : "", d.batch, d.n,
                       d.k, d.transposeB, d.nr, d.vectorWidth);
  }
  std::string operator()(const ConvertDesc &d) const {
    return fmt::format("convert rows{} cols{} to{} vw{}", d.rows, d.cols, d.toBf16 ? "bf16" : "f32",
                       d.vectorWidth);
  }
  std::string operator()(const EltwiseDesc &d) const {
    std::string key =
        fmt::format("{} shape{} vw{}", eltOpName(d.op), fmt::join(d.shape, "x"), d.vectorWidth);
    for (const auto &s : d.strides)
      key += fmt::format(" s{}", fmt::join(s, ","));
    if (d.op == EltOp::Scale)
      key += " factor" + floatKey(d.factor);
    if ((d.op == EltOp::Gelu || d.op == EltOp::GeluGrad) && d.approximate)
      key += " tanh";
    return key;
  }
  std::string operator()(const LayerNormDesc &d) const {
    return fmt::format("layer_norm rows{} d{} bias{} eps{} vw{}", d.rows, d.d, d.bias,
                       floatKey(d.eps), d.vectorWidth);
  }
  std::string operator()(const SoftmaxDesc &d) const {
    return fmt::format("softmax rows{} d{} vw{}", d.rows, d.d, d.vectorWidth);
  }
  std::string operator()(const MeanDesc &d) const {
    return fmt::format("{} outer{} n{} inner{} vw{}", d.divide ? "mean" : "sum", d.outer, d.n,
                       d.inner, d.vectorWidth);
  }
  std::string operator()(const LayerNormGradDesc &d) const {
    return fmt::format("layer_norm_grad rows{} d{} eps{} vw{}", d.rows, d.d, floatKey(d.eps),
                       d.vectorWidth);
  }
  std::string operator()(const SoftmaxGradDesc &d) const {
    return fmt::format("softmax_grad rows{} d{} vw{}", d.rows, d.d, d.vectorWidth);
  }
  std::string operator()(const LossDesc &d) const {
    return fmt::format("{}_cross_entropy rows{} d{} vw{}", d.sigmoid ? "sigmoid" : "softmax",
                       d.rows, d.d, d.vectorWidth);
  }
  std::string operator()(const CopyDesc &d) const {
    return fmt::format("copy shape{} src{}+{} dst{}+{} vw{}", fmt::join(d.shape, "x"),
                       fmt::join(d.srcStrides, ","), d.srcOffset, fmt::join(d.dstStrides, ","),
                       d.dstOffset, d.vectorWidth);
  }
  std::string operator()(const FillDesc &d) const {
    return fmt::format("fill n{} value{} vw{}", d.n, floatKey(d.value), d.vectorWidth);
  }
  std::string operator()(const AttentionDesc &d) const {
    return fmt::format(
        "attention batch{} tq{} tk{} heads{} dh{}{} chunks{} rows{},{},{} scale{} qknorm{} "
        "bias{} eps{} {}",
        d.batch, d.tq, d.tk, d.heads, d.dh, d.bf16 ? " bf16" : "", d.queryChunks, d.qRow, d.kRow,
        d.vRow, floatKey(d.scale), d.qkNorm, d.normBias, floatKey(d.eps), tilesKey(d.tiles));
  }
};

struct KindOf {
  std::string operator()(const MatmulDesc &) const { return "matmul"; }
  std::string operator()(const PackDesc &) const { return "pack"; }
  std::string operator()(const ConvertDesc &) const { return "convert"; }
  std::string operator()(const EltwiseDesc &d) const { return eltOpName(d.op); }
  std::string operator()(const LayerNormDesc &) const { return "layer_norm"; }
  std::string operator()(const SoftmaxDesc &) const { return "softmax"; }
  std::string operator()(const MeanDesc &d) const { return d.divide ? "mean" : "sum"; }
  std::string operator()(const LayerNormGradDesc &) const { return "layer_norm_grad"; }
  std::string operator()(const SoftmaxGradDesc &) const { return "softmax_grad"; }
  std::string operator()(const LossDesc &d) const {
    return d.sigmoid ? "sigmoid_cross_entropy" : "softmax_cross_entropy";
  }
  std::string operator()(const CopyDesc &) const { return "copy"; }
  std::string operator()(const FillDesc &) const { return "fill"; }
  std::string operator()(const AttentionDesc &) const { return "attention"; }
};

int64_t product(const std::vector<int64_t> &v, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i)
    p *= v[i];
  return p;
}

struct WorkOf {
  int64_t operator()(const MatmulDesc &d) const {
    return d.batch * ceilDiv(d.m, d.tiles.mc) * ceilDiv(d.n, d.tiles.nc);
  }
  int64_t operator()(const PackDesc &d) const { return d.batch * ceilDiv(d.n, d.nr); }
  int64_t operator()(const ConvertDesc &d) const { return d.rows; }
  int64_t operator()(const EltwiseDesc &d) const {
    return d.shape.empty() ? 1 : product(d.shape, 0, d.shape.size() - 1);
  }
  int64_t operator()(const LayerNormDesc &d) const { return d.rows; }
  int64_t operator()(const SoftmaxDesc &d) const { return d.rows; }
  int64_t operator()(const MeanDesc &d) const {
    return d.inner == 1 ? d.outer : d.outer * ceilDiv(d.inner, meanColumnBlock(d));
  }
  int64_t operator()(const LayerNormGradDesc &d) const { return d.rows; }
  int64_t operator()(const SoftmaxGradDesc &d) const { return d.rows; }
  int64_t operator()(const LossDesc &d) const { return d.rows; }
  int64_t operator()(const CopyDesc &d) const {
    return d.shape.empty() ? 1 : product(d.shape, 0, d.shape.size() - 1) / copyRowsPerItem(d);
  }
  int64_t operator()(const FillDesc &) const { return 1; }
  int64_t operator()(const AttentionDesc &d) const { return d.batch * d.heads * d.queryChunks; }
};

struct ArgsOf {
  int64_t operator()(const MatmulDesc &d) const { return 3 + d.bias + d.residual; }
  int64_t operator()(const PackDesc &) const { return 2; }
  int64_t operator()(const ConvertDesc &) const { return 2; }
  int64_t operator()(const EltwiseDesc &d) const {
    return 1 + static_cast<int64_t>(d.strides.size());
  }
  int64_t operator()(const LayerNormDesc &d) const { return 3 + d.bias; }
  int64_t operator()(const SoftmaxDesc &) const { return 2; }
  int64_t operator()(const MeanDesc &) const { return 2; }
  int64_t operator()(const LayerNormGradDesc &) const { return 4; }
  int64_t operator()(const SoftmaxGradDesc &) const { return 3; }
  int64_t operator()(const LossDesc &) const { return 3; }
  int64_t operator()(const CopyDesc &) const { return 2; }
  int64_t operator()(const FillDesc &) const { return 1; }
  int64_t operator()(const AttentionDesc &d) const {
    return 4 + (d.qkNorm ? (d.normBias ? 4 : 2) : 0);
  }
};

} // namespace

const char *eltOpName(EltOp op) {
  static const char *names[] = {"add", "mul",     "scale", "gelu",    "sub",
                                "div", "maximum", "sqrt",  "sigmoid", "gelu_grad",
                                "erf", "tanh"};
  return names[static_cast<int>(op)];
}

std::string kernelKey(const KernelDesc &desc) { return std::visit(KeyOf{}, desc); }
std::string kernelKindName(const KernelDesc &desc) { return std::visit(KindOf{}, desc); }
int64_t workItems(const KernelDesc &desc) { return std::visit(WorkOf{}, desc); }
int64_t numArgs(const KernelDesc &desc) { return std::visit(ArgsOf{}, desc); }

int64_t scratchBytes(const KernelDesc &desc) {
  if (const auto *mm = std::get_if<MatmulDesc>(&desc))
    return matmulScratch(*mm).total * 4;
  if (const auto *at = std::get_if<AttentionDesc>(&desc))
    return attentionScratch(*at).total * 4;
  return 0;
}

int64_t copyRowsPerItem(const CopyDesc &d) {
  size_t rank = d.shape.size();
  return rank >= 2 && d.shape[rank - 1] < 4 * d.vectorWidth ? d.shape[rank - 2] : 1;
}

int64_t packedFloats(const PackDesc &d) { return d.batch * roundUp(d.n, d.nr) * d.k; }

TileConfig matmulTiles(int64_t m, int64_t n, int64_t k, const TileConfig &tiles, int64_t batch,
                       bool bf16) {
  TileConfig t = tiles;
  // A bf16 product of more than one depth block reads C back (and writes it again) after every
  // block but the first, and with the f32 tiles its A block and C block together overflow a 1 MB
  // L2 (ViT-B/16's MLP-out, 1536 pairs deep: 168 rows x 768 words of A and as many of C, 516 KB
  // each). Blocks twice as deep and half as tall keep the A block's size and halve the C traffic
  // (1576 x 3072 x 768 on one Zen 5 core: 410 -> 424 GFLOP/s, 0.93-1.02x -> 1.02-1.11x oneDNN in
  // runs taking turns on a loaded machine).
  if (bf16 && k > t.kc) {
    t.kc *= 2;
    t.mc = std::max(t.mr, roundUp(t.mc / 2, t.mr));
  }
  TileConfig r = t;
  int64_t rowBlocks = m <= 2 * t.mc ? 1 : ceilDiv(m, t.mc);
  int64_t columnBlocks = 2 * n <= 3 * t.nc ? 1 : ceilDiv(n, t.nc);
  // With several threads, enough blocks for each to get an equal share. A B that fits in a
  // core's L2 (1 MB or less) is split by rows: each thread reads all of B but keeps to its own rows
  // of A and C, which the kernels before and after touched on the same thread (ViT-Ti/16 on 2
  // threads: 3-6% faster in medians of two noisy series). A larger B is split by columns, so that
  // each thread streams only its part of the weights (split by rows, ViT-B/16's 9 MB MLP weights
  // made 2 threads about 25% slower).
  constexpr int64_t kRowSplitBytes = 1 << 20;
  if (t.threads > 1) {
    int64_t want = 2 * t.threads;
    auto moreRows = [&](int64_t target) {
      while (batch * rowBlocks * columnBlocks < target && ceilDiv(m, rowBlocks + 1) >= t.mr)
        ++rowBlocks;
    };
    auto moreColumns = [&](int64_t target) {
      while (batch * rowBlocks * columnBlocks < target && ceilDiv(n, columnBlocks + 1) >= t.nr)
        ++columnBlocks;
    };
    if (k * n * 4 <= kRowSplitBytes) {
      moreRows(t.threads);
      moreColumns(t.threads);
    } else {
      moreColumns(want);
      moreRows(want);
    }
  }
  r.mc = std::max(t.mr, roundUp(ceilDiv(m, rowBlocks), t.mr));
  r.nc = std::max(t.nr, roundUp(ceilDiv(n, columnBlocks), t.nr));
  return r;
}

int64_t depthBlock(int64_t k, const TileConfig &t) {
  int64_t blocks = ceilDiv(k, t.kc);
  return ceilDiv(k, blocks);
}

int64_t oddLineStride(int64_t n) {
  int64_t lines = ceilDiv(n, 16);
  if (lines % 2 == 0)
    ++lines;
  return lines * 16;
}

// Rows of an mr-row tile of A (rows `stride` floats apart) that fall into one set of a 64-set
// L1 data cache (48 KiB 12-way or 32 KiB 8-way, 64-byte lines), at most.
int64_t rowsPerL1Set(int64_t mr, int64_t stride) {
  std::map<int64_t, int64_t> rows;
  int64_t most = 0;
  for (int64_t i = 0; i < mr; ++i)
    most = std::max(most, ++rows[i * stride * 4 / 64 % 64]);
  return most;
}

MatmulScratch matmulScratch(const MatmulDesc &d) {
  MatmulScratch s;
  // Copying the block costs more than it saves (about 5% at ViT-B/16's shapes) unless more than
  // 8 rows of a tile would share one set (14-row tiles with rows 1024 floats apart).
  s.aInPlace = rowsPerL1Set(d.tiles.mr, d.k) <= 8;
  s.aStride = s.aInPlace ? d.k : oddLineStride(depthBlock(d.k, d.tiles));
  s.b = s.aInPlace ? 0 : roundUp(d.tiles.mc * s.aStride, 16);
  s.total = s.b + (d.bPacked ? 0 : roundUp(d.n, d.tiles.nr) * d.k);
  return s;
}

int64_t attentionQueryChunks(const AttentionDesc &d) {
  // The fewest chunks, up to 4, that split the work items evenly over the threads (ViT-Ti's 3
  // heads: 2 chunks for 2 threads), each chunk holding some queries.
  for (int64_t chunks = 1; d.tiles.threads > 1 && chunks <= 4; ++chunks) {
    int64_t rows = roundUp(ceilDiv(d.tq, chunks), d.tiles.mr);
    if (d.batch * d.heads * chunks % d.tiles.threads == 0 && (chunks - 1) * rows < d.tq)
      return chunks;
  }
  return 1;
}

int64_t attentionChunkRows(const AttentionDesc &d) {
  return roundUp(ceilDiv(d.tq, d.queryChunks), d.tiles.mr);
}

AttentionScratch attentionScratch(const AttentionDesc &d) {
  const TileConfig &t = d.tiles;
  AttentionScratch s;
  int64_t at = 0;
  auto take = [&](int64_t floats) {
    int64_t here = at;
    at += roundUp(floats, 16);
    return here;
  };
  // The depth of each product in 32-bit words: features, and keys, or pairs of them with bf16.
  int64_t features = d.bf16 ? d.dh / 2 : d.dh, keys = d.bf16 ? ceilDiv(d.tk, 2) : d.tk;
  s.qStride = oddLineStride(features);
  s.sStride = oddLineStride(roundUp(d.tk, t.nr));
  s.pStride = d.bf16 ? oddLineStride(keys) : 0;
  s.kPanels = take(roundUp(d.tk, t.nr) * features);
  s.vPanels = take(roundUp(d.dh, t.nr) * keys);
  s.q = take(t.mr * s.qStride);
  s.s = take(t.mr * s.sStride);
  s.p = take(t.mr * s.pStride);
  s.rowScale = take(t.mr);
  s.total = at;
  return s;
}

} // namespace vitc::llvmbe
