// The training loss of a classifier, appended to its forward module.
//
// `vitc train` turns a forward module into a training step in two moves: this helper makes the
// mean loss over the batch the module's only output, and the training pipeline (autodiff, then
// the optimizer, passes/registry.h) differentiates it and appends the update:
//
//   %logits = add ... : f32[B,C]            %labels = input {name = "labels"} : f32[B,C]
//   output %logits                 =>       %logits = add ... : f32[B,C]
//                                           %loss.per_example = softmax_cross_entropy %logits,
//                                                               %labels : f32[B]
//                                           %loss.total = sum %loss.per_example {axis = 0}
//                                           %loss = scale %loss.total {factor = 1/B} : f32[]
//                                           output %loss
//
// Labels are per-class probabilities: one-hot rows for integer labels (label smoothing spreads
// them), several ones a row for multi-label data with the sigmoid loss.
#pragma once

#include "ir/module.h"

namespace vitc::passes {

enum class LossKind {
  SoftmaxCrossEntropy, // one class per example
  SigmoidCrossEntropy, // any number of classes per example (big_vision's sigmoid_xent)
};

// Precondition (asserted; callers check it first): the module's first output is logits [B, C].
// The other outputs are dropped.
void appendLoss(ir::Module &m, LossKind kind);

} // namespace vitc::passes
