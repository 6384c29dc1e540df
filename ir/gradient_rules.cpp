// The gradient rule of every op kind.
//
// Rules build only ops the table defines, so the backward pass is IR like the forward pass. Where
// an operand was broadcast by the op (NumPy-style binary ops, `broadcast`), its gradient is the
// result's gradient summed back to the operand's shape (`sumTo`). The ops a rule creates take the
// name of the op they differentiate with a `.bwd` suffix; autodiff names the gradient totals.
#include "ir/gradient_rules.h"

#include <cassert>

#include "ir/builder.h"

namespace vitc::ir {
namespace {

using Grads = Expected<std::vector<Op *>>;

// The value `op` defines, as an operand of the backward ops. Rules only read the ops they are
// given; the builder needs a non-const pointer to make it an operand.
Op *valueOf(const Op &op) { return const_cast<Op *>(&op); }

std::string bwd(const Op &op) { return op.name + ".bwd"; }

// `shape` with a 1 inserted at `axis`.
Shape withUnitDim(Shape shape, int64_t axis) {
  shape.insert(shape.begin() + axis, 1);
  return shape;
}

// The gradient `g` of a value broadcast from `shape` (NumPy rules: aligned on the right), summed
// over the dimensions the broadcast added or widened from 1.
Op *sumTo(Builder &b, Op *g, const Shape &shape, const std::string &name) {
  if (g->shape() == shape)
    return g;
  const Shape &from = g->shape();
  assert(from.size() >= shape.size() && "sumTo reduces to a shape of lower or equal rank");
  size_t lead = from.size() - shape.size();
  if (lead > 0) {
    // The leading dimensions the broadcast added: folded into one, then summed away.
    if (lead > 1) {
      Shape folded{1};
      for (size_t d = 0; d < lead; ++d)
        folded[0] *= from[d];
      folded.insert(folded.end(), from.begin() + static_cast<std::ptrdiff_t>(lead), from.end());
      g = b.reshape(g, folded, name);
    }
    g = b.sum(g, 0, name);
  }
  // Dimensions widened from 1, summed from the last so that the earlier ones keep their index.
  for (size_t d = shape.size(); d-- > 0;)
    if (shape[d] == 1 && g->shape()[d] != 1)
      g = b.sum(g, static_cast<int64_t>(d), name);
  if (g->shape() != shape)
    g = b.reshape(g, shape, name);
  return g;
}

// `dy` [...] read as [..., 1], to scale every class of an example by its loss gradient.
Op *perExample(Builder &b, Op *dy, const std::string &name) {
  return b.reshape(dy, withUnitDim(dy->shape(), dy->rank()), name);
}

// The gradient of a reduction over `axis` of `x`: `dy` spread back over that axis.
Op *spread(Builder &b, Op *dy, const Op &x, int64_t axis, const std::string &name) {
  Op *g = b.reshape(dy, withUnitDim(dy->shape(), axis), name);
  return b.broadcast(g, x.shape(), name);
}

} // namespace

Expected<std::vector<Op *>> gradNone(Builder &, const Op &op, Op *) {
  return Error(fmt::format("op '{}' has no gradient rule", op.keyword()));
}

// y = a·b with b [K, N] (or [N, K] with transpose_b), 2-D or batched like a:
//   da = dy·b^T, db = a^T·dy (or dy^T·a), over all rows of a when b is 2-D.
Expected<std::vector<Op *>> gradMatMul(Builder &b, const Op &op, Op *dy) {
  Op *x = op.operand(0), *w = op.operand(1);
  bool transposeB = op.attrs.getBool("transpose_b");
  std::string name = bwd(op);
  Op *dx = b.matmul(dy, w, !transposeB, name);
  Op *rows = x, *drows = dy;
  if (w->rank() == 2 && x->rank() > 2) {
    // Every row of x met the same weight: the weight's gradient sums over all of them.
    int64_t r = numElements(x->shape()) / x->shape().back();
    rows = b.reshape(x, {r, x->shape().back()}, name);
    drows = b.reshape(dy, {r, dy->shape().back()}, name);
  }
  // The transpose of the last two dimensions.
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < rows->rank(); ++d)
    perm.push_back(d);
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  Op *dw = transposeB ? b.matmul(b.transpose(drows, perm, name), rows, false, name)
                      : b.matmul(b.transpose(rows, perm, name), drows, false, name);
  return std::vector<Op *>{dx, dw};
}

