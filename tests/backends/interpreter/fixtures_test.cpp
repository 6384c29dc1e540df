// The interpreter against the PyTorch fixtures: the check that anchors every other test.
#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "tests/common/fixtures.h"

namespace vitc {
namespace {

class InterpreterFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(InterpreterFixture, LogitsMatchTheReference) {
  auto run = test::runFixture(GetParam(), interp::compiler());
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_LE(run->maxAbsDiff, 1e-4) << GetParam();
  // Logits of order one: the tolerance is meaningful.
  float largest = 0;
  for (int64_t i = 0; i < run->expected.numel(); ++i)
    largest = std::max(largest, std::abs(run->expected.data()[i]));
  EXPECT_GT(largest, 0.5f);
}

INSTANTIATE_TEST_SUITE_P(All, InterpreterFixture, ::testing::ValuesIn(test::fixtureNames()),
                         [](const auto &info) { return info.param; });

// The ONNX exports of fixtures (torchvision at opsets 17 and 13, the ViT-22B-style model) give
// PyTorch's logits too.
INSTANTIATE_TEST_SUITE_P(Onnx, InterpreterFixture, ::testing::ValuesIn(test::onnxFixtureNames()),
                         [](const auto &info) { return test::testName(info.param); });

TEST(InterpreterFixtures, ThreeOnnxExportsAreThere) {
  EXPECT_EQ(test::onnxFixtureNames().size(), 3u);
}

TEST(InterpreterFixtures, AllNineAreThere) { EXPECT_EQ(test::fixtureNames().size(), 9u); }

} // namespace
} // namespace vitc
