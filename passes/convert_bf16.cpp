// convert-bf16: bf16 operands for matmuls and attention.
#include "passes/convert_bf16.h"

#include <unordered_map>

#include "ir/builder.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

// The depth a matmul (or fused_linear) contracts over: the left operand's last dimension.
int64_t contraction(const Op &op) { return op.operand(0)->shape().back(); }

// The features of one head of an attention op.
int64_t headSize(const Op &op) { return op.operand(0)->shape().back() / op.attrs.getInt("heads"); }

// One run of the rewrite: the converts made so far, so that each value is converted once.
class Converter {
public:
  explicit Converter(ir::Module &m)
      : m_(m), b_(m), weightOnly_(ir::weightOnlyOps(m)), views_(ir::attentionViews(m)) {}

  int64_t weights = 0, activations = 0;

  // The bf16 copy of `x`, made just before `user`, the first op that needs it.
  Op *convert(Op *x, const Op *user) {
    auto it = converted_.find(x);
    if (it == converted_.end()) {
      b_.setInsertionPoint(user);
      b_.setLoc(user->loc);
      it = converted_.emplace(x, b_.convert(x, ir::DType::BF16, x->name + ".bf16")).first;
      ++(weightOnly_.count(x) ? weights : activations);
    }
    return it->second;
  }

  // The bf16 input of `attention` in place of `x`. A slice that attention reads in place (a
  // query, key or value of the fused projection) becomes the same slice of the projection's bf16
  // copy, so that it stays a view: one convert of the projection instead of three copies and
  // three converts. The f32 slice goes once nothing reads it.
  Op *convertAttentionInput(Op *x, const Op *attention) {
    if (!views_.count(x))
      return convert(x, attention);
    auto it = viewOf_.find(x);
    if (it == viewOf_.end()) {
      Op *source = convert(x->operand(0), attention);
      b_.setInsertionPoint(attention);
      b_.setLoc(x->loc);
      Op *view = b_.slice(source, x->attrs.getInt("axis"), x->attrs.getInt("start"),
                          x->attrs.getInt("size"), x->name + ".bf16");
      it = viewOf_.emplace(x, view).first;
    }
    return it->second;
  }

  // Removes the f32 slices that the bf16 ones replaced (all of them, unless an attention that
  // stays f32 reads one too).
  void eraseReplacedViews() {
    ir::UserMap users = m_.users();
    std::unordered_set<const Op *> replaced;
    for (const auto &[f32View, bf16View] : viewOf_)
      if (users[f32View].empty())
        replaced.insert(f32View);
    m_.eraseAll(replaced);
  }

private:
  ir::Module &m_;
  ir::Builder b_;
  std::unordered_set<const Op *> weightOnly_;
  std::unordered_set<const Op *> views_;           // slices only attention reads, in place
  std::unordered_map<const Op *, Op *> converted_; // f32 value -> its bf16 convert
  std::unordered_map<const Op *, Op *> viewOf_;    // f32 attention view -> its bf16 one
};

class ConvertBf16 : public Pass {
public:
  std::string_view name() const override { return "convert-bf16"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    if (ctx.options.dtype != ir::DType::BF16)
      return false;
    Converter converter(m);
    int64_t matmuls = 0, attentions = 0, odd = 0;
    // Snapshot the order: converts are created as the walk goes.
    std::vector<Op *> order;
    for (const auto &op : m.ops())
      order.push_back(op.get());
    for (Op *op : order) {
      bool isAttention = op->is(OpKind::Attention);
      if (!isAttention && !op->is(OpKind::MatMul) && !op->is(OpKind::FusedLinear))
        continue;
      if (op->operand(0)->type.dtype != ir::DType::F32)
        continue;
      // bf16 kernels multiply pairs of the depth at a time (a head's features in attention).
      int64_t depth = isAttention ? headSize(*op) : contraction(*op);
      if (depth % 2 != 0) {
        ++odd;
        ctx.remark(fmt::format("%{} stays f32: its {} {} is odd", op->name,
                               isAttention ? "head size" : "depth", depth));
        continue;
      }
      if (isAttention) {
        // Queries, keys and values; the QK-norm parameters stay f32.
        ++attentions;
        for (size_t i = 0; i < 3; ++i)
          op->operands[i] = converter.convertAttentionInput(op->operand(i), op);
        continue;
      }
      ++matmuls;
      for (size_t i = 0; i < 2; ++i)
        op->operands[i] = converter.convert(op->operand(i), op);
    }
    converter.eraseReplacedViews();
    if (matmuls > 0 || attentions > 0 || odd > 0)
      ctx.remark(fmt::format(
          "{} matmuls and {} attentions take bf16 inputs: {} weights converted once when the "
          "params are bound, {} activations converted before their first reader; {} left in f32",
          matmuls, attentions, converter.weights, converter.activations, odd));
    return matmuls > 0 || attentions > 0;
  }
};

} // namespace

std::unique_ptr<Pass> createConvertBf16() { return std::make_unique<ConvertBf16>(); }

} // namespace vitc::passes
