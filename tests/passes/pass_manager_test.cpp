// Pass settings are checked against their table; remarks are summarized one line per pass.
#include <gtest/gtest.h>

#include "passes/layout.h"
#include "passes/pass_manager.h"

namespace vitc::passes {
namespace {

TEST(PassSettings, KnownSettingsWithGoodValuesAreAccepted) {
  for (const auto &[key, value] : Layout{}.settings())
    EXPECT_TRUE(checkPassSetting(key, value)) << key << "=" << value;
  EXPECT_TRUE(checkPassSetting("layout.activations", "replicated"));
  EXPECT_TRUE(checkPassSetting("layout.microbatches", "8"));
  EXPECT_TRUE(checkPassSetting("layout.model-axis", "model"));
  EXPECT_FALSE(checkPassSetting("model-axis", "model")); // the layout's name is the only one
}

TEST(PassSettings, BadKeysAndValuesAreErrorsNamingTheSetting) {
  struct Bad {
    const char *key, *value, *message;
  };
  const Bad bad[] = {
      {"layout.colour", "red", "unknown pass option 'layout.colour' (known: layout.activations"},
      {"", "1", "unknown pass option ''"},
      {"layout.microbatches", "abc", "pass option layout.microbatches='abc': expected an integer"},
      {"layout.microbatches", "", "pass option layout.microbatches='': expected an integer"},
      {"layout.microbatches", "2x", "expected an integer"},
      {"layout.microbatches", "0", "layout.microbatches=0 is out of range: expected 1 to"},
      {"layout.microbatches", "-3", "is out of range"},
      {"layout.params-over-data-min-bytes", "99999999999999999999", "is out of range"},
      {"layout.activations", "columns", "expected one of: tokens replicated"},
      {"layout.activations", "token", "expected one of: tokens replicated"},
      {"layout.collective-matmul", "1", "expected true or false"},
      {"layout.data-axis", "", "expected a mesh axis name"},
      {"layout.model-axis", "a,b", "expected a mesh axis name"},
  };
  for (const Bad &b : bad) {
    Status s = checkPassSetting(b.key, b.value);
    ASSERT_FALSE(s) << b.key << "=" << b.value;
    EXPECT_NE(s.error().message().find(b.message), std::string::npos) << s.error().message();
  }
}

// A setting that is not a number (set by a tool that skipped the check) keeps the default
// instead of throwing out of the pass.
TEST(PassSettings, LayoutFromOptionsNeverThrows) {
  PassOptions o;
  o.settings = {{"layout.microbatches", "abc"}, {"layout.params-over-data-min-bytes", "1e400"}};
  Layout l = Layout::fromOptions(o);
  EXPECT_EQ(l.microbatches, 1);
  EXPECT_EQ(l.paramsOverDataMinBytes, Layout{}.paramsOverDataMinBytes);
}

TEST(Remarks, OneLinePerPassWithTheFirstOfEachKindAndACount) {
  std::vector<std::string> remarks{
      "fuse-parallel-linear: 4 projections of %l0.ln -> %l0.fused (64 x 448)",
      "fuse-parallel-linear: 4 projections of %l1.ln -> %l1.fused (64 x 448)",
      "collective-matmul: all_gather %l0.ln.rs -> 4-step ring into %l0.fused.mm",
      "fuse-parallel-linear: 2 projections summed into %l0.res -> %l0.fused_sum (320 x 64)",
      "collective-matmul: all_gather %l1.ln.rs -> 4-step ring into %l1.fused.mm",
      "collective-matmul: all_gather %encoded.rs -> 4-step ring into %map.fused.mm",
      "collective-matmul: 2 all_reduce(s) not decomposed: why",
      "schedule-overlap: 12 asynchronous collectives",
  };
  std::vector<RemarkSummary> s = summarizeRemarks(remarks);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].pass, "fuse-parallel-linear");
  EXPECT_EQ(s[0].count, 3u);
  EXPECT_EQ(s[0].line, "fuse-parallel-linear: 4 projections of %l0.ln -> %l0.fused (64 x 448) "
                       "(and 1 more like it); 2 projections summed into %l0.res -> %l0.fused_sum "
                       "(320 x 64)");
  EXPECT_EQ(s[1].pass, "collective-matmul");
  EXPECT_EQ(s[1].count, 4u);
  EXPECT_EQ(s[1].line, "collective-matmul: all_gather %l0.ln.rs -> 4-step ring into %l0.fused.mm "
                       "(and 2 more like it); 2 all_reduce(s) not decomposed: why");
  EXPECT_EQ(s[2].line, "schedule-overlap: 12 asynchronous collectives");
  EXPECT_EQ(s[2].count, 1u);
  EXPECT_EQ(remarkPass(remarks[2]), "collective-matmul");
}

TEST(Remarks, ManyKindsAreCappedWithACount) {
  std::vector<std::string> remarks;
  for (const char *kind : {"alpha", "beta", "gamma", "delta", "epsilon"})
    remarks.push_back(std::string("p: ") + kind);
  std::vector<RemarkSummary> s = summarizeRemarks(remarks);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].line, "p: alpha; beta; gamma; and 2 more kinds of remark");
}

} // namespace
} // namespace vitc::passes
