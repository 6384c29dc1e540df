// bf16 in the IR: `convert` prints, parses and verifies; matmuls of bf16 accumulate into f32; ops
// whose operands disagree on their element type are refused.
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "ir/text.h"
#include "ir/verifier.h"

namespace vitc::ir {
namespace {

constexpr const char *kMixed = R"(module @mixed mesh(data=1, model=2) {
  %x = input {name = "x"} : f32[4,8]
  %w = param {name = "w"} : f32[6@model,8]
  %b = param {name = "b"} : f32[6@model]
  %xb = convert %x : bf16[4,8]
  %wb = convert %w : bf16[6@model,8]
  %y = fused_linear %xb, %wb, %b {bias = true, transpose_b = true} : f32[4,6@model]
  %m = matmul %xb, %wb {transpose_b = true} : f32[4,6@model]
  %back = convert %xb : f32[4,8]
  output %y, %m, %back
}
)";

Diagnostics verifyText(const std::string &text) {
  auto m = parseModule(text, "b.ir");
  EXPECT_TRUE(m) << m.error().str();
  return m ? verify(**m) : Diagnostics{};
}

TEST(Bf16, ConvertAndMixedMatmulsRoundTripAndVerify) {
  auto m = parseModule(kMixed, "b.ir");
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_TRUE(verify(**m).empty()) << verify(**m).str();
  EXPECT_EQ(print(**m), kMixed);
  // The convert of a sharded weight keeps its sharding; only the element type changes.
  const Op *wb = (*m)->findByName("wb");
  EXPECT_EQ(wb->type.dtype, DType::BF16);
  EXPECT_EQ(wb->type.sharding, (*m)->findByName("w")->type.sharding);
}

TEST(Bf16, ProductsOfBf16AreF32) {
  auto bad = verifyText(R"(module @bad mesh(data=1, model=1) {
  %x = input {name = "x"} : bf16[4,8]
  %w = param {name = "w"} : bf16[8,6]
  %y = matmul %x, %w : bf16[4,6]
  output %y
})");
  EXPECT_NE(bad.str().find("result type is bf16[4,6] but its operands give f32[4,6]"),
            std::string::npos)
      << bad.str();
}

TEST(Bf16, OperandsMustAgreeOnTheirElementType) {
  auto d = verifyText(R"(module @bad mesh(data=1, model=1) {
  %x = input {name = "x"} : bf16[4,8]
  %w = param {name = "w"} : f32[8,6]
  %f = input {name = "f"} : f32[4,8]
  %y = matmul %x, %w : f32[4,6]
  %s = add %x, %f : bf16[4,8]
  %c = convert %x : f32[8,4]
  %wb = convert %w : bf16[8,6]
  %b = param {name = "b"} : bf16[6]
  %l = fused_linear %x, %wb, %b {bias = true} : f32[4,6]
  %g = param {name = "g"} : bf16[8]
  %n = layer_norm %f, %g {eps = 1e-06} : f32[4,8]
  %lab = input {name = "lab"} : bf16[4,6]
  %e = softmax_cross_entropy %y, %lab : f32[4]
  %q = input {name = "q"} : f32[1,4,8]
  %k = input {name = "k"} : bf16[1,4,8]
  %a = attention %q, %k, %q {heads = 2, scale = 0.5} : f32[1,4,8]
  output %y, %s, %c, %l, %n, %e, %a
})");
  std::string text = d.str();
  EXPECT_NE(text.find("'%y' (matmul): matmul operands have different element types"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("'%s' (add): operands have different element types"), std::string::npos)
      << text;
  EXPECT_NE(text.find("convert changes only the element type: [4, 8] cannot become [8, 4]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fused_linear bias has type bf16[6], expected f32[6]"), std::string::npos)
      << text;
  EXPECT_NE(text.find("layer_norm scale is bf16, unlike the f32 it goes with"), std::string::npos)
      << text;
  EXPECT_NE(text.find("the labels is bf16, unlike the f32"), std::string::npos) << text;
  EXPECT_NE(text.find("attention's keys is bf16, unlike the f32"), std::string::npos) << text;
}

TEST(Bf16, AttentionOfBf16IsF32WithF32QkNormParameters) {
  auto good = verifyText(R"(module @att mesh(data=1, model=1) {
  %q = input {name = "q"} : bf16[1,4,8]
  %k = input {name = "k"} : bf16[1,4,8]
  %s = param {name = "s"} : f32[4]
  %a = attention %q, %k, %k, %s, %s {eps = 1e-06, heads = 2, qk_norm = true, scale = 0.5} : f32[1,4,8]
  output %a
})");
  EXPECT_TRUE(good.empty()) << good.str();
  auto bad = verifyText(R"(module @bad mesh(data=1, model=1) {
  %q = input {name = "q"} : bf16[1,4,8]
  %s = param {name = "s"} : bf16[4]
  %a = attention %q, %q, %q {heads = 2, scale = 0.5} : bf16[1,4,8]
  %n = attention %q, %q, %q, %s, %s {eps = 1e-06, heads = 2, qk_norm = true, scale = 0.5} : f32[1,4,8]
  output %a, %n
})");
  std::string text = bad.str();
  EXPECT_NE(text.find("'%a' (attention): result type is bf16[1,4,8] but its operands give "
                      "f32[1,4,8]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("qk_norm parameters must be f32, got bf16"), std::string::npos) << text;
}

TEST(Bf16, BuilderConvertsAndItsGradientConvertsBack) {
  Module m;
  Builder b(m);
  Op *x = b.input("x", {2, 4});
  Op *xb = b.convert(x, DType::BF16, "xb");
  EXPECT_EQ(xb->type.dtype, DType::BF16);
  EXPECT_EQ(xb->shape(), (Shape{2, 4}));
  auto grads = opInfo(OpKind::Convert).grad(b, *xb, b.fill({2, 4}, 1.0, "dy"));
  ASSERT_TRUE(grads);
  ASSERT_EQ(grads->size(), 1u);
  EXPECT_TRUE((*grads)[0]->is(OpKind::Convert));
  EXPECT_EQ((*grads)[0]->type.dtype, DType::F32);
}

} // namespace
} // namespace vitc::ir
