// Building ops with their result types inferred by the shape rules.
//
// The frontend and the passes create ops through a Builder: it runs the op's shape rule and
// inserts the op at the end of the module or before a chosen op. A rule that fails here means the
// caller built something invalid, which is a bug: `create` asserts with the rule's message.
#pragma once

#include "ir/module.h"

namespace vitc::ir {

class Builder {
public:
  explicit Builder(Module &m) : m_(m) {}

  Module &module() { return m_; }
  // New ops go before `op` (nullptr: at the end).
  void setInsertionPoint(const Op *op) { before_ = op; }
  const Op *insertionPoint() const { return before_; }
  void setLoc(Loc loc) { loc_ = std::move(loc); }
  const Loc &loc() const { return loc_; }

  // Creates an op; `declared` carries the result shape for kDeclaredShape ops and the full type for
  // inputs and params.
  Expected<Op *> tryCreate(OpKind kind, std::vector<Op *> operands, Attrs attrs = {},
                           std::string name = "", TensorType declared = {});
  Op *create(OpKind kind, std::vector<Op *> operands, Attrs attrs = {}, std::string name = "",
             TensorType declared = {});

  Op *input(const std::string &name, Shape shape);
  Op *param(const std::string &weightName, Shape shape, bool head, std::string valueName = "");
  Op *matmul(Op *a, Op *b, bool transposeB, std::string name = "");
  Op *add(Op *a, Op *b, std::string name = "");
  Op *mul(Op *a, Op *b, std::string name = "");
  Op *scale(Op *x, double factor, std::string name = "");
  Op *gelu(Op *x, std::string name = "");
  Op *layerNorm(Op *x, Op *scale, Op *bias, double eps, std::string name = "");
  Op *softmax(Op *x, std::string name = "");
  Op *mean(Op *x, int64_t axis, std::string name = "");
  Op *sum(Op *x, int64_t axis, std::string name = "");
  Op *sub(Op *a, Op *b, std::string name = "");
  Op *div(Op *a, Op *b, std::string name = "");
  Op *maximum(Op *a, Op *b, std::string name = "");
  Op *sqrt(Op *x, std::string name = "");
  Op *sigmoid(Op *x, std::string name = "");
  Op *softmaxCrossEntropy(Op *logits, Op *labels, std::string name = "");
  Op *sigmoidCrossEntropy(Op *logits, Op *labels, std::string name = "");
  Op *geluGrad(Op *x, Op *dy, bool approximate, std::string name = "");
  Op *layerNormGrad(Op *x, Op *scale, Op *dy, double eps, std::string name = "");
  Op *softmaxGrad(Op *y, Op *dy, std::string name = "");
  Op *convert(Op *x, DType dtype, std::string name = "");
  Op *reshape(Op *x, Shape shape, std::string name = "");
  Op *transpose(Op *x, std::vector<int64_t> perm, std::string name = "");
  Op *broadcast(Op *x, Shape shape, std::string name = "");
  Op *concat(std::vector<Op *> xs, int64_t axis, std::string name = "");
  Op *slice(Op *x, int64_t axis, int64_t start, int64_t size, std::string name = "");
  Op *patchify(Op *x, int64_t patch, std::string name = "");
  Op *fill(Shape shape, double value, std::string name = "");
  Op *output(std::vector<Op *> xs);

private:
  Module &m_;
  const Op *before_ = nullptr;
  Loc loc_;
};

} // namespace vitc::ir
