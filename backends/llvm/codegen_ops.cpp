// Kernels for elementwise ops, LayerNorm, softmax, mean and sum, their gradients, the losses,
// copies and fills.
//
// Each walks its output row by row (a work item is one row, or one outer index), vectorized along
// the innermost dimension with a masked tail; operands that broadcast along it are splatted.
#include <limits>

#include "backends/llvm/ir_emitter.h"

namespace vitc::llvmbe {
namespace {

using Value = llvm::Value;
using Values = std::vector<Value *>;

// Offsets (in floats) of the row `w` of the outer dimensions of `shape` (all but the last) in each
// operand with the given strides.
Values rowOffsets(Emitter &e, Value *w, const std::vector<int64_t> &shape,
                  const std::vector<const std::vector<int64_t> *> &strides) {
  auto &b = e.b;
  Values offsets(strides.size(), e.c64(0));
  Value *rest = w;
  for (size_t d = shape.size() - 1; d-- > 0;) {
    Value *idx = d == 0 ? rest : b.CreateURem(rest, e.c64(shape[d]));
    if (d > 0)
      rest = b.CreateUDiv(rest, e.c64(shape[d]));
    for (size_t i = 0; i < strides.size(); ++i)
      if ((*strides[i])[d] != 0)
        offsets[i] = b.CreateAdd(offsets[i], b.CreateMul(idx, e.c64((*strides[i])[d])));
  }
  return offsets;
}

// A vector of `lanes` elements of a row read with `stride` (1: contiguous, 0: broadcast).
Value *readStrided(Emitter &e, Value *p, int64_t stride, Value *j, int64_t lanes) {
  if (stride == 0)
    return e.splat(e.loadScalar(p));
  if (stride == 1)
    return e.load(e.at(p, j), lanes);
  return e.gather(e.at(p, e.b.CreateMul(j, e.c64(stride))), stride, lanes);
}

} // namespace

void emitEltwise(Emitter &e, const EltwiseDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0);
  Values ins;
  std::vector<const std::vector<int64_t> *> strides;
  for (size_t i = 0; i < d.strides.size(); ++i) {
    ins.push_back(e.arg(static_cast<int64_t>(i) + 1));
    strides.push_back(&d.strides[i]);
  }
  int64_t inner = d.shape.back();
  e.forEachWorkItem([&](Value *w) {
    Values offsets = rowOffsets(e, w, d.shape, strides);
    Value *outRow = e.at(out, b.CreateMul(w, e.c64(inner)));
    Values rows;
    for (size_t i = 0; i < ins.size(); ++i)
      rows.push_back(e.at(ins[i], offsets[i]));
    e.chunks(inner, [&](Value *j, int64_t lanes) {
      Values x;
      for (size_t i = 0; i < rows.size(); ++i)
        x.push_back(readStrided(e, rows[i], d.strides[i].back(), j, lanes));
      Value *y = nullptr;
      switch (d.op) {
      case EltOp::Add:
        y = b.CreateFAdd(x[0], x[1]);
        break;
      case EltOp::Mul:
        y = b.CreateFMul(x[0], x[1]);
        break;
      case EltOp::Scale:
        y = b.CreateFMul(x[0], e.vf(d.factor));
        break;
      case EltOp::Gelu:
        y = e.gelu(x[0], d.approximate);
        break;
      case EltOp::Sub:
        y = b.CreateFSub(x[0], x[1]);
        break;
      case EltOp::Div:
        y = b.CreateFDiv(x[0], x[1]);
        break;
      case EltOp::Maximum:
        y = e.max(x[0], x[1]);
        break;
      case EltOp::Sqrt:
        y = e.sqrt(x[0]);
        break;
      case EltOp::Sigmoid:
        y = e.sigmoid(x[0]);
        break;
      case EltOp::GeluGrad:
        y = b.CreateFMul(e.geluDerivative(x[0], d.approximate), x[1]);
        break;
      case EltOp::Erf:
        y = e.erf(x[0]);
        break;
      case EltOp::Tanh:
        y = e.tanh(x[0]);
        break;
      }
      e.store(y, e.at(outRow, j), lanes);
    });
  });
  b.CreateRetVoid();
}

void emitLayerNorm(Emitter &e, const LayerNormDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *x = e.arg(1), *scale = e.arg(2);
  Value *bias = d.bias ? e.arg(3) : nullptr;
  e.forEachWorkItem([&](Value *w) {
    Value *row = e.at(x, b.CreateMul(w, e.c64(d.d)));
    Value *outRow = e.at(out, b.CreateMul(w, e.c64(d.d)));
    auto [mean, inv] = e.rowMoments(row, d.d, d.eps);
    Value *meanV = e.splat(mean), *invV = e.splat(inv);
    e.chunks(d.d, [&](Value *j, int64_t lanes) {
      Value *y = b.CreateFMul(b.CreateFSub(e.load(e.at(row, j), lanes), meanV), invV);
      y = b.CreateFMul(y, e.load(e.at(scale, j), lanes));
      if (bias)
        y = b.CreateFAdd(y, e.load(e.at(bias, j), lanes));
      e.store(y, e.at(outRow, j), lanes);
    });
  });
  b.CreateRetVoid();
}

