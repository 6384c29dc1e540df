// convert-bf16: bf16 operands for matmuls.
#include "passes/convert_bf16.h"

#include <unordered_map>

#include "ir/builder.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// The depth a matmul (or fused_linear) contracts over: the left operand's last dimension.
int64_t contraction(const Op &op) { return op.operand(0)->shape().back(); }

class ConvertBf16 : public Pass {
public:
  std::string_view name() const override { return "convert-bf16"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    if (ctx.options.dtype != ir::DType::BF16)
      return false;
    std::unordered_set<const Op *> weightOnly = ir::weightOnlyOps(m);
    std::unordered_map<const Op *, Op *> converted; // f32 value -> its bf16 convert
    ir::Builder b(m);
    int64_t matmuls = 0, oddDepth = 0, weights = 0, activations = 0;
    // Snapshot the order: converts are created as the walk goes.
    std::vector<Op *> order;
    for (const auto &op : m.ops())
      order.push_back(op.get());
    for (Op *op : order) {
      if (!op->is(OpKind::MatMul) && !op->is(OpKind::FusedLinear))
        continue;
      if (op->operand(0)->type.dtype != ir::DType::F32)
        continue;
      if (contraction(*op) % 2 != 0) {
        ++oddDepth;
        ctx.remark(fmt::format("%{} stays f32: its depth {} is odd", op->name, contraction(*op)));
        continue;
      }
      ++matmuls;
      for (size_t i = 0; i < 2; ++i) {
        Op *x = op->operand(i);
        auto it = converted.find(x);
        if (it == converted.end()) {
          b.setInsertionPoint(op);
          b.setLoc(op->loc);
          it = converted.emplace(x, b.convert(x, ir::DType::BF16, x->name + ".bf16")).first;
          ++(weightOnly.count(x) ? weights : activations);
        }
        op->operands[i] = it->second;
      }
    }
    if (matmuls > 0 || oddDepth > 0)
      ctx.remark(fmt::format(
          "{} matmuls take bf16 inputs: {} weights converted once when the params are bound, {} "
          "activations converted before their first matmul; {} left in f32",
          matmuls, weights, activations, oddDepth));
    return matmuls > 0;
  }
};

} // namespace

std::unique_ptr<Pass> createConvertBf16() { return std::make_unique<ConvertBf16>(); }

} // namespace vitc::passes
