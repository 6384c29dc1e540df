// Reference kernels.
#include "backends/interpreter/kernels.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "runtime/blocks.h"
#include "support/bfloat16.h"

namespace vitc::interp {
namespace {

// C[M, N] += A[M, K] * B[K, N], all row-major, cache-blocked so the inner loop is a vectorizable
// axpy over a row of B.
void gemmAccumulate(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k) {
  constexpr int64_t kBlockK = 256, kBlockN = 1024;
  for (int64_t k0 = 0; k0 < k; k0 += kBlockK) {
    int64_t k1 = std::min(k, k0 + kBlockK);
    for (int64_t n0 = 0; n0 < n; n0 += kBlockN) {
      int64_t n1 = std::min(n, n0 + kBlockN);
      for (int64_t i = 0; i < m; ++i) {
        float *__restrict crow = c + i * n;
        for (int64_t kk = k0; kk < k1; ++kk) {
          float av = a[i * k + kk];
          const float *__restrict brow = b + kk * n;
          for (int64_t j = n0; j < n1; ++j)
            crow[j] += av * brow[j];
        }
      }
    }
  }
}

// A [rows, cols] -> [cols, rows].
void transpose2d(const float *src, float *dst, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c)
          dst[c * rows + r] = src[r * cols + c];
}

template <typename F> Tensor broadcastBinary(const Tensor &a, const Tensor &b, F f) {
  size_t rank = std::max(a.shape().size(), b.shape().size());
  Shape out(rank);
  std::vector<int64_t> sa(rank, 0), sb(rank, 0); // strides, 0 where broadcast
  int64_t stA = 1, stB = 1;
  for (size_t i = 0; i < rank; ++i) {
    size_t d = rank - 1 - i;
    int64_t da = i < a.shape().size() ? a.shape()[a.shape().size() - 1 - i] : 1;
    int64_t db = i < b.shape().size() ? b.shape()[b.shape().size() - 1 - i] : 1;
    assert((da == db || da == 1 || db == 1) && "shapes do not broadcast");
    out[d] = std::max(da, db);
    sa[d] = da == 1 ? 0 : stA;
    sb[d] = db == 1 ? 0 : stB;
    stA *= da;
    stB *= db;
  }
  Tensor r = Tensor::zeros(out);
  float *o = r.mutableData();
  const float *pa = a.data(), *pb = b.data();
  int64_t inner = rank ? out[rank - 1] : 1;
  int64_t outer = inner ? numElements(out) / inner : 0;
  int64_t ia = rank ? sa[rank - 1] : 0, ib = rank ? sb[rank - 1] : 0;
  std::vector<int64_t> idx(rank, 0);
  for (int64_t row = 0; row < outer; ++row) {
    int64_t offA = 0, offB = 0;
    for (size_t d = 0; d + 1 < rank; ++d) {
      offA += idx[d] * sa[d];
      offB += idx[d] * sb[d];
    }
    for (int64_t j = 0; j < inner; ++j)
      o[row * inner + j] = f(pa[offA + j * ia], pb[offB + j * ib]);
    // A rank-0 result has one row and no index to advance.
    for (size_t d = rank ? rank - 1 : 0; d-- > 0;) {
      if (++idx[d] < out[d])
        break;
      idx[d] = 0;
    }
  }
  return r;
}

template <typename F> Tensor map(const Tensor &x, F f) {
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    r.mutableData()[i] = static_cast<float>(f(static_cast<double>(x.data()[i])));
  return r;
}

// The sum over `axis`, divided by `divisor`.
Tensor reduceAxis(const Tensor &x, int64_t axis, double divisor) {
  const Shape &s = x.shape();
  int64_t outer = numElements(Shape(s.begin(), s.begin() + axis));
  int64_t n = s[static_cast<size_t>(axis)];
  int64_t inner = numElements(Shape(s.begin() + axis + 1, s.end()));
  Shape out = s;
  out.erase(out.begin() + axis);
  Tensor r = Tensor::zeros(out);
  std::vector<double> acc(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < inner; ++j)
        acc[static_cast<size_t>(j)] += x.data()[(o * n + i) * inner + j];
    for (int64_t j = 0; j < inner; ++j)
      r.mutableData()[o * inner + j] = static_cast<float>(acc[static_cast<size_t>(j)] / divisor);
  }
  return r;
}

// f(row of a, row of b, length) for each row of the last dimension: one value per row.
template <typename F> Tensor rowLoss(const Tensor &a, const Tensor &b, F f) {
  int64_t d = a.shape().back();
  Shape out(a.shape().begin(), a.shape().end() - 1);
  Tensor r = Tensor::zeros(out);
  for (int64_t row = 0; row < r.numel(); ++row)
    r.mutableData()[row] = static_cast<float>(f(a.data() + row * d, b.data() + row * d, d));
  return r;
}

