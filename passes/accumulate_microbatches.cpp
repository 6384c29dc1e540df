// The accumulate-microbatches pass.
#include "passes/accumulate_microbatches.h"

#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"

namespace vitc::passes {

using ir::Op;
using ir::OpKind;

std::string microbatchInputName(std::string_view name, int64_t part) {
  return fmt::format("{}.micro{}", name, part);
}

namespace {

class AccumulateMicrobatches : public Pass {
public:
  std::string_view name() const override { return "accumulate-microbatches"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    int64_t parts = ctx.options.layout.microbatches;
    if (parts <= 1)
      return false;
    Op *out = m.output();
    size_t params = m.params().size();
    if (!out || out->operands.size() != params + 1 || out->operand(0)->rank() != 0 ||
        !m.paramUpdates().empty())
      return Error(fmt::format("module @{}: accumulate-microbatches needs autodiff's output (the "
                               "loss, then one gradient per parameter: {} values), before the "
                               "optimizer",
                               m.name, params + 1));
    // The loss and each gradient of micro-batch 0, and their running sums.
    const std::vector<Op *> results = out->operands;
    std::vector<Op *> sums = results;
    m.erase(out);
    // What each micro-batch repeats: every op that reads an input, directly or not. The rest
    // (params, constants, what only they feed) is computed once and shared.
    std::unordered_set<const Op *> shared = ir::weightOnlyOps(m);
    std::vector<Op *> body;
    for (const auto &op : m.ops())
      if (!shared.count(op.get()))
        body.push_back(op.get());
    std::unordered_map<const Op *, std::string> inputName;
    std::vector<Op *> inputs; // micro-batch by micro-batch
    for (Op *op : body)
      if (op->is(OpKind::Input)) {
        inputName[op] = op->attrs.getStr("name");
        op->attrs.set("name", microbatchInputName(inputName[op], 0));
        inputs.push_back(op);
      }

    ir::Builder b(m);
    for (int64_t part = 1; part < parts; ++part) {
      std::unordered_map<const Op *, Op *> copyOf;
      auto mapped = [&](Op *op) {
        auto it = copyOf.find(op);
        return it == copyOf.end() ? op : it->second;
      };
      for (Op *op : body) {
        std::vector<Op *> operands;
        for (Op *o : op->operands)
          operands.push_back(mapped(o));
        Op *copy = m.create(op->kind, std::move(operands), op->attrs, op->type,
                            fmt::format("{}.micro{}", op->name, part), op->loc);
        if (op->is(OpKind::Input)) {
          copy->attrs.set("name", microbatchInputName(inputName.at(op), part));
          inputs.push_back(copy);
        }
        copyOf[op] = copy;
      }
      // Summed as each micro-batch finishes, so that its gradients die with its activations.
      for (size_t i = 0; i < sums.size(); ++i)
        sums[i] =
            b.add(sums[i], mapped(results[i]), fmt::format("{}.sum{}", results[i]->name, part));
    }
    double mean = 1.0 / static_cast<double>(parts);
    for (size_t i = 0; i < sums.size(); ++i)
      sums[i] = b.scale(sums[i], mean, results[i]->name + ".mean");
    b.output(sums);
    // The inputs first, micro-batch by micro-batch: the step's signature lists them so.
    std::vector<Op *> order = inputs;
    for (const auto &op : m.ops())
      if (!op->is(OpKind::Input))
        order.push_back(op.get());
    m.reorder(order);
    ctx.remark(fmt::format("{} micro-batches: the forward and backward ops repeated for each, the "
                           "loss and {} gradients summed as each finishes, one update per step",
                           parts, params));
    return true;
  }
};

} // namespace

std::unique_ptr<Pass> createAccumulateMicrobatches() {
  return std::make_unique<AccumulateMicrobatches>();
}

} // namespace vitc::passes
