// The shape and sharding rule of every op kind.
#include "ir/shape_rules.h"

#include <algorithm>

namespace vitc::ir {
namespace {

template <typename... Args> Error fail(fmt::format_string<Args...> f, Args &&...args) {
  return Error(fmt::format(f, std::forward<Args>(args)...));
}

const std::string &axisName(const Mesh &mesh, int axis) {
  static const std::string unknown = "?";
  return axis >= 0 && axis < static_cast<int>(mesh.axes.size()) ? mesh.axes[axis].name : unknown;
}

Status requireNotPartial(const TensorType &t, const Mesh &mesh, std::string_view what) {
  for (int a = 0; a < static_cast<int>(mesh.axes.size()); ++a)
    if (t.sharding.isPartial(a))
      return fail("{} is a partial sum over '{}': reduce it first", what, axisName(mesh, a));
  return Status::ok();
}

Status requireDimLocal(const TensorType &t, size_t d, const Mesh &mesh, std::string_view why) {
  int axis = t.sharding.dimAxis(d);
  if (axis != kNoAxis)
    return fail("dimension {} is split over '{}' but {}", d, axisName(mesh, axis), why);
  return Status::ok();
}

Expected<int> meshAxisOf(const Op &op, const Mesh &mesh) {
  const std::string &name = op.attrs.getStr("mesh_axis");
  int axis = mesh.axisIndex(name);
  if (axis < 0)
    return fail("unknown mesh axis '{}' (the mesh is {})", name, mesh.str());
  return axis;
}

Expected<size_t> dimAttr(const Op &op, std::string_view attr, size_t rank) {
  int64_t d = op.attrs.getInt(attr);
  if (d < 0 || d >= static_cast<int64_t>(rank))
    return fail("{} = {} is out of range for rank {}", attr, d, rank);
  return static_cast<size_t>(d);
}

// Operands that an op combines element by element must hold one element type.
Status requireSameDType(const TensorType &a, const TensorType &b, std::string_view what) {
  if (a.dtype != b.dtype)
    return fail("{} is {}, unlike the {} it goes with", what, dtypeName(b.dtype),
                dtypeName(a.dtype));
  return Status::ok();
}

TensorType withShape(const TensorType &like, Shape shape) {
  TensorType t = like;
  t.shape = std::move(shape);
  t.sharding.dims.resize(t.shape.size());
  return t;
}

} // namespace

Expected<TensorType> inferDeclared(const Op &op, const Mesh &) {
  TensorType t = op.type;
  if (t.sharding.dims.size() != t.shape.size())
    t.sharding.dims.resize(t.shape.size());
  return t;
}

Expected<TensorType> inferNothing(const Op &, const Mesh &) { return TensorType{}; }

Expected<TensorType> inferMatMul(const Op &op, const Mesh &mesh) {
  const TensorType &a = op.operand(0)->type;
  const TensorType &b = op.operand(1)->type;
  bool tb = op.attrs.getBool("transpose_b");
  if (a.rank() < 2 || b.rank() < 2)
    return fail("matmul operands need rank 2 or more, got {} and {}", shapeString(a.shape),
                shapeString(b.shape));
  if (b.rank() != 2 && b.rank() != a.rank())
    return fail("matmul's right operand must be a matrix or have the left's rank, got {} and {}",
                shapeString(a.shape), shapeString(b.shape));
  if (a.dtype != b.dtype)
    return fail("matmul operands have different element types");
  size_t ra = a.rank(), rb = b.rank();
  size_t bk = tb ? rb - 1 : rb - 2, bn = tb ? rb - 2 : rb - 1;
  if (a.shape[ra - 1] != b.shape[bk])
    return fail("matmul contracts {} with {}: inner sizes {} and {} differ{}", shapeString(a.shape),
                shapeString(b.shape), a.shape[ra - 1], b.shape[bk],
                tb ? " (right operand transposed)" : "");
  Shape shape(a.shape.begin(), a.shape.end() - 1);
  shape.push_back(b.shape[bn]);
  TensorType r = withShape(a, shape);
  // Products accumulate in f32 whatever the operands hold (bf16 inputs, f32 accumulation).
  r.dtype = DType::F32;
  if (rb == ra) {
    for (size_t d = 0; d + 2 < ra; ++d) {
      if (a.shape[d] != b.shape[d])
        return fail("matmul batch dimension {} differs: {} and {}", d, a.shape[d], b.shape[d]);
      if (!(a.sharding.dims[d] == b.sharding.dims[d]))
        return fail("matmul batch dimension {} is split differently in its operands", d);
    }
  }
  r.sharding.dims[ra - 1] = b.sharding.dims[bn];
  const DimSharding &ka = a.sharding.dims[ra - 1];
  const DimSharding &kb = b.sharding.dims[bk];
  if (!(ka == kb))
    return fail("matmul contracting dimension is split over '{}' on the left and '{}' on the right",
                ka.axis == kNoAxis ? "nothing" : axisName(mesh, ka.axis),
                kb.axis == kNoAxis ? "nothing" : axisName(mesh, kb.axis));
  if (a.sharding.partial & b.sharding.partial)
    return fail("both matmul operands are partial sums over the same axis");
  // Over a manual axis each device's product is its own business: no sum is owed.
  r.sharding.manual = a.sharding.manual | b.sharding.manual;
  r.sharding.partial = a.sharding.partial | b.sharding.partial;
  if (ka.axis != kNoAxis)
    r.sharding.partial |= 1u << ka.axis;
  r.sharding.partial &= ~r.sharding.manual;
  if (r.sharding.partialOverlapsDims())
    return fail("matmul result would be both split and owed a sum over one mesh axis");
  return r;
}

Expected<TensorType> inferBroadcastBinary(const Op &op, const Mesh &mesh) {
  const TensorType &a = op.operand(0)->type;
  const TensorType &b = op.operand(1)->type;
  if (a.dtype != b.dtype)
    return fail("operands have different element types");
  size_t rank = std::max(a.rank(), b.rank());
  TensorType r = a.rank() >= b.rank() ? a : b;
  r.shape.assign(rank, 1);
  r.sharding.dims.assign(rank, DimSharding{});
  for (size_t i = 0; i < rank; ++i) {
    // i counts dimensions from the right.
    bool inA = i < a.rank(), inB = i < b.rank();
    int64_t da = inA ? a.shape[a.rank() - 1 - i] : 1;
    int64_t db = inB ? b.shape[b.rank() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      return fail("shapes {} and {} do not broadcast", shapeString(a.shape), shapeString(b.shape));
    int64_t size = std::max(da, db);
    size_t out = rank - 1 - i;
    r.shape[out] = size;
    std::optional<DimSharding> chosen;
    for (int side = 0; side < 2; ++side) {
      const TensorType &t = side == 0 ? a : b;
      bool present = side == 0 ? inA : inB;
      int64_t extent = side == 0 ? da : db;
      if (!present)
        continue;
      const DimSharding &ds = t.sharding.dims[t.rank() - 1 - i];
      if (extent != size) {
        if (ds.axis != kNoAxis)
          return fail("a broadcast dimension cannot be split over '{}'", axisName(mesh, ds.axis));
        continue;
      }
      if (chosen && !(*chosen == ds))
        return fail("dimension {} is split differently in the two operands", out);
      chosen = ds;
    }
    if (chosen)
      r.sharding.dims[out] = *chosen;
  }
  r.sharding.manual = a.sharding.manual | b.sharding.manual;
  if (op.is(OpKind::Add) || op.is(OpKind::Sub)) {
    if (a.sharding.partial != b.sharding.partial)
      return fail("adding a partial sum to a value that is not partial over the same axes");
    r.sharding.partial = a.sharding.partial;
  } else if (op.is(OpKind::Div) || op.is(OpKind::Maximum)) {
    // A quotient is linear in its numerator only; a maximum in neither.
    if (b.sharding.partial || (op.is(OpKind::Maximum) && a.sharding.partial))
      return fail("{} of a partial sum: reduce it first", op.keyword());
    r.sharding.partial = a.sharding.partial;
  } else {
    if (a.sharding.partial && b.sharding.partial)
      return fail("multiplying two partial sums");
    r.sharding.partial = a.sharding.partial | b.sharding.partial;
  }
  return r;
}

Expected<TensorType> inferLinear(const Op &op, const Mesh &) { return op.operand(0)->type; }

Expected<TensorType> inferNonlinear(const Op &op, const Mesh &mesh) {
  VITC_TRY(requireNotPartial(op.operand(0)->type, mesh, "the operand"));
  return op.operand(0)->type;
}

Expected<TensorType> inferLayerNorm(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  if (x.rank() < 1)
    return fail("layer_norm needs rank 1 or more");
  int64_t d = x.shape.back();
  VITC_TRY(requireNotPartial(x, mesh, "the normalized value"));
  VITC_TRY(requireDimLocal(x, x.rank() - 1, mesh, "layer_norm normalizes over it"));
  // layer_norm_grad's third operand is the gradient, checked by its own rule.
  size_t end = op.is(OpKind::LayerNormGrad) ? 2 : op.operands.size();
  for (size_t i = 1; i < end; ++i) {
    const TensorType &p = op.operand(i)->type;
    std::string_view what = i == 1 ? "scale" : "bias";
    if (p.shape != Shape{d})
      return fail("layer_norm {} has shape {}, expected [{}]", what, shapeString(p.shape), d);
    if (!p.sharding.isReplicated())
      return fail("layer_norm {} must be replicated", what);
    VITC_TRY(requireSameDType(x, p, fmt::format("layer_norm {}", what)));
  }
  return x;
}

Expected<TensorType> inferLayerNormGrad(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  const TensorType &dy = op.operand(2)->type;
  if (x.rank() < 1)
    return fail("layer_norm_grad needs rank 1 or more");
  if (dy.shape != x.shape || !(dy.sharding == x.sharding) || dy.dtype != x.dtype)
    return fail("layer_norm_grad's gradient has type {}, unlike its input's {}",
                typeString(dy.dtype, dy.shape, dy.sharding, mesh),
                typeString(x.dtype, x.shape, x.sharding, mesh));
  VITC_TRY(requireNotPartial(dy, mesh, "the gradient"));
  return inferLayerNorm(op, mesh);
}

Expected<TensorType> inferSameShapeBinary(const Op &op, const Mesh &mesh) {
  const TensorType &a = op.operand(0)->type;
  const TensorType &b = op.operand(1)->type;
  if (a.shape != b.shape || !(a.sharding == b.sharding) || a.dtype != b.dtype)
    return fail("operands have different types: {} and {}",
                typeString(a.dtype, a.shape, a.sharding, mesh),
                typeString(b.dtype, b.shape, b.sharding, mesh));
  VITC_TRY(requireNotPartial(a, mesh, "the first operand"));
  VITC_TRY(requireNotPartial(b, mesh, "the second operand"));
  if (op.is(OpKind::SoftmaxGrad))
    VITC_TRY(requireDimLocal(a, a.rank() - 1, mesh, "softmax_grad sums along it"));
  return a;
}

Expected<TensorType> inferLoss(const Op &op, const Mesh &mesh) {
  const TensorType &logits = op.operand(0)->type;
  const TensorType &labels = op.operand(1)->type;
  if (logits.rank() < 1)
    return fail("{} needs logits of rank 1 or more", op.keyword());
  if (labels.shape != logits.shape)
    return fail("labels {} do not match logits {}: labels are per-class probabilities",
                shapeString(labels.shape), shapeString(logits.shape));
  if (!(labels.sharding == logits.sharding))
    return fail("labels are split as {}, unlike the logits ({})",
                typeString(labels.dtype, labels.shape, labels.sharding, mesh),
                typeString(logits.dtype, logits.shape, logits.sharding, mesh));
  VITC_TRY(requireSameDType(logits, labels, "the labels"));
  VITC_TRY(requireNotPartial(logits, mesh, "the logits"));
  VITC_TRY(requireDimLocal(logits, logits.rank() - 1, mesh, "the loss sums over the classes"));
  TensorType r = logits;
  r.shape.pop_back();
  r.sharding.dims.pop_back();
  return r;
}

Expected<TensorType> inferLastDimLocal(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  if (x.rank() < 1)
    return fail("needs rank 1 or more");
  VITC_TRY(requireNotPartial(x, mesh, "the operand"));
  VITC_TRY(requireDimLocal(x, x.rank() - 1, mesh, "the op works along it"));
  return x;
}

Expected<TensorType> inferMean(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(size_t axis, dimAttr(op, "axis", x.rank()));
  VITC_TRY(requireDimLocal(x, axis, mesh, "mean reduces over it"));
  TensorType r = x;
  r.shape.erase(r.shape.begin() + static_cast<std::ptrdiff_t>(axis));
  r.sharding.dims.erase(r.sharding.dims.begin() + static_cast<std::ptrdiff_t>(axis));
  return r;
}

// A sum over a split dimension leaves each device its share: a partial sum over that axis.
Expected<TensorType> inferSum(const Op &op, const Mesh &) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(size_t axis, dimAttr(op, "axis", x.rank()));
  TensorType r = x;
  int split = x.sharding.dimAxis(axis);
  if (split != kNoAxis && !(x.sharding.manual & (1u << split)))
    r.sharding.partial |= 1u << split;
  r.shape.erase(r.shape.begin() + static_cast<std::ptrdiff_t>(axis));
  r.sharding.dims.erase(r.sharding.dims.begin() + static_cast<std::ptrdiff_t>(axis));
  return r;
}

std::vector<ReshapeGroup> reshapeGroups(const Shape &in, const Shape &out) {
  std::vector<ReshapeGroup> groups;
  size_t i = 0, j = 0;
  while (i < in.size() || j < out.size()) {
    ReshapeGroup g{i, i, j, j};
    int64_t pin = 1, pout = 1;
    if (i < in.size())
      pin *= in[i++];
    if (j < out.size())
      pout *= out[j++];
    while (pin != pout) {
      if (pin < pout && i < in.size())
        pin *= in[i++];
      else if (j < out.size())
        pout *= out[j++];
      else
        break; // element counts differ; the caller reports it
    }
    // Trailing size-1 dimensions join the current group.
    while (i < in.size() && in[i] == 1 && (j == out.size() || out[j] != 1))
      ++i;
    while (j < out.size() && out[j] == 1 && (i == in.size() || in[i] != 1))
      ++j;
    g.inEnd = i;
    g.outEnd = j;
    groups.push_back(g);
  }
  return groups;
}

Expected<TensorType> inferConvert(const Op &op, const Mesh &) {
  const TensorType &x = op.operand(0)->type;
  if (op.type.shape != x.shape)
    return fail("convert changes only the element type: {} cannot become {}", shapeString(x.shape),
                shapeString(op.type.shape));
  TensorType r = x;
  r.dtype = op.type.dtype;
  return r;
}

Expected<TensorType> inferReshape(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  const Shape &target = op.type.shape;
  if (numElements(target) != x.numel())
    return fail("cannot reshape {} ({} elements) to {} ({} elements)", shapeString(x.shape),
                x.numel(), shapeString(target), numElements(target));
  TensorType r = withShape(x, target);
  r.sharding.dims.assign(target.size(), DimSharding{});
  for (const ReshapeGroup &g : reshapeGroups(x.shape, target)) {
    // Only the major dimension of a group may be split: then each device's block is a contiguous
    // run of the group's elements, in the input and in the output alike.
    size_t firstIn = g.inBegin;
    while (firstIn + 1 < g.inEnd && x.shape[firstIn] == 1)
      ++firstIn;
    for (size_t d = g.inBegin; d < g.inEnd; ++d) {
      int axis = x.sharding.dimAxis(d);
      if (axis == kNoAxis)
        continue;
      if (d != firstIn)
        return fail("reshape {} to {} would mix the blocks of dimension {} split over '{}'",
                    shapeString(x.shape), shapeString(target), d, axisName(mesh, axis));
      size_t firstOut = g.outBegin;
      while (firstOut + 1 < g.outEnd && target[firstOut] == 1)
        ++firstOut;
      if (firstOut >= g.outEnd || target[firstOut] % mesh.axisSize(axis) != 0)
        return fail("reshape {} to {}: dimension split over '{}' ({} ways) does not divide {}",
                    shapeString(x.shape), shapeString(target), axisName(mesh, axis),
                    mesh.axisSize(axis), firstOut < g.outEnd ? target[firstOut] : 0);
      r.sharding.dims[firstOut] = x.sharding.dims[d];
    }
  }
  return r;
}

Expected<TensorType> inferTranspose(const Op &op, const Mesh &) {
  const TensorType &x = op.operand(0)->type;
  const std::vector<int64_t> &perm = op.attrs.getInts("perm");
  if (perm.size() != x.rank())
    return fail("perm has {} entries for a rank-{} operand", perm.size(), x.rank());
  std::vector<bool> seen(perm.size());
  TensorType r = x;
  for (size_t d = 0; d < perm.size(); ++d) {
    int64_t p = perm[d];
    if (p < 0 || p >= static_cast<int64_t>(perm.size()) || seen[static_cast<size_t>(p)])
      return fail("perm is not a permutation of 0..{}", perm.size() - 1);
    seen[static_cast<size_t>(p)] = true;
    r.shape[d] = x.shape[static_cast<size_t>(p)];
    r.sharding.dims[d] = x.sharding.dims[static_cast<size_t>(p)];
  }
  return r;
}

Expected<TensorType> inferBroadcast(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  const Shape &target = op.type.shape;
  if (target.size() < x.rank())
    return fail("cannot broadcast {} to the lower rank of {}", shapeString(x.shape),
                shapeString(target));
  TensorType r = withShape(x, target);
  r.sharding.dims.assign(target.size(), DimSharding{});
  size_t offset = target.size() - x.rank();
  for (size_t d = 0; d < x.rank(); ++d) {
    int64_t from = x.shape[d], to = target[offset + d];
    if (from != to && from != 1)
      return fail("cannot broadcast {} to {}", shapeString(x.shape), shapeString(target));
    if (from != to) {
      VITC_TRY(requireDimLocal(x, d, mesh, "it is broadcast"));
      continue;
    }
    r.sharding.dims[offset + d] = x.sharding.dims[d];
  }
  return r;
}

Expected<TensorType> inferConcat(const Op &op, const Mesh &mesh) {
  const TensorType &first = op.operand(0)->type;
  VITC_ASSIGN(size_t axis, dimAttr(op, "axis", first.rank()));
  TensorType r = first;
  r.shape[axis] = 0;
  for (const Op *operand : op.operands) {
    const TensorType &t = operand->type;
    if (t.rank() != first.rank() || t.dtype != first.dtype)
      return fail("concat operands differ in rank or element type");
    for (size_t d = 0; d < t.rank(); ++d) {
      if (d == axis)
        continue;
      if (t.shape[d] != first.shape[d])
        return fail("concat operands {} and {} differ outside axis {}", shapeString(first.shape),
                    shapeString(t.shape), axis);
      if (!(t.sharding.dims[d] == first.sharding.dims[d]))
        return fail("concat operands are split differently in dimension {}", d);
    }
    if (t.sharding.partial != first.sharding.partial)
      return fail("concat operands differ in which axes they are partial over");
    VITC_TRY(requireDimLocal(t, axis, mesh, "concat joins along it"));
    if (__builtin_add_overflow(r.shape[axis], t.shape[axis], &r.shape[axis]))
      return fail("concat result along axis {} does not fit in 64 bits", axis);
  }
  return r;
}

Expected<TensorType> inferSlice(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(size_t axis, dimAttr(op, "axis", x.rank()));
  int64_t start = op.attrs.getInt("start"), size = op.attrs.getInt("size");
  if (start < 0 || size <= 0 || size > x.shape[axis] - start)
    return fail("slice of size {} at {} is outside dimension {} of size {}", size, start, axis,
                x.shape[axis]);
  VITC_TRY(requireDimLocal(x, axis, mesh, "slice cuts along it"));
  TensorType r = x;
  r.shape[axis] = size;
  return r;
}

Expected<TensorType> inferPatchify(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  int64_t p = op.attrs.getInt("patch");
  if (x.rank() != 4)
    return fail("patchify takes an image batch [B, C, H, W], got {}", shapeString(x.shape));
  if (p <= 0 || x.shape[2] % p != 0 || x.shape[3] % p != 0)
    return fail("image {}x{} is not divisible by patch {}", x.shape[2], x.shape[3], p);
  for (size_t d = 1; d < 4; ++d)
    VITC_TRY(requireDimLocal(x, d, mesh, "patchify rearranges it"));
  TensorType r =
      withShape(x, {x.shape[0], (x.shape[2] / p) * (x.shape[3] / p), x.shape[1] * p * p});
  r.sharding.dims = {x.sharding.dims[0], DimSharding{}, DimSharding{}};
  return r;
}

Expected<TensorType> inferFusedLinear(const Op &op, const Mesh &mesh) {
  bool hasBias = op.attrs.getBool("bias"), hasResidual = op.attrs.getBool("residual");
  size_t want = 2 + (hasBias ? 1 : 0) + (hasResidual ? 1 : 0);
  if (op.operands.size() != want)
    return fail("fused_linear with bias = {} and residual = {} takes {} operands, got {}", hasBias,
                hasResidual, want, op.operands.size());
  // The product is typed as a matmul; a detached copy keeps only the matmul's operands.
  Op product;
  product.kind = OpKind::MatMul;
  product.operands = {op.operands[0], op.operands[1]};
  if (op.attrs.getBool("transpose_b"))
    product.attrs.set("transpose_b", true);
  VITC_ASSIGN(TensorType r, inferMatMul(product, mesh));
  if (hasBias) {
    const TensorType &b = op.operand(2)->type;
    if (b.shape != Shape{r.shape.back()} || b.dtype != r.dtype)
      return fail("fused_linear bias has type {}{}, expected {}[{}]", dtypeName(b.dtype),
                  shapeString(b.shape), dtypeName(r.dtype), r.shape.back());
    if (!(b.sharding.dims[0] == r.sharding.dims.back()) || b.sharding.partial)
      return fail("fused_linear bias is split differently from the output features");
    VITC_TRY(requireNotPartial(r, mesh, "a product that gets a bias"));
  }
  if (op.attrs.getBool("gelu"))
    VITC_TRY(requireNotPartial(r, mesh, "a product that goes through gelu"));
  if (hasResidual && !(op.operands.back()->type == r))
    return fail("fused_linear residual has type {}, expected {}",
                typeString(op.operands.back()->type, mesh), typeString(r, mesh));
  return r;
}

Expected<TensorType> inferAttention(const Op &op, const Mesh &mesh) {
  const TensorType &q = op.operand(0)->type, &k = op.operand(1)->type, &v = op.operand(2)->type;
  int64_t heads = op.attrs.getInt("heads");
  bool qkNorm = op.attrs.getBool("qk_norm"), normBias = op.attrs.getBool("norm_bias");
  size_t want = 3 + (qkNorm ? (normBias ? 4 : 2) : 0);
  if (op.operands.size() != want)
    return fail("attention with qk_norm = {} and norm_bias = {} takes {} operands, got {}", qkNorm,
                normBias, want, op.operands.size());
  if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3)
    return fail("attention takes [B, T, D] queries, keys and values");
  if (k.shape != v.shape || q.shape[0] != k.shape[0] || q.shape[2] != k.shape[2])
    return fail("attention queries {}, keys {} and values {} do not match", shapeString(q.shape),
                shapeString(k.shape), shapeString(v.shape));
  int64_t d = q.shape[2];
  if (heads <= 0 || d % heads != 0)
    return fail("heads ({}) must divide the feature size ({})", heads, d);
  for (const TensorType *t : {&q, &k, &v})
    VITC_TRY(requireNotPartial(*t, mesh, "an attention operand"));
  VITC_TRY(requireSameDType(q, k, "attention's keys"));
  VITC_TRY(requireSameDType(q, v, "attention's values"));
  if (!(q.sharding.dims[0] == k.sharding.dims[0]) || !(k.sharding == v.sharding) ||
      !(q.sharding.dims[2] == k.sharding.dims[2]))
    return fail("attention queries, keys and values are split differently");
  VITC_TRY(requireDimLocal(k, 1, mesh, "every query attends to all keys"));
  int axis = q.sharding.dimAxis(2);
  if (axis != kNoAxis && heads % mesh.axisSize(axis) != 0)
    return fail("heads ({}) cannot be split {} ways over '{}'", heads, mesh.axisSize(axis),
                axisName(mesh, axis));
  // bf16 queries, keys and values are widened for f32 math (QK-norm, softmax) and the products
  // accumulate in f32: the QK-norm parameters and the result are f32 as with f32 inputs.
  for (size_t i = 3; i < op.operands.size(); ++i) {
    const TensorType &p = op.operand(i)->type;
    if (p.shape != Shape{d / heads} || !p.sharding.isReplicated())
      return fail("qk_norm parameters must be replicated [{}], got {}", d / heads,
                  shapeString(p.shape));
    if (p.dtype != DType::F32)
      return fail("qk_norm parameters must be f32, got {}", dtypeName(p.dtype));
  }
  if (!op.attrs.has("eps") && qkNorm)
    return fail("attention with qk_norm needs eps");
  TensorType r = q;
  r.dtype = DType::F32;
  return r;
}