// A LayerNorm row's mean and 1 / sqrt(variance + eps), in double.
std::pair<double, double> rowStatistics(const float *in, int64_t d, float eps) {
  double mean = 0;
  for (int64_t j = 0; j < d; ++j)
    mean += in[j];
  mean /= static_cast<double>(d);
  double var = 0;
  for (int64_t j = 0; j < d; ++j)
    var += (in[j] - mean) * (in[j] - mean);
  var /= static_cast<double>(d);
  return {mean, 1.0 / std::sqrt(var + static_cast<double>(eps))};
}

} // namespace

Tensor matmul(const Tensor &a, const Tensor &b, bool transposeB) {
  const Shape &sa = a.shape(), &sb = b.shape();
  int64_t k = sa.back();
  int64_t n = transposeB ? sb[sb.size() - 2] : sb.back();
  int64_t m = sa[sa.size() - 2];
  Shape out(sa.begin(), sa.end() - 1);
  out.push_back(n);
  Tensor c = Tensor::zeros(out);
  // A weight matrix is shared by every row of a; a batched b has one matrix per leading index.
  bool shared = sb.size() == 2;
  int64_t batches = shared ? 1 : numElements(Shape(sa.begin(), sa.end() - 2));
  int64_t rows = shared ? numElements(Shape(sa.begin(), sa.end() - 1)) : m;
  std::vector<float> bt;
  for (int64_t i = 0; i < batches; ++i) {
    const float *bm = b.data() + i * k * n;
    if (transposeB) {
      bt.resize(static_cast<size_t>(k * n));
      transpose2d(bm, bt.data(), n, k);
      bm = bt.data();
    }
    gemmAccumulate(a.data() + i * rows * k, bm, c.mutableData() + i * rows * n, rows, n, k);
  }
  return c;
}

Tensor add(const Tensor &a, const Tensor &b) {
  return broadcastBinary(a, b, [](float x, float y) { return x + y; });
}

Tensor mul(const Tensor &a, const Tensor &b) {
  return broadcastBinary(a, b, [](float x, float y) { return x * y; });
}

Tensor sub(const Tensor &a, const Tensor &b) {
  return broadcastBinary(a, b, [](float x, float y) { return x - y; });
}

Tensor div(const Tensor &a, const Tensor &b) {
  return broadcastBinary(a, b, [](float x, float y) { return x / y; });
}

Tensor maximum(const Tensor &a, const Tensor &b) {
  return broadcastBinary(a, b, [](float x, float y) { return std::max(x, y); });
}

Tensor sqrt(const Tensor &x) {
  return map(x, [](double v) { return std::sqrt(v); });
}

Tensor erf(const Tensor &x) {
  return map(x, [](double v) { return std::erf(v); });
}

Tensor tanh(const Tensor &x) {
  return map(x, [](double v) { return std::tanh(v); });
}

Tensor sigmoid(const Tensor &x) {
  return map(x, [](double v) { return 1.0 / (1.0 + std::exp(-v)); });
}

Tensor roundToBfloat16(const Tensor &x) {
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    r.mutableData()[i] = vitc::roundToBfloat16(x.data()[i]);
  return r;
}

Tensor scale(const Tensor &x, float factor) {
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    r.mutableData()[i] = x.data()[i] * factor;
  return r;
}

Tensor gelu(const Tensor &x, bool approximate) {
  Tensor r = Tensor::zeros(x.shape());
  const double kSqrt2OverPi = 0.7978845608028654;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data()[i];
    double g = approximate ? 0.5 * v * (1.0 + std::tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v)))
                           : 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    r.mutableData()[i] = static_cast<float>(g);
  }
  return r;
}

Tensor layerNorm(const Tensor &x, const Tensor &scaleT, const Tensor &bias, float eps) {
  int64_t d = x.shape().back();
  int64_t rows = x.numel() / d;
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t row = 0; row < rows; ++row) {
    const float *in = x.data() + row * d;
    float *out = r.mutableData() + row * d;
    auto [mean, inv] = rowStatistics(in, d, eps);
    for (int64_t j = 0; j < d; ++j) {
      double v = (in[j] - mean) * inv * scaleT.data()[j];
      if (!bias.empty())
        v += bias.data()[j];
      out[j] = static_cast<float>(v);
    }
  }
  return r;
}

Tensor softmax(const Tensor &x) {
  int64_t d = x.shape().back();
  int64_t rows = x.numel() / d;
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t row = 0; row < rows; ++row) {
    const float *in = x.data() + row * d;
    float *out = r.mutableData() + row * d;
    float mx = *std::max_element(in, in + d);
    double sum = 0;
    for (int64_t j = 0; j < d; ++j)
      sum += std::exp(static_cast<double>(in[j] - mx));
    for (int64_t j = 0; j < d; ++j)
      out[j] = static_cast<float>(std::exp(static_cast<double>(in[j] - mx)) / sum);
  }
  return r;
}