void emitSoftmax(Emitter &e, const SoftmaxDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *x = e.arg(1);
  Value *minusInf = e.vf(-std::numeric_limits<float>::infinity());
  e.forEachWorkItem([&](Value *w) {
    Value *row = e.at(x, b.CreateMul(w, e.c64(d.d)));
    Value *outRow = e.at(out, b.CreateMul(w, e.c64(d.d)));
    Value *mx = e.chunks(d.d, {minusInf}, [&](Value *j, int64_t lanes, const Values &acc) {
      return Values{e.max(acc[0], e.load(e.at(row, j), lanes, minusInf))};
    })[0];
    Value *mxv = e.splat(e.maxOf(mx));
    Value *sum = e.chunks(d.d, {e.vf(0.0f)}, [&](Value *j, int64_t lanes, const Values &acc) {
      Value *p = e.exp(b.CreateFSub(e.load(e.at(row, j), lanes), mxv));
      e.store(p, e.at(outRow, j), lanes);
      if (lanes < e.vw)
        p = b.CreateSelect(e.mask(lanes), p, e.vf(0.0f));
      return Values{b.CreateFAdd(acc[0], p)};
    })[0];
    Value *inv = e.splat(b.CreateFDiv(e.cf(1.0f), e.sumOf(sum)));
    e.chunks(d.d, [&](Value *j, int64_t lanes) {
      e.store(b.CreateFMul(e.load(e.at(outRow, j), lanes), inv), e.at(outRow, j), lanes);
    });
  });
  b.CreateRetVoid();
}

void emitMean(Emitter &e, const MeanDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *x = e.arg(1);
  float invN = d.divide ? 1.0f / static_cast<float>(d.n) : 1.0f;
  if (d.inner == 1) {
    e.forEachWorkItem([&](Value *o) {
      Value *slab = e.at(x, b.CreateMul(o, e.c64(d.n)));
      Value *sum = e.chunks(d.n, {e.vf(0.0f)}, [&](Value *j, int64_t lanes, const Values &acc) {
        return Values{b.CreateFAdd(acc[0], e.load(e.at(slab, j), lanes))};
      })[0];
      e.storeScalar(b.CreateFMul(e.sumOf(sum), e.cf(invN)), e.at(out, o));
    });
    b.CreateRetVoid();
    return;
  }
  // A block of `width` columns starting at `slab` (row i at slab + i * inner): every row adds
  // its stretch of the block into one register per vector, read contiguously.
  auto sumColumns = [&](Value *slab, Value *outRow, int64_t width) {
    int64_t vectors = ceilDiv(width, e.vw);
    auto lanesOf = [&](int64_t v) { return std::min(e.vw, width - v * e.vw); };
    Values acc = e.loop(e.c64(0), e.c64(d.n), 1, Values(static_cast<size_t>(vectors), e.vf(0.0f)),
                        [&](Value *i, const Values &in) {
                          Value *row = e.at(slab, b.CreateMul(i, e.c64(d.inner)));
                          Values next;
                          for (int64_t v = 0; v < vectors; ++v)
                            next.push_back(b.CreateFAdd(in[static_cast<size_t>(v)],
                                                        e.load(e.at(row, v * e.vw), lanesOf(v))));
                          return next;
                        });
    for (int64_t v = 0; v < vectors; ++v)
      e.store(b.CreateFMul(acc[static_cast<size_t>(v)], e.vf(invN)), e.at(outRow, v * e.vw),
              lanesOf(v));
  };
  int64_t block = meanColumnBlock(d), blocks = ceilDiv(d.inner, block);
  int64_t fullBlocks = d.inner / block, tail = d.inner - fullBlocks * block;
  e.forEachWorkItem([&](Value *w) {
    Value *o = b.CreateUDiv(w, e.c64(blocks)), *k = b.CreateURem(w, e.c64(blocks));
    Value *column = b.CreateMul(k, e.c64(block));
    Value *slab = e.at(x, b.CreateAdd(b.CreateMul(o, e.c64(d.n * d.inner)), column));
    Value *outRow = e.at(out, b.CreateAdd(b.CreateMul(o, e.c64(d.inner)), column));
    if (fullBlocks > 0)
      e.ifThen(b.CreateICmpULT(k, e.c64(fullBlocks)), [&] { sumColumns(slab, outRow, block); });
    if (tail > 0)
      e.ifThen(b.CreateICmpEQ(k, e.c64(fullBlocks)), [&] { sumColumns(slab, outRow, tail); });
  });
  b.CreateRetVoid();
}

