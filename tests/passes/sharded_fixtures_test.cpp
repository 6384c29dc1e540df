// The sharding passes on every fixture and mesh: the same logits as the reference, or a refusal
// that names the dimension the mesh does not divide.
#include <regex>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "tests/common/fixtures.h"

namespace vitc {
namespace {

struct Case {
  std::string fixture;
  std::string mesh;
};

std::vector<Case> cases() {
  std::vector<Case> all;
  for (const std::string &f : test::fixtureNames())
    for (const char *mesh :
         {"data=1,model=1", "data=1,model=2", "data=2,model=1", "data=2,model=2", "data=1,model=4"})
      all.push_back({f, mesh});
  return all;
}

class ShardedFixture : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedFixture, MatchesTheReferenceOrNamesTheDimension) {
  passes::PipelineOptions pipeline;
  pipeline.verifyEach = true;
  auto run =
      test::runFixture(GetParam().fixture, interp::compiler(), pipeline, GetParam().mesh);
  if (!run) {
    // Only a mesh that does not divide the model may be refused, and the error says which part.
    EXPECT_TRUE(std::regex_search(run.error().str(),
                                  std::regex(R"(does not divide (heads|width|mlp) \(\d+\))")))
        << run.error().str();
    EXPECT_NE(GetParam().mesh.find("model="), std::string::npos);
    return;
  }
  EXPECT_LE(run->maxAbsDiff, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, ShardedFixture, ::testing::ValuesIn(cases()), [](const auto &info) {
  std::string name = info.param.fixture + "_" + info.param.mesh;
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name;
});

// Every parallel-block and MAP fixture runs on every mesh: the refusals above are not a loophole.
TEST(ShardedFixtures, TheParallelBlockModelRunsOnEveryMesh) {
  for (const char *mesh :
       {"data=1,model=2", "data=2,model=1", "data=2,model=2", "data=1,model=4"}) {
    auto run = test::runFixture("parallel_map", interp::compiler(), {}, mesh);
    ASSERT_TRUE(run) << mesh << ": " << run.error().str();
    EXPECT_LE(run->maxAbsDiff, 1e-4) << mesh;
  }
}

} // namespace
} // namespace vitc
