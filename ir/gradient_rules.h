// Gradient rules: for each op kind, the backward ops of one op (see GradRule in ir/op.h).
//
// The autodiff pass (passes/autodiff.h) walks a module backwards and asks each op's rule, named in
// the op table (ir/ops.def), for the gradients of its operands. A rule builds ordinary IR ops with
// the builder it is given, so the backward pass prints, parses, verifies and is optimized like the
// forward pass.
#pragma once

#include "ir/op.h"

namespace vitc::ir {

#define VITC_DECLARE_GRAD(name) Expected<std::vector<Op *>> name(Builder &b, const Op &op, Op *dy);
VITC_DECLARE_GRAD(gradNone)
VITC_DECLARE_GRAD(gradMatMul)
VITC_DECLARE_GRAD(gradAdd)
VITC_DECLARE_GRAD(gradSub)
VITC_DECLARE_GRAD(gradMul)
VITC_DECLARE_GRAD(gradDiv)
VITC_DECLARE_GRAD(gradScale)
VITC_DECLARE_GRAD(gradSqrt)
VITC_DECLARE_GRAD(gradSigmoid)
VITC_DECLARE_GRAD(gradGelu)
VITC_DECLARE_GRAD(gradLayerNorm)
VITC_DECLARE_GRAD(gradSoftmax)
VITC_DECLARE_GRAD(gradMean)
VITC_DECLARE_GRAD(gradSum)
VITC_DECLARE_GRAD(gradConvert)
VITC_DECLARE_GRAD(gradReshape)
VITC_DECLARE_GRAD(gradTranspose)
VITC_DECLARE_GRAD(gradBroadcast)
VITC_DECLARE_GRAD(gradConcat)
VITC_DECLARE_GRAD(gradSlice)
VITC_DECLARE_GRAD(gradSoftmaxCrossEntropy)
VITC_DECLARE_GRAD(gradSigmoidCrossEntropy)
#undef VITC_DECLARE_GRAD

} // namespace vitc::ir
