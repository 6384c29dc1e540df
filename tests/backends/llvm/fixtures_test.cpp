// Every PyTorch fixture through the default pipeline and the JIT, on one device and sharded.
#include <gtest/gtest.h>

#include "backends/llvm/llvm_backend.h"
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/fixtures.h"

namespace vitc {
namespace {

class LlvmFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(LlvmFixture, LogitsMatchTheReference) {
  auto run = test::runFixture(GetParam(), llvmbe::compiler(test::verifiedOptions()));
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_LE(run->maxAbsDiff, 1e-4) << GetParam();
}

TEST_P(LlvmFixture, ShardedMatchesTheReference) {
  // Data and model parallel over four threads: collectives go through the communicator, and
  // all_slice and ring_concat address blocks by the device's coordinate. Models whose head count
  // two does not divide are split over the batch only.
  auto factory = llvmbe::compiler(test::verifiedOptions());
  auto run = test::runFixture(GetParam(), factory, {}, "data=2,model=2");
  if (!run && run.error().message().find("does not divide heads") != std::string::npos)
    run = test::runFixture(GetParam(), factory, {}, "data=2,model=1");
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_LE(run->maxAbsDiff, 1e-4) << GetParam();
}

TEST_P(LlvmFixture, IntraOpThreadsMatchTheReference) {
  // Every kernel call split over three threads of one device, so that parts are uneven.
  llvmbe::Options options = test::verifiedOptions();
  options.threads = 3;
  auto run = test::runFixture(GetParam(), llvmbe::compiler(options));
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_LE(run->maxAbsDiff, 1e-4) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(All, LlvmFixture, ::testing::ValuesIn(test::fixtureNames()),
                         [](const auto &info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Onnx, LlvmFixture, ::testing::ValuesIn(test::onnxFixtureNames()),
                         [](const auto &info) { return test::testName(info.param); });

} // namespace
} // namespace vitc
