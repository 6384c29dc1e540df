// Op construction with inferred types.
#include "ir/builder.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "ir/verifier.h"

namespace vitc::ir {

Expected<Op *> Builder::tryCreate(OpKind kind, std::vector<Op *> operands, Attrs attrs,
                                  std::string name, TensorType declared) {
  // Run the rule on a detached op so that a failure leaves the module untouched.
  Op probe;
  probe.kind = kind;
  probe.operands = operands;
  probe.attrs = attrs;
  probe.type = declared;
  if (probe.type.sharding.dims.size() != probe.type.shape.size())
    probe.type.sharding.dims.resize(probe.type.shape.size());
  probe.name = name;
  probe.loc = loc_;
  VITC_ASSIGN(TensorType type, inferType(probe, m_.mesh));
  return m_.create(kind, std::move(operands), std::move(attrs), std::move(type), std::move(name),
                   loc_, before_);
}

Op *Builder::create(OpKind kind, std::vector<Op *> operands, Attrs attrs, std::string name,
                    TensorType declared) {
  Expected<Op *> op =
      tryCreate(kind, std::move(operands), std::move(attrs), std::move(name), std::move(declared));
  if (!op) {
    std::fprintf(stderr, "internal error: built an invalid op: %s\n", op.error().str().c_str());
    std::abort();
  }
  return *op;
}

Op *Builder::input(const std::string &name, Shape shape) {
  return create(OpKind::Input, {}, {{"name", name}}, name, TensorType::of(std::move(shape)));
}

Op *Builder::param(const std::string &weightName, Shape shape, bool head, std::string valueName) {
  Attrs attrs{{"name", weightName}};
  if (head)
    attrs.set("head", true);
  return create(OpKind::Param, {}, std::move(attrs), valueName.empty() ? weightName : valueName,
                TensorType::of(std::move(shape)));
}

Op *Builder::matmul(Op *a, Op *b, bool transposeB, std::string name) {
  Attrs attrs;
  if (transposeB)
    attrs.set("transpose_b", true);
  return create(OpKind::MatMul, {a, b}, std::move(attrs), std::move(name));
}

Op *Builder::add(Op *a, Op *b, std::string name) {
  return create(OpKind::Add, {a, b}, {}, std::move(name));
}

Op *Builder::mul(Op *a, Op *b, std::string name) {
  return create(OpKind::Mul, {a, b}, {}, std::move(name));
}

Op *Builder::scale(Op *x, double factor, std::string name) {
  return create(OpKind::Scale, {x}, {{"factor", factor}}, std::move(name));
}

Op *Builder::gelu(Op *x, std::string name) {
  return create(OpKind::Gelu, {x}, {}, std::move(name));
}

Op *Builder::layerNorm(Op *x, Op *scale, Op *bias, double eps, std::string name) {
  std::vector<Op *> operands{x, scale};
  if (bias)
    operands.push_back(bias);
  return create(OpKind::LayerNorm, std::move(operands), {{"eps", eps}}, std::move(name));
}

Op *Builder::softmax(Op *x, std::string name) {
  return create(OpKind::Softmax, {x}, {}, std::move(name));
}

Op *Builder::mean(Op *x, int64_t axis, std::string name) {
  return create(OpKind::Mean, {x}, {{"axis", axis}}, std::move(name));
}

Op *Builder::sum(Op *x, int64_t axis, std::string name) {
  return create(OpKind::Sum, {x}, {{"axis", axis}}, std::move(name));
}

Op *Builder::sub(Op *a, Op *b, std::string name) {
  return create(OpKind::Sub, {a, b}, {}, std::move(name));
}

Op *Builder::div(Op *a, Op *b, std::string name) {
  return create(OpKind::Div, {a, b}, {}, std::move(name));
}

Op *Builder::maximum(Op *a, Op *b, std::string name) {
  return create(OpKind::Maximum, {a, b}, {}, std::move(name));
}

Op *Builder::sqrt(Op *x, std::string name) {
  return create(OpKind::Sqrt, {x}, {}, std::move(name));
}

Op *Builder::sigmoid(Op *x, std::string name) {
  return create(OpKind::Sigmoid, {x}, {}, std::move(name));
}

Op *Builder::softmaxCrossEntropy(Op *logits, Op *labels, std::string name) {
  return create(OpKind::SoftmaxCrossEntropy, {logits, labels}, {}, std::move(name));
}

Op *Builder::sigmoidCrossEntropy(Op *logits, Op *labels, std::string name) {
  return create(OpKind::SigmoidCrossEntropy, {logits, labels}, {}, std::move(name));
}

Op *Builder::geluGrad(Op *x, Op *dy, bool approximate, std::string name) {
  Attrs attrs;
  if (approximate)
    attrs.set("approximate", true);
  return create(OpKind::GeluGrad, {x, dy}, std::move(attrs), std::move(name));
}

Op *Builder::layerNormGrad(Op *x, Op *scale, Op *dy, double eps, std::string name) {
  return create(OpKind::LayerNormGrad, {x, scale, dy}, {{"eps", eps}}, std::move(name));
}

Op *Builder::softmaxGrad(Op *y, Op *dy, std::string name) {
  return create(OpKind::SoftmaxGrad, {y, dy}, {}, std::move(name));
}

Op *Builder::convert(Op *x, DType dtype, std::string name) {
  return create(OpKind::Convert, {x}, {}, std::move(name), TensorType::of(x->shape(), dtype));
}

Op *Builder::reshape(Op *x, Shape shape, std::string name) {
  return create(OpKind::Reshape, {x}, {}, std::move(name), TensorType::of(std::move(shape)));
}

Op *Builder::transpose(Op *x, std::vector<int64_t> perm, std::string name) {
  return create(OpKind::Transpose, {x}, {{"perm", std::move(perm)}}, std::move(name));
}

Op *Builder::broadcast(Op *x, Shape shape, std::string name) {
  return create(OpKind::Broadcast, {x}, {}, std::move(name), TensorType::of(std::move(shape)));
}

Op *Builder::concat(std::vector<Op *> xs, int64_t axis, std::string name) {
  return create(OpKind::Concat, std::move(xs), {{"axis", axis}}, std::move(name));
}

Op *Builder::slice(Op *x, int64_t axis, int64_t start, int64_t size, std::string name) {
  return create(OpKind::Slice, {x}, {{"axis", axis}, {"start", start}, {"size", size}},
                std::move(name));
}

Op *Builder::patchify(Op *x, int64_t patch, std::string name) {
  return create(OpKind::Patchify, {x}, {{"patch", patch}}, std::move(name));
}

Op *Builder::fill(Shape shape, double value, std::string name) {
  return create(OpKind::Fill, {}, {{"value", value}}, std::move(name),
                TensorType::of(std::move(shape)));
}

Op *Builder::output(std::vector<Op *> xs) { return create(OpKind::Output, std::move(xs)); }

} // namespace vitc::ir
