// Appending the training loss.
#include "passes/loss.h"

#include <cassert>

#include "ir/builder.h"

namespace vitc::passes {

void appendLoss(ir::Module &m, LossKind kind) {
  ir::Op *out = m.output();
  assert(out && out->operand(0)->rank() == 2 && "appendLoss needs logits [B, C] as first output");
  ir::Op *logits = out->operand(0);
  m.erase(out);
  ir::Builder b(m);
  // Inputs come first, as the frontends write them.
  for (const auto &op : m.ops())
    if (!op->is(ir::OpKind::Input)) {
      b.setInsertionPoint(op.get());
      break;
    }
  ir::Op *labels = b.input("labels", logits->shape());
  b.setInsertionPoint(nullptr);
  b.setLoc(logits->loc);
  ir::Op *perExample = kind == LossKind::SoftmaxCrossEntropy
                           ? b.softmaxCrossEntropy(logits, labels, "loss.per_example")
                           : b.sigmoidCrossEntropy(logits, labels, "loss.per_example");
  // The mean over the batch as a sum and a scale: a sum over a batch split over devices is each
  // device's partial sum, reduced once, where a mean of the local examples would be wrong.
  double batch = static_cast<double>(logits->shape()[0]);
  b.output({b.scale(b.sum(perExample, 0, "loss.total"), 1.0 / batch, "loss")});
}

} // namespace vitc::passes