Expected<std::vector<Op *>> gradAdd(Builder &b, const Op &op, Op *dy) {
  std::string name = bwd(op);
  return std::vector<Op *>{sumTo(b, dy, op.operand(0)->shape(), name),
                           sumTo(b, dy, op.operand(1)->shape(), name)};
}

Expected<std::vector<Op *>> gradSub(Builder &b, const Op &op, Op *dy) {
  std::string name = bwd(op);
  return std::vector<Op *>{sumTo(b, dy, op.operand(0)->shape(), name),
                           b.scale(sumTo(b, dy, op.operand(1)->shape(), name), -1, name)};
}

Expected<std::vector<Op *>> gradMul(Builder &b, const Op &op, Op *dy) {
  Op *x = op.operand(0), *y = op.operand(1);
  std::string name = bwd(op);
  return std::vector<Op *>{sumTo(b, b.mul(dy, y, name), x->shape(), name),
                           sumTo(b, b.mul(dy, x, name), y->shape(), name)};
}

// y = a / b: da = dy / b, db = -dy * y / b.
Expected<std::vector<Op *>> gradDiv(Builder &b, const Op &op, Op *dy) {
  Op *num = op.operand(0), *den = op.operand(1);
  std::string name = bwd(op);
  Op *dnum = b.div(dy, den, name);
  Op *dden = b.scale(b.div(b.mul(dy, valueOf(op), name), den, name), -1, name);
  return std::vector<Op *>{sumTo(b, dnum, num->shape(), name), sumTo(b, dden, den->shape(), name)};
}

Expected<std::vector<Op *>> gradScale(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{b.scale(dy, op.attrs.getFloat("factor"), bwd(op))};
}

// y = sqrt(x): dx = 0.5 * dy / y.
Expected<std::vector<Op *>> gradSqrt(Builder &b, const Op &op, Op *dy) {
  std::string name = bwd(op);
  return std::vector<Op *>{b.scale(b.div(dy, valueOf(op), name), 0.5, name)};
}

// y = sigmoid(x): dx = dy * y * (1 - y).
Expected<std::vector<Op *>> gradSigmoid(Builder &b, const Op &op, Op *dy) {
  std::string name = bwd(op);
  Op *y = valueOf(op);
  Op *slope = b.mul(y, b.sub(b.fill({}, 1.0, name), y, name), name);
  return std::vector<Op *>{b.mul(dy, slope, name)};
}

Expected<std::vector<Op *>> gradGelu(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{b.geluGrad(op.operand(0), dy, op.attrs.getBool("approximate"), bwd(op))};
}

// y = layer_norm(x, scale[, bias]) = xhat * scale + bias, xhat the normalized x:
//   dx = layer_norm_grad(x, scale, dy), dscale = sum over rows of dy * xhat, dbias = that of dy.
Expected<std::vector<Op *>> gradLayerNorm(Builder &b, const Op &op, Op *dy) {
  Op *x = op.operand(0), *scale = op.operand(1);
  double eps = op.attrs.getFloat("eps");
  std::string name = bwd(op);
  std::vector<Op *> grads{b.layerNormGrad(x, scale, dy, eps, name)};
  Op *xhat = b.layerNorm(x, b.fill(scale->shape(), 1.0, name), nullptr, eps, name);
  grads.push_back(sumTo(b, b.mul(dy, xhat, name), scale->shape(), name));
  if (op.operands.size() == 3)
    grads.push_back(sumTo(b, dy, op.operand(2)->shape(), name));
  return grads;
}

Expected<std::vector<Op *>> gradSoftmax(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{b.softmaxGrad(valueOf(op), dy, bwd(op))};
}

