// The IR text form: printing, parsing, round trips and parse errors.
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "ir/text.h"
#include "ir/verifier.h"

namespace vitc::ir {
namespace {

const char *kSharded =
    R"(module @sharded mesh(data=2, model=4) attributes {batch = 8, note = "x y"} {
  %x = input {name = "x"} : f32[8@data,16,32]
  %w = param {head = true, name = "w"} : f32[64@model,32]
  %y = matmul %x, %w {transpose_b = true} : f32[8@data,16,64@model]
  %g = gelu %y {approximate = true} : f32[8@data,16,64@model]
  %v = param {name = "v"} : f32[32,64@model]
  %z = matmul %g, %v {transpose_b = true} : f32[8@data,16,32] partial(model)
  %r = reduce_scatter_start %z {dim = 1, mesh_axis = "model"} : f32[8@data,16@model,32]
  %d = reduce_scatter_done %r : f32[8@data,16@model,32]
  %p = collective_permute %d {mesh_axis = "model", shift = 1} : f32[8@data,16@model+3,32]
  %s = scale %p {factor = 0.5} : f32[8@data,16@model+3,32]
  output %s
}
)";

TEST(IrText, PrintParsePrintIsIdentical) {
  auto m = parseModule(kSharded, "sharded.ir");
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_TRUE(verify(**m).empty()) << verify(**m).str();
  EXPECT_EQ(print(**m), kSharded);
  auto again = parseModule(print(**m), "again.ir");
  ASSERT_TRUE(again);
  EXPECT_TRUE(equal(**m, **again));
}

// A rank-0 value (a loss, a learning rate) is f32[], and prints back as it was written.
TEST(IrText, RankZeroValuesRoundTrip) {
  const char *text = R"(module @scalar mesh(data=1, model=1) {
  %z = input {name = "z"} : f32[4,10]
  %labels = input {name = "labels"} : f32[4,10]
  %l = softmax_cross_entropy %z, %labels : f32[4]
  %loss = mean %l {axis = 0} : f32[]
  %lr = param {name = "lr"} : f32[]
  %step = mul %loss, %lr : f32[]
  %w = param {name = "w"} : f32[4,10]
  %update = mul %w, %lr : f32[4,10]
  output %step, %update
}
)";
  auto m = parseModule(text, "scalar.ir");
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_TRUE(verify(**m).empty()) << verify(**m).str();
  EXPECT_EQ(print(**m), text);
}

TEST(IrText, EqualityNoticesDifferences) {
  auto a = parseModule(kSharded, "a.ir");
  ASSERT_TRUE(a);
  std::string changed = kSharded;
  changed.replace(changed.find("0.5"), 3, "0.25");
  auto b = parseModule(changed, "b.ir");
  ASSERT_TRUE(b);
  EXPECT_FALSE(equal(**a, **b));
}

TEST(IrText, FloatsStayFloats) {
  EXPECT_EQ(printAttrValue(AttrValue(2.0)), "2.0");
  EXPECT_EQ(printAttrValue(AttrValue(1e-6)), "1e-06");
  EXPECT_EQ(printAttrValue(AttrValue(int64_t{2})), "2");
  EXPECT_EQ(printAttrValue(AttrValue(std::string("a\"b"))), "\"a\\\"b\"");
  // Shortest round-trip printing: the parsed double is bit-identical.
  const char *text = "module @f mesh(data=1) {\n  %x = input {name = \"x\"} : f32[2]\n"
                     "  %y = scale %x {factor = 0.1} : f32[2]\n  output %y\n}\n";
  auto m = parseModule(text, "f.ir");
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)->findByName("y")->attrs.getFloat("factor"), 0.1);
}

struct BadText {
  const char *text;
  const char *error;
};

class IrParseErrors : public testing::TestWithParam<BadText> {};

TEST_P(IrParseErrors, ReportsLocationAndProblem) {
  auto m = parseModule(GetParam().text, "bad.ir");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().str(), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    All, IrParseErrors,
    testing::Values(
        BadText{"modul @x {}", "bad.ir:1:1: error: expected 'module'"},
        BadText{"module @x mesh(data=0) {}", "bad.ir:1:16: error: mesh axis 'data' needs a "
                                             "positive size"},
        BadText{"module @x {\n  %a = frobnicate : f32[1]\n}",
                "bad.ir:2:8: error: unknown op 'frobnicate'"},
        BadText{"module @x {\n  %a = gelu %b : f32[1]\n}",
                "bad.ir:2:13: error: use of undefined value '%b'"},
        BadText{"module @x {\n  %a = input {name = \"a\"} : f33[1]\n}",
                "bad.ir:2:29: error: unknown element type 'f33'"},
        BadText{"module @x mesh(data=2) {\n  %a = input {name = \"a\"} : f32[4@model]\n}",
                "bad.ir:2:35: error: unknown mesh axis 'model'"},
        BadText{"module @x {\n  %a = input {name = \"a\"} : f32[1]\n  %a = gelu %a : f32[1]\n}",
                "bad.ir:3:3: error: value '%a' is defined twice"},
        BadText{"module @x {\n  %a = input {name = \"a} : f32[1]\n}",
                "bad.ir:2:34: error: unterminated string"},
        BadText{"module @x {\n  output\n", "bad.ir:3:1: error: expected '}' to close the module"},
        BadText{"module @x {\n  %a = input {name = \"a\"} : f32[0]\n}",
                "bad.ir:2:33: error: dimension sizes must be positive"}));

TEST(IrBuilder, InfersShardedMatMulTypes) {
  Module m;
  m.mesh = Mesh{{{"data", 2}, {"model", 2}}};
  Builder b(m);
  Op *x = b.input("x", {4, 6, 8});
  x->type.sharding.dims[2].axis = 1; // K split over model
  Op *w = b.param("w", {10, 8}, false);
  w->type.sharding.dims[1].axis = 1;
  Op *y = b.matmul(x, w, true);
  EXPECT_EQ(typeString(y->type, m.mesh), "f32[4,6,10] partial(model)");
  EXPECT_EQ(y->type.localShape(m.mesh), (Shape{4, 6, 10}));
  EXPECT_EQ(x->type.localShape(m.mesh), (Shape{4, 6, 4}));
}

} // namespace
} // namespace vitc::ir