void emitLayerNormGrad(Emitter &e, const LayerNormGradDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *x = e.arg(1), *scale = e.arg(2), *dy = e.arg(3);
  Value *zero = e.vf(0.0f);
  e.forEachWorkItem([&](Value *w) {
    Value *row = e.at(x, b.CreateMul(w, e.c64(d.d)));
    Value *dyRow = e.at(dy, b.CreateMul(w, e.c64(d.d)));
    Value *outRow = e.at(out, b.CreateMul(w, e.c64(d.d)));
    auto [mean, inv] = e.rowMoments(row, d.d, d.eps);
    Value *meanV = e.splat(mean), *invV = e.splat(inv);
    // g = dy * scale and xhat = (x - mean) * inv; lanes past the row read dy and scale as zero,
    // so their g is zero and they add nothing to either sum.
    auto gAndXhat = [&](Value *j, int64_t lanes) {
      Value *g = b.CreateFMul(e.load(e.at(dyRow, j), lanes), e.load(e.at(scale, j), lanes));
      Value *xhat = b.CreateFMul(b.CreateFSub(e.load(e.at(row, j), lanes), meanV), invV);
      return std::make_pair(g, xhat);
    };
    Values sums = e.chunks(d.d, {zero, zero}, [&](Value *j, int64_t lanes, const Values &acc) {
      auto [g, xhat] = gAndXhat(j, lanes);
      return Values{b.CreateFAdd(acc[0], g), e.fma(g, xhat, acc[1])};
    });
    float invD = 1.0f / static_cast<float>(d.d);
    Value *meanG = e.splat(b.CreateFMul(e.sumOf(sums[0]), e.cf(invD)));
    Value *meanGXhat = e.splat(b.CreateFMul(e.sumOf(sums[1]), e.cf(invD)));
    e.chunks(d.d, [&](Value *j, int64_t lanes) {
      auto [g, xhat] = gAndXhat(j, lanes);
      Value *centered = b.CreateFSub(b.CreateFSub(g, meanG), b.CreateFMul(xhat, meanGXhat));
      e.store(b.CreateFMul(centered, invV), e.at(outRow, j), lanes);
    });
  });
  b.CreateRetVoid();
}

void emitSoftmaxGrad(Emitter &e, const SoftmaxGradDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *y = e.arg(1), *dy = e.arg(2);
  e.forEachWorkItem([&](Value *w) {
    Value *yRow = e.at(y, b.CreateMul(w, e.c64(d.d)));
    Value *dyRow = e.at(dy, b.CreateMul(w, e.c64(d.d)));
    Value *outRow = e.at(out, b.CreateMul(w, e.c64(d.d)));
    // Masked lanes read as zero and add nothing to the dot product.
    Value *dot = e.chunks(d.d, {e.vf(0.0f)}, [&](Value *j, int64_t lanes, const Values &acc) {
      return Values{e.fma(e.load(e.at(yRow, j), lanes), e.load(e.at(dyRow, j), lanes), acc[0])};
    })[0];
    Value *dotV = e.splat(e.sumOf(dot));
    e.chunks(d.d, [&](Value *j, int64_t lanes) {
      Value *p = e.load(e.at(yRow, j), lanes);
      e.store(b.CreateFMul(p, b.CreateFSub(e.load(e.at(dyRow, j), lanes), dotV)), e.at(outRow, j),
              lanes);
    });
  });
  b.CreateRetVoid();
}

