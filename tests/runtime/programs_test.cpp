// Sharded IR programs run by MeshRunner on threads give what the same program gives on one device.
#include <gtest/gtest.h>

#include "tests/runtime/sharded_programs.h"

namespace vitc::test {
namespace {

struct ProgramCase {
  ShardedProgram program;
  int64_t data, model;
};

std::string caseName(const testing::TestParamInfo<ProgramCase> &info) {
  return fmt::format("{}_{}x{}", info.param.program.name, info.param.data, info.param.model);
}

std::vector<ProgramCase> allCases() {
  std::vector<ProgramCase> cases;
  for (const ShardedProgram &p : shardedPrograms())
    for (auto [d, m] : p.meshes)
      cases.push_back({p, d, m});
  return cases;
}

class ShardedPrograms : public testing::TestWithParam<ProgramCase> {};

TEST_P(ShardedPrograms, MatchOneDevice) {
  const ProgramCase &c = GetParam();
  Expected<std::vector<Tensor>> reference = runText(c.program.text(1, 1));
  ASSERT_TRUE(reference) << reference.error().str();
  Expected<std::vector<Tensor>> sharded = runText(c.program.text(c.data, c.model));
  ASSERT_TRUE(sharded) << sharded.error().str();
  EXPECT_LE(maxDifference(*sharded, *reference), 1e-5);
  // A second run on a new runner gives the same bits: sums do not depend on timing.
  Expected<std::vector<Tensor>> again = runText(c.program.text(c.data, c.model));
  ASSERT_TRUE(again) << again.error().str();
  EXPECT_EQ(maxDifference(*sharded, *again), 0.0);
}

INSTANTIATE_TEST_SUITE_P(All, ShardedPrograms, testing::ValuesIn(allCases()), caseName);

// The reference itself is checked against a program with no sharding and no collectives.
TEST(ShardedPrograms, MlpMatchesAPlainProgram) {
  const char *plain = R"(module @plain mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[4,8]
  %w1 = param {name = "w1"} : f32[16,8]
  %h = matmul %x, %w1 {transpose_b = true} : f32[4,16]
  %g = gelu %h {approximate = true} : f32[4,16]
  %w2 = param {name = "w2"} : f32[8,16]
  %y = matmul %g, %w2 {transpose_b = true} : f32[4,8]
  output %y
}
)";
  Expected<std::vector<Tensor>> expected = runText(plain);
  ASSERT_TRUE(expected) << expected.error().str();
  Expected<std::vector<Tensor>> sharded = runText(programNamed("mlp_all_reduce").text(2, 2));
  ASSERT_TRUE(sharded) << sharded.error().str();
  EXPECT_LE(maxDifference(*sharded, *expected), 1e-5);
}

TEST(MeshRunner, RunsManyTimes) {
  std::string text = programNamed("mlp_reduce_scatter_all_gather").text(1, 4);
  auto m = parseVerified(text);
  ASSERT_TRUE(m) << m.error().str();
  auto runner = runtime::MeshRunner::create(interpret(*m), randomValues((*m)->params(), 3));
  ASSERT_TRUE(runner) << runner.error().str();
  EXPECT_TRUE((*runner)->isWriter());
  auto first = (*runner)->run(randomValues((*m)->inputs(), 4));
  ASSERT_TRUE(first) << first.error().str();
  for (int i = 0; i < 5; ++i) {
    auto next = (*runner)->run(randomValues((*m)->inputs(), 4));
    ASSERT_TRUE(next) << next.error().str();
    EXPECT_EQ(maxDifference(*first, *next), 0.0);
  }
}

TEST(MeshRunner, RejectsInputsOfTheWrongShape) {
  auto m = parseVerified(programNamed("mlp_all_reduce").text(1, 2));
  ASSERT_TRUE(m) << m.error().str();
  auto runner = runtime::MeshRunner::create(interpret(*m), randomValues((*m)->params(), 3));
  ASSERT_TRUE(runner) << runner.error().str();
  auto out = (*runner)->run({randomTensor({4, 9}, 1)});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().message(), "input 'x' has shape [4, 9], the program takes [4, 8]");
  auto none = runtime::MeshRunner::create(interpret(*m), {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "0 parameter tensors for a program that takes 2");
}

TEST(MeshRunner, RejectsALinkModelForAnUnknownAxis) {
  auto m = parseVerified(programNamed("mlp_all_reduce").text(1, 2));
  ASSERT_TRUE(m) << m.error().str();
  runtime::RunnerOptions options;
  options.link = *runtime::LinkModel::parse("tensor=10");
  auto runner = runtime::MeshRunner::create(interpret(*m), randomValues((*m)->params(), 3), options);
  ASSERT_FALSE(runner);
  EXPECT_EQ(runner.error().message(),
            "the link model names axis 'tensor', but the mesh has only data, model");
}

} // namespace
} // namespace vitc::test