Tensor mean(const Tensor &x, int64_t axis) {
  return reduceAxis(x, axis, static_cast<double>(x.dim(axis)));
}

Tensor sum(const Tensor &x, int64_t axis) { return reduceAxis(x, axis, 1.0); }

Tensor softmaxCrossEntropy(const Tensor &logits, const Tensor &labels) {
  return rowLoss(logits, labels, [](const float *z, const float *y, int64_t d) {
    double mx = *std::max_element(z, z + d);
    double sumExp = 0;
    for (int64_t c = 0; c < d; ++c)
      sumExp += std::exp(z[c] - mx);
    double logSumExp = mx + std::log(sumExp);
    double loss = 0;
    for (int64_t c = 0; c < d; ++c)
      loss += static_cast<double>(y[c]) * (logSumExp - z[c]);
    return loss;
  });
}

Tensor sigmoidCrossEntropy(const Tensor &logits, const Tensor &labels) {
  return rowLoss(logits, labels, [](const float *z, const float *y, int64_t d) {
    double loss = 0;
    for (int64_t c = 0; c < d; ++c) {
      double v = z[c];
      loss += std::max(v, 0.0) + std::log1p(std::exp(-std::abs(v))) - y[c] * v;
    }
    return loss;
  });
}

Tensor geluGrad(const Tensor &x, const Tensor &dy, bool approximate) {
  const double kSqrt2OverPi = 0.7978845608028654, kInvSqrt2Pi = 0.3989422804014327;
  Tensor r = Tensor::zeros(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data()[i], derivative;
    if (approximate) {
      double t = std::tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v));
      derivative =
          0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * v * v);
    } else {
      derivative =
          0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v);
    }
    r.mutableData()[i] = static_cast<float>(derivative * dy.data()[i]);
  }
  return r;
}

Tensor layerNormGrad(const Tensor &x, const Tensor &scaleT, const Tensor &dy, float eps) {
  int64_t d = x.shape().back();
  int64_t rows = x.numel() / d;
  Tensor r = Tensor::zeros(x.shape());
  std::vector<double> xhat(static_cast<size_t>(d)), g(static_cast<size_t>(d));
  for (int64_t row = 0; row < rows; ++row) {
    const float *in = x.data() + row * d, *grad = dy.data() + row * d;
    auto [mean, inv] = rowStatistics(in, d, eps);
    // With xhat = (x - mean) * inv and g = dy * scale:
    // dx = inv * (g - mean(g) - xhat * mean(g * xhat)).
    double meanG = 0, meanGXhat = 0;
    for (int64_t j = 0; j < d; ++j) {
      size_t k = static_cast<size_t>(j);
      xhat[k] = (in[j] - mean) * inv;
      g[k] = static_cast<double>(grad[j]) * scaleT.data()[j];
      meanG += g[k];
      meanGXhat += g[k] * xhat[k];
    }
    meanG /= static_cast<double>(d);
    meanGXhat /= static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) {
      size_t k = static_cast<size_t>(j);
      r.mutableData()[row * d + j] = static_cast<float>(inv * (g[k] - meanG - xhat[k] * meanGXhat));
    }
  }
  return r;
}

Tensor softmaxGrad(const Tensor &y, const Tensor &dy) {
  int64_t d = y.shape().back();
  int64_t rows = y.numel() / d;
  Tensor r = Tensor::zeros(y.shape());
  for (int64_t row = 0; row < rows; ++row) {
    const float *p = y.data() + row * d, *grad = dy.data() + row * d;
    double dot = 0;
    for (int64_t j = 0; j < d; ++j)
      dot += static_cast<double>(p[j]) * grad[j];
    for (int64_t j = 0; j < d; ++j)
      r.mutableData()[row * d + j] = static_cast<float>(p[j] * (grad[j] - dot));
  }
  return r;
}

Tensor transpose(const Tensor &x, const std::vector<int64_t> &perm) {
  const Shape &s = x.shape();
  size_t rank = s.size();
  Shape out(rank);
  std::vector<int64_t> inStride(rank, 1);
  for (size_t d = rank; d-- > 1;)
    inStride[d - 1] = inStride[d] * s[d];
  std::vector<int64_t> stride(rank); // input stride of each output dimension
  for (size_t d = 0; d < rank; ++d) {
    out[d] = s[static_cast<size_t>(perm[d])];
    stride[d] = inStride[static_cast<size_t>(perm[d])];
  }
  Tensor r = Tensor::zeros(out);
  float *o = r.mutableData();
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < r.numel(); ++i) {
    int64_t at = 0;
    for (size_t d = 0; d < rank; ++d)
      at += idx[d] * stride[d];
    o[i] = x.data()[at];
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < out[d])
        break;
      idx[d] = 0;
    }
  }
  return r;
}