Expected<std::vector<Op *>> gradMean(Builder &b, const Op &op, Op *dy) {
  const Op &x = *op.operand(0);
  int64_t axis = op.attrs.getInt("axis");
  std::string name = bwd(op);
  Op *scaled = b.scale(dy, 1.0 / static_cast<double>(x.shape()[static_cast<size_t>(axis)]), name);
  return std::vector<Op *>{spread(b, scaled, x, axis, name)};
}

Expected<std::vector<Op *>> gradSum(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{spread(b, dy, *op.operand(0), op.attrs.getInt("axis"), bwd(op))};
}

// y = convert(x): the gradient goes back to x's element type.
Expected<std::vector<Op *>> gradConvert(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{b.convert(dy, op.operand(0)->type.dtype, bwd(op))};
}

Expected<std::vector<Op *>> gradReshape(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{b.reshape(dy, op.operand(0)->shape(), bwd(op))};
}

Expected<std::vector<Op *>> gradTranspose(Builder &b, const Op &op, Op *dy) {
  const std::vector<int64_t> &perm = op.attrs.getInts("perm");
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return std::vector<Op *>{b.transpose(dy, std::move(inverse), bwd(op))};
}

Expected<std::vector<Op *>> gradBroadcast(Builder &b, const Op &op, Op *dy) {
  return std::vector<Op *>{sumTo(b, dy, op.operand(0)->shape(), bwd(op))};
}

Expected<std::vector<Op *>> gradConcat(Builder &b, const Op &op, Op *dy) {
  int64_t axis = op.attrs.getInt("axis");
  std::string name = bwd(op);
  std::vector<Op *> grads;
  int64_t offset = 0;
  for (const Op *x : op.operands) {
    int64_t size = x->shape()[static_cast<size_t>(axis)];
    // Numbered by hand: a concat may have many operands, and the module would try ".1", ".2", ...
    // for each.
    grads.push_back(b.slice(dy, axis, offset, size, fmt::format("{}.{}", name, grads.size())));
    offset += size;
  }
  return grads;
}

// The gradient of a slice is dy in its place and zeros around it.
Expected<std::vector<Op *>> gradSlice(Builder &b, const Op &op, Op *dy) {
  const Shape &whole = op.operand(0)->shape();
  int64_t axis = op.attrs.getInt("axis"), start = op.attrs.getInt("start");
  int64_t size = op.attrs.getInt("size");
  std::string name = bwd(op);
  auto zeros = [&](int64_t n) {
    Shape s = whole;
    s[static_cast<size_t>(axis)] = n;
    return b.fill(s, 0.0, name);
  };
  std::vector<Op *> parts;
  int64_t after = whole[static_cast<size_t>(axis)] - start - size;
  if (start > 0)
    parts.push_back(zeros(start));
  parts.push_back(dy);
  if (after > 0)
    parts.push_back(zeros(after));
  return std::vector<Op *>{parts.size() == 1 ? dy : b.concat(parts, axis, name)};
}

// l = -sum_c y_c * log_softmax(z)_c: dz = (softmax(z) * sum_c y_c - y) * dl. The labels get no
// gradient.
Expected<std::vector<Op *>> gradSoftmaxCrossEntropy(Builder &b, const Op &op, Op *dy) {
  Op *logits = op.operand(0), *labels = op.operand(1);
  std::string name = bwd(op);
  Op *total = perExample(b, b.sum(labels, labels->rank() - 1, name), name);
  Op *diff = b.sub(b.mul(b.softmax(logits, name), total, name), labels, name);
  return std::vector<Op *>{b.mul(diff, perExample(b, dy, name), name), nullptr};
}

// l = sum_c softplus(z_c) - y_c * z_c: dz = (sigmoid(z) - y) * dl. The labels get no gradient.
Expected<std::vector<Op *>> gradSigmoidCrossEntropy(Builder &b, const Op &op, Op *dy) {
  Op *logits = op.operand(0), *labels = op.operand(1);
  std::string name = bwd(op);
  Op *diff = b.sub(b.sigmoid(logits, name), labels, name);
  return std::vector<Op *>{b.mul(diff, perExample(b, dy, name), name), nullptr};
}

} // namespace vitc::ir
