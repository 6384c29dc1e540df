// Shape rules: for each op kind, the result type (shape and sharding) its operands imply.
//
// A rule returns an Error whose message says what is wrong (no location: the verifier and the
// builder add the op's). Rules see attributes already checked against the op's schema.
#pragma once

#include "ir/op.h"

namespace vitc::ir {

#define VITC_DECLARE_RULE(name) Expected<TensorType> name(const Op &op, const Mesh &mesh);
VITC_DECLARE_RULE(inferDeclared)
VITC_DECLARE_RULE(inferNothing)
VITC_DECLARE_RULE(inferMatMul)
VITC_DECLARE_RULE(inferBroadcastBinary)
VITC_DECLARE_RULE(inferLinear)
VITC_DECLARE_RULE(inferNonlinear)
VITC_DECLARE_RULE(inferLayerNorm)
VITC_DECLARE_RULE(inferLastDimLocal)
VITC_DECLARE_RULE(inferLayerNormGrad)
VITC_DECLARE_RULE(inferSameShapeBinary)
VITC_DECLARE_RULE(inferLoss)
VITC_DECLARE_RULE(inferMean)
VITC_DECLARE_RULE(inferSum)
VITC_DECLARE_RULE(inferConvert)
VITC_DECLARE_RULE(inferReshape)
VITC_DECLARE_RULE(inferTranspose)
VITC_DECLARE_RULE(inferBroadcast)
VITC_DECLARE_RULE(inferConcat)
VITC_DECLARE_RULE(inferSlice)
VITC_DECLARE_RULE(inferPatchify)
VITC_DECLARE_RULE(inferFusedLinear)
VITC_DECLARE_RULE(inferAttention)
VITC_DECLARE_RULE(inferReshard)
VITC_DECLARE_RULE(inferAllSlice)
VITC_DECLARE_RULE(inferRingConcat)
VITC_DECLARE_RULE(inferToManual)
VITC_DECLARE_RULE(inferFromManual)
VITC_DECLARE_RULE(inferAllGather)
VITC_DECLARE_RULE(inferReduceScatter)
VITC_DECLARE_RULE(inferAllReduce)
VITC_DECLARE_RULE(inferCollectivePermute)
VITC_DECLARE_RULE(inferAsyncDone)
#undef VITC_DECLARE_RULE

// Groups the dimensions of a reshape: each group is a run of input dimensions and a run of output
// dimensions with equal products. Used by the reshape rule, sharding propagation and kernels.
struct ReshapeGroup {
  size_t inBegin, inEnd, outBegin, outEnd;
};
std::vector<ReshapeGroup> reshapeGroups(const Shape &in, const Shape &out);

} // namespace vitc::ir
