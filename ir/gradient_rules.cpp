// The gradient rule of every op kind.
#include "ir/gradient_rules.h"

#include "ir/builder.h"

namespace vitc::ir {

Expected<std::vector<Op *>> gradNone(Builder &, const Op &op, Op *) {
  return Error(fmt::format("op '{}' has no gradient rule", op.keyword()));
}

// The rules below are being written (issue 16): until then they say so.
#define VITC_PENDING_GRAD(name)                                                                    \
  Expected<std::vector<Op *>> name(Builder &b, const Op &op, Op *dy) { return gradNone(b, op, dy); }
VITC_PENDING_GRAD(gradMatMul)
VITC_PENDING_GRAD(gradAdd)
VITC_PENDING_GRAD(gradSub)
VITC_PENDING_GRAD(gradMul)
VITC_PENDING_GRAD(gradDiv)
VITC_PENDING_GRAD(gradScale)
VITC_PENDING_GRAD(gradSqrt)
VITC_PENDING_GRAD(gradSigmoid)
VITC_PENDING_GRAD(gradGelu)
VITC_PENDING_GRAD(gradLayerNorm)
VITC_PENDING_GRAD(gradSoftmax)
VITC_PENDING_GRAD(gradMean)
VITC_PENDING_GRAD(gradSum)
VITC_PENDING_GRAD(gradReshape)
VITC_PENDING_GRAD(gradTranspose)
VITC_PENDING_GRAD(gradBroadcast)
VITC_PENDING_GRAD(gradConcat)
VITC_PENDING_GRAD(gradSlice)
VITC_PENDING_GRAD(gradSoftmaxCrossEntropy)
VITC_PENDING_GRAD(gradSigmoidCrossEntropy)
#undef VITC_PENDING_GRAD

} // namespace vitc::ir