Expected<TensorType> inferReshard(const Op &op, const Mesh &) {
  const TensorType &x = op.operand(0)->type;
  if (op.type.shape != x.shape || op.type.dtype != x.dtype)
    return fail("reshard changes only the sharding: {} cannot become {}", shapeString(x.shape),
                shapeString(op.type.shape));
  TensorType r = op.type;
  r.sharding.dims.resize(r.shape.size());
  return r;
}

Expected<TensorType> inferAllSlice(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  VITC_ASSIGN(size_t dim, dimAttr(op, "dim", x.rank()));
  VITC_TRY(requireDimLocal(x, dim, mesh, "all_slice splits it"));
  if (x.sharding.isPartial(axis))
    return fail("all_slice over '{}' of a partial sum over it", axisName(mesh, axis));
  int64_t k = mesh.axisSize(axis);
  if (x.shape[dim] % k != 0)
    return fail("all_slice: dimension {} ({}) is not divisible by '{}' ({})", dim, x.shape[dim],
                axisName(mesh, axis), k);
  int64_t rotation = op.attrs.has("rotation") ? op.attrs.getInt("rotation") : 0;
  TensorType r = x;
  r.sharding.dims[dim] = DimSharding{axis, ((rotation % k) + k) % k};
  return r;
}

Expected<TensorType> inferRingConcat(const Op &op, const Mesh &mesh) {
  const TensorType &first = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  VITC_ASSIGN(size_t dim, dimAttr(op, "dim", first.rank()));
  int64_t k = mesh.axisSize(axis);
  if (static_cast<int64_t>(op.operands.size()) != k)
    return fail("ring_concat over '{}' takes {} operands, one per step, got {}",
                axisName(mesh, axis), k, op.operands.size());
  for (size_t s = 0; s < op.operands.size(); ++s) {
    const TensorType &t = op.operand(s)->type;
    TensorType expect = first;
    expect.sharding.dims[dim] = DimSharding{axis, static_cast<int64_t>(s)};
    if (!(t == expect))
      return fail("ring_concat operand {} has type {}, expected {}", s, typeString(t, mesh),
                  typeString(expect, mesh));
  }
  TensorType r = first;
  r.sharding.dims[dim] = DimSharding{};
  return r;
}