Tensor broadcastTo(const Tensor &x, const Shape &shape) {
  Tensor zeros = Tensor::zeros(shape);
  return add(zeros, x);
}

Tensor concat(const std::vector<const Tensor *> &xs, int64_t axis) {
  Shape out = xs[0]->shape();
  out[static_cast<size_t>(axis)] = 0;
  for (const Tensor *t : xs)
    out[static_cast<size_t>(axis)] += t->shape()[static_cast<size_t>(axis)];
  Tensor r = Tensor::zeros(out);
  Shape offset(out.size(), 0);
  for (const Tensor *t : xs) {
    runtime::insertBox(r.mutableData(), out, offset, t->data(), t->shape());
    offset[static_cast<size_t>(axis)] += t->shape()[static_cast<size_t>(axis)];
  }
  return r;
}

Tensor slice(const Tensor &x, int64_t axis, int64_t start, int64_t size) {
  Shape out = x.shape();
  out[static_cast<size_t>(axis)] = size;
  Shape offset(out.size(), 0);
  offset[static_cast<size_t>(axis)] = start;
  Tensor r = Tensor::zeros(out);
  runtime::extractBox(x.data(), x.shape(), offset, r.mutableData(), out);
  return r;
}

Tensor patchify(const Tensor &x, int64_t p) {
  int64_t b = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  int64_t ph = h / p, pw = w / p;
  Tensor r = Tensor::zeros({b, ph * pw, c * p * p});
  float *o = r.mutableData();
  for (int64_t n = 0; n < b; ++n)
    for (int64_t i = 0; i < ph; ++i)
      for (int64_t j = 0; j < pw; ++j)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t y = 0; y < p; ++y)
            for (int64_t xx = 0; xx < p; ++xx)
              *o++ = x.data()[((n * c + ch) * h + i * p + y) * w + j * p + xx];
  return r;
}

Tensor attention(const Tensor &q, const Tensor &k, const Tensor &v, int64_t heads, float scale,
                 const Tensor &qScale, const Tensor &qBias, const Tensor &kScale,
                 const Tensor &kBias, float eps) {
  int64_t b = q.dim(0), tq = q.dim(1), tk = k.dim(1), d = q.dim(2), dh = d / heads;
  // Split heads: [B, T, H, dh] -> [B, H, T, dh], normalize, and reuse the unfused kernels.
  auto heads4 = [&](const Tensor &x, int64_t t) {
    return transpose(x.reshaped({b, t, heads, dh}), {0, 2, 1, 3});
  };
  Tensor qh = heads4(q, tq), kh = heads4(k, tk), vh = heads4(v, tk);
  if (!qScale.empty()) {
    qh = layerNorm(qh, qScale, qBias, eps);
    kh = layerNorm(kh, kScale, kBias, eps);
  }
  Tensor p = softmax(interp::scale(matmul(qh, kh, true), scale));
  Tensor o = matmul(p, vh, false);
  return transpose(o, {0, 2, 1, 3}).reshaped({b, tq, d});
}

Tensor splitBlocks(const Tensor &x, int64_t dim, int64_t k) {
  Shape block = x.shape();
  block[static_cast<size_t>(dim)] /= k;
  Tensor r = Tensor::zeros(x.shape());
  int64_t blockSize = numElements(block);
  Shape offset(block.size(), 0);
  for (int64_t j = 0; j < k; ++j) {
    offset[static_cast<size_t>(dim)] = j * block[static_cast<size_t>(dim)];
    runtime::extractBox(x.data(), x.shape(), offset, r.mutableData() + j * blockSize, block);
  }
  return r;
}

Tensor joinBlocks(const float *flat, const Shape &blockShape, int64_t dim,
                  const std::vector<int64_t> &order) {
  Shape out = blockShape;
  int64_t k = static_cast<int64_t>(order.size());
  out[static_cast<size_t>(dim)] *= k;
  Tensor r = Tensor::zeros(out);
  int64_t blockSize = numElements(blockShape);
  Shape offset(out.size(), 0);
  for (int64_t j = 0; j < k; ++j) {
    offset[static_cast<size_t>(dim)] =
        order[static_cast<size_t>(j)] * blockShape[static_cast<size_t>(dim)];
    runtime::insertBox(r.mutableData(), out, offset, flat + j * blockSize, blockShape);
  }
  return r;
}

} // namespace vitc::interp