void emitLoss(Emitter &e, const LossDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *logits = e.arg(1), *labels = e.arg(2);
  Value *zero = e.vf(0.0f), *one = e.vf(1.0f);
  e.forEachWorkItem([&](Value *w) {
    Value *z = e.at(logits, b.CreateMul(w, e.c64(d.d)));
    Value *y = e.at(labels, b.CreateMul(w, e.c64(d.d)));
    Value *loss = nullptr;
    if (d.sigmoid) {
      // sum_c softplus(z) - y z, softplus(z) = max(z, 0) + log(1 + exp(-|z|)): exp never
      // overflows. Masked lanes read z = 0 (softplus log 2), so they are selected away.
      loss = e.chunks(d.d, {zero}, [&](Value *j, int64_t lanes, const Values &acc) {
        Value *zv = e.load(e.at(z, j), lanes), *yv = e.load(e.at(y, j), lanes);
        Value *absZ = e.max(zv, b.CreateFNeg(zv));
        Value *softplus =
            b.CreateFAdd(e.max(zv, zero), e.log(b.CreateFAdd(e.exp(b.CreateFNeg(absZ)), one)));
        Value *term = b.CreateFSub(softplus, b.CreateFMul(yv, zv));
        if (lanes < e.vw)
          term = b.CreateSelect(e.mask(lanes), term, zero);
        return Values{b.CreateFAdd(acc[0], term)};
      })[0];
      e.storeScalar(e.sumOf(loss), e.at(out, w));
      return;
    }
    // sum_c y (lse - z) with lse = max + log(sum exp(z - max)): exp never overflows.
    Value *minusInf = e.vf(-std::numeric_limits<float>::infinity());
    Value *mx = e.chunks(d.d, {minusInf}, [&](Value *j, int64_t lanes, const Values &acc) {
      return Values{e.max(acc[0], e.load(e.at(z, j), lanes, minusInf))};
    })[0];
    Value *mxV = e.splat(e.maxOf(mx));
    Value *sumExp = e.chunks(d.d, {zero}, [&](Value *j, int64_t lanes, const Values &acc) {
      Value *p = e.exp(b.CreateFSub(e.load(e.at(z, j), lanes), mxV));
      if (lanes < e.vw)
        p = b.CreateSelect(e.mask(lanes), p, zero);
      return Values{b.CreateFAdd(acc[0], p)};
    })[0];
    Value *lse = b.CreateFAdd(mxV, e.log(e.splat(e.sumOf(sumExp))));
    // Masked lanes read y as zero.
    loss = e.chunks(d.d, {zero}, [&](Value *j, int64_t lanes, const Values &acc) {
      Value *margin = b.CreateFSub(lse, e.load(e.at(z, j), lanes));
      return Values{e.fma(e.load(e.at(y, j), lanes), margin, acc[0])};
    })[0];
    e.storeScalar(e.sumOf(loss), e.at(out, w));
  });
  b.CreateRetVoid();
}

void emitCopy(Emitter &e, const CopyDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *dst = e.at(e.arg(0), d.dstOffset), *src = e.at(e.arg(1), d.srcOffset);
  int64_t inner = d.shape.back();
  int64_t srcInner = d.srcStrides.back(), dstInner = d.dstStrides.back();
  int64_t rows = copyRowsPerItem(d);
  auto copyRow = [&](Value *from, Value *to) {
    e.chunks(inner, [&](Value *j, int64_t lanes) {
      Value *x = readStrided(e, from, srcInner, j, lanes);
      if (dstInner == 1)
        e.store(x, e.at(to, j), lanes);
      else
        e.scatter(x, e.at(to, b.CreateMul(j, e.c64(dstInner))), dstInner, lanes);
    });
  };
  e.forEachWorkItem([&](Value *w) {
    if (rows == 1) {
      Values offsets = rowOffsets(e, w, d.shape, {&d.srcStrides, &d.dstStrides});
      copyRow(e.at(src, offsets[0]), e.at(dst, offsets[1]));
      return;
    }
    // The item's rows are all of the next-to-last dimension, from its row 0 on.
    size_t rank = d.shape.size();
    Values offsets =
        rowOffsets(e, b.CreateMul(w, e.c64(rows)), d.shape, {&d.srcStrides, &d.dstStrides});
    int64_t srcRow = d.srcStrides[rank - 2], dstRow = d.dstStrides[rank - 2];
    e.loop(0, rows, 1, [&](Value *r) {
      copyRow(e.at(src, b.CreateAdd(offsets[0], b.CreateMul(r, e.c64(srcRow)))),
              e.at(dst, b.CreateAdd(offsets[1], b.CreateMul(r, e.c64(dstRow)))));
    });
  });
  b.CreateRetVoid();
}

void emitFill(Emitter &e, const FillDesc &d, const std::string &name) {
  e.beginKernel(name);
  Value *out = e.arg(0);
  e.forEachWorkItem([&](Value *) {
    e.chunks(d.n, [&](Value *j, int64_t lanes) { e.store(e.vf(d.value), e.at(out, j), lanes); });
  });
  e.b.CreateRetVoid();
}

void emitConvert(Emitter &e, const ConvertDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *out = e.arg(0), *in = e.arg(1);
  e.forEachWorkItem([&](Value *row) {
    Value *first = b.CreateMul(row, e.c64(d.cols));
    e.chunks(d.cols, [&](Value *j, int64_t lanes) {
      Value *at = b.CreateAdd(first, j);
      if (d.toBf16)
        e.storeHalves(e.roundToHalves(e.load(e.at(in, at), lanes)), e.halfAt(out, at), lanes);
      else
        e.store(e.widenHalves(e.loadHalves(e.halfAt(in, at), lanes)), e.at(out, at), lanes);
    });
  });
  b.CreateRetVoid();
}

} // namespace vitc::llvmbe