Expected<TensorType> inferToManual(const Op &op, const Mesh &mesh) {
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  TensorType r = op.operand(0)->type;
  r.sharding.partial &= ~(1u << axis);
  r.sharding.manual |= 1u << axis;
  return r;
}

Expected<TensorType> inferFromManual(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  if (!x.sharding.isManual(axis))
    return fail("from_manual over '{}' of a value that is not manual over it",
                axisName(mesh, axis));
  TensorType r = op.type;
  r.sharding.dims.resize(r.shape.size());
  if (r.shape != x.shape || r.dtype != x.dtype)
    return fail("from_manual keeps the shape: {} cannot become {}", shapeString(x.shape),
                shapeString(r.shape));
  if (r.localShape(mesh) != x.localShape(mesh))
    return fail("from_manual must keep what each device holds ({} per device, not {})",
                shapeString(x.localShape(mesh)), shapeString(r.localShape(mesh)));
  if (r.sharding.isManual(axis))
    return fail("from_manual's result is still manual over '{}'", axisName(mesh, axis));
  return r;
}

Expected<TensorType> inferAllGather(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  VITC_ASSIGN(size_t dim, dimAttr(op, "dim", x.rank()));
  if (x.sharding.dimAxis(dim) != axis)
    return fail("all_gather over '{}' needs dimension {} split over it", axisName(mesh, axis), dim);
  TensorType r = x;
  r.sharding.dims[dim] = DimSharding{};
  return r;
}

