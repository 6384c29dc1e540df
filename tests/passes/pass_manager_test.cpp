// Remarks are summarized one line per pass.
#include <gtest/gtest.h>

#include "passes/pass_manager.h"

namespace vitc::passes {
namespace {

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
