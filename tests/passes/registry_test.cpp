// The pass registry: sorted, complete, and every pipeline step registered.
#include <gtest/gtest.h>

#include "passes/registry.h"

namespace vitc::passes {
namespace {

TEST(Registry, IsSortedByName) {
  const auto &r = passRegistry();
  for (size_t i = 1; i < r.size(); ++i)
    EXPECT_LT(r[i - 1].name, r[i].name);
}

TEST(Registry, EveryPipelineStepIsARegisteredPassWithAReason) {
  for (const PipelineStep &step : defaultPipeline()) {
    EXPECT_TRUE(findPass(step.pass)) << step.pass;
    EXPECT_FALSE(step.reason.empty()) << step.pass;
  }
}

TEST(Registry, EveryRegisteredPassRunsByDefault) {
  for (const PassInfo &info : passRegistry()) {
    bool used = false;
    for (const PipelineStep &step : defaultPipeline())
      used |= step.pass == info.name;
    EXPECT_TRUE(used) << info.name;
  }
}

TEST(Registry, UnknownNamesListTheKnownOnes) {
  auto e = findPass("canonicalise");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("known passes: canonicalize, collective-matmul"),
            std::string::npos);
}

} // namespace
} // namespace vitc::passes