Expected<TensorType> inferReduceScatter(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  VITC_ASSIGN(size_t dim, dimAttr(op, "dim", x.rank()));
  if (!x.sharding.isPartial(axis))
    return fail("reduce_scatter over '{}' needs a partial sum over it", axisName(mesh, axis));
  VITC_TRY(requireDimLocal(x, dim, mesh, "reduce_scatter splits it"));
  if (x.shape[dim] % mesh.axisSize(axis) != 0)
    return fail("reduce_scatter: dimension {} ({}) is not divisible by '{}' ({})", dim,
                x.shape[dim], axisName(mesh, axis), mesh.axisSize(axis));
  TensorType r = x;
  r.sharding.partial &= ~(1u << axis);
  r.sharding.dims[dim] = DimSharding{axis, 0};
  return r;
}

Expected<TensorType> inferAllReduce(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  if (!x.sharding.isPartial(axis))
    return fail("all_reduce over '{}' needs a partial sum over it", axisName(mesh, axis));
  TensorType r = x;
  r.sharding.partial &= ~(1u << axis);
  return r;
}

Expected<TensorType> inferCollectivePermute(const Op &op, const Mesh &mesh) {
  const TensorType &x = op.operand(0)->type;
  VITC_ASSIGN(int axis, meshAxisOf(op, mesh));
  int64_t k = mesh.axisSize(axis);
  int64_t shift = op.attrs.getInt("shift");
  // Device c sends its block to device c + shift, so it receives the block of device c - shift.
  TensorType r = x;
  for (DimSharding &d : r.sharding.dims)
    if (d.axis == axis)
      d.rotation = ((d.rotation - shift % k) % k + k) % k;
  return r;
}

Expected<TensorType> inferAsyncDone(const Op &op, const Mesh &) {
  const Op *start = op.operand(0);
  if (!start->info().has(kAsyncStart) || asyncDoneKind(syncCollectiveKind(start->kind)) != op.kind)
    return fail("{} must consume a {}_start, not {}", op.keyword(),
                opInfo(syncCollectiveKind(op.kind)).keyword, start->keyword());
  return start->type;
}

} // namespace vitc::ir
