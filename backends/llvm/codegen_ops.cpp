// Kernels for elementwise ops, LayerNorm, softmax, mean, copies and fills.
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
  float invN = 1.0f / static_cast<float>(d.n);
  e.forEachWorkItem([&](Value *o) {
    Value *slab = e.at(x, b.CreateMul(o, e.c64(d.n * d.inner)));
    if (d.inner == 1) {
      Value *sum = e.chunks(d.n, {e.vf(0.0f)}, [&](Value *j, int64_t lanes, const Values &acc) {
        return Values{b.CreateFAdd(acc[0], e.load(e.at(slab, j), lanes))};
      })[0];
      e.storeScalar(b.CreateFMul(e.sumOf(sum), e.cf(invN)), e.at(out, o));
      return;
    }
    Value *outRow = e.at(out, b.CreateMul(o, e.c64(d.inner)));
    e.chunks(d.inner, [&](Value *j, int64_t lanes) {
      Value *sum = e.loop(e.c64(0), e.c64(d.n), 1, {e.vf(0.0f)}, [&](Value *i, const Values &acc) {
        Value *p = e.at(slab, b.CreateAdd(b.CreateMul(i, e.c64(d.inner)), j));
        return Values{b.CreateFAdd(acc[0], e.load(p, lanes))};
      })[0];
      e.store(b.CreateFMul(sum, e.vf(invN)), e.at(outRow, j), lanes);
    });
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

} // namespace vitc::llvmbe
