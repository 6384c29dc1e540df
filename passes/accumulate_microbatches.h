// accumulate-microbatches: a training step whose batch runs as micro-batches, one after another,
// their gradients summed before the optimizer's single update.
//
// The layout's `microbatches` (M) splits the batch. The module the pass gets is autodiff's for
// one micro-batch (its inputs hold B/M images): the loss, then one gradient per param. The pass
// repeats the forward and backward ops once per micro-batch (ops that read only params and
// constants are shared), each repetition with inputs of its own, and sums the losses and the
// gradients as each micro-batch finishes, so that only one micro-batch's activations are alive at
// a time and the accumulated gradients (one buffer per param) carry over:
//
//   %x = input {name = "x"}           %x = input {name = "x.micro0"}
//   ...                               %x.micro1 = input {name = "x.micro1"}
//   %grad.W = matmul ...      =>      ...                              (micro-batch 0)
//   output %loss, %grad.W             %grad.W.micro1 = matmul ...        (micro-batch 1)
//                                     %grad.W.sum1 = add %grad.W, %grad.W.micro1
//                                     %grad.W.mean = scale %grad.W.sum1 {factor = 0.5}
//                                     output %loss.mean, %grad.W.mean
//
// The output is the mean loss and gradient over the M micro-batches, which is the loss and the
// gradient of the whole batch (each micro-batch's loss is its own mean), so the optimizer that
// follows updates once per step as without micro-batches. Under data parallelism each summed
// gradient is a partial sum that the sharding passes reduce once per step, at the sum.
// Preconditions: autodiff's output (loss, then one gradient per param, in param order).
// Postconditions: input `NAME` is `NAME.microK` for K in [0, M), in that order; M = 1 changes
// nothing. Cost: the program grows M-fold (it is unrolled, as XLA unrolls a short loop); the
// memory for activations is one micro-batch's, plus one accumulated gradient per param.
#pragma once

#include <string>
#include <string_view>

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createAccumulateMicrobatches();

// The name of input `name`'s copy for micro-batch `part` (of more than one).
std::string microbatchInputName(std::string_view name, int64_t part);

} // namespace vitc::passes
