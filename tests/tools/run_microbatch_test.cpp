// `vitc run --layout` with micro-batches over a data axis: what must divide what, said in full.
#include <fstream>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

class RunMicroBatches : public ::testing::Test {
protected:
  void SetUp() override {
    dir = test::makeTempDir("run-micro-data");
    fx = test::sourcePath("tests/fixtures/parallel_map");
  }
  test::CommandResult run(const std::string &layout, const std::string &input) {
    std::ofstream(dir + "/layout.json") << layout;
    return test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors",
                          "--input", input, "--output", dir + "/out.npy", "--layout",
                          dir + "/layout.json"});
  }
  std::string dir, fx;
};

TEST_F(RunMicroBatches, ADataAxisThatDoesNotDivideAMicroBatchIsNamed) {
  // 2 images in 2 micro-batches of 1 image, which data=2 cannot split.
  auto r = run(R"({"mesh": {"data": 2, "model": 1}, "microbatches": 2})", fx + "/input.npy");
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("layout.json: error: the layout runs 2 micro-batches of 1 image over "
                       "data=2, which does not divide 1: the batch (2) must be a multiple of 4\n"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));
}

TEST_F(RunMicroBatches, MicroBatchesThatDoNotDivideTheBatchNameTheDataAxisToo) {
  auto r = run(R"({"mesh": {"data": 2, "model": 1}, "microbatches": 3})", fx + "/input.npy");
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("layout.json: error: the layout runs 3 micro-batches, which do not divide "
                       "the batch (2); each also runs over data=2, so the batch must be a multiple "
                       "of 6\n"),
            std::string::npos)
      << r.err;
}

TEST_F(RunMicroBatches, APassOptionSetsTheMicroBatchesOfTheSplitToo) {
  auto r = test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors",
                          "--input", fx + "/input.npy", "--output", dir + "/out.npy",
                          "--pass-option", "layout.microbatches=3"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("--pass-option: error: the layout runs 3 micro-batches, which do not divide "
                       "the batch (2)\n"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));
}

// The split and the passes read one layout: the layout file's, with each --pass-option over it,
// on the mesh of --mesh or the file. A --pass-option's micro-batches meet the data axis of
// --mesh, and the file's data axis, as the passes would.
TEST_F(RunMicroBatches, TheSplitReadsTheLayoutThePassesRead) {
  auto r = test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors",
                          "--input", fx + "/input.npy", "--output", dir + "/out.npy", "--mesh",
                          "data=2,model=1", "--pass-option", "layout.microbatches=2"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_EQ(r.err, "--pass-option: error: the layout runs 2 micro-batches of 1 image over data=2, "
                   "which does not divide 1: the batch (2) must be a multiple of 4\n");
  std::ofstream(dir + "/layout.json") << R"({"mesh": {"dp": 2, "model": 1}, "data_axis": "dp"})";
  r = test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors", "--input",
                     fx + "/input.npy", "--output", dir + "/out.npy", "--layout",
                     dir + "/layout.json", "--pass-option", "layout.microbatches=2"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_EQ(r.err, "--pass-option: error: the layout runs 2 micro-batches of 1 image over dp=2, "
                   "which does not divide 1: the batch (2) must be a multiple of 4\n");
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));
}

TEST_F(RunMicroBatches, ABatchThatDividesRunsAndMatchesTheReference) {
  auto images = formats::readNpy(fx + "/input.npy");
  auto logits = formats::readNpy(fx + "/logits.npy");
  ASSERT_TRUE(images && logits);
  ASSERT_TRUE(formats::writeNpy(dir + "/input4.npy", test::repeatBatch(*images, 2)));
  auto r = run(R"({"mesh": {"data": 2, "model": 1}, "microbatches": 2})", dir + "/input4.npy");
  ASSERT_EQ(r.exit, 0) << r.err;
  auto got = formats::readNpy(dir + "/out.npy");
  ASSERT_TRUE(got);
  Tensor want = test::repeatBatch(*logits, 2);
  ASSERT_EQ(got->shape(), want.shape());
  EXPECT_LE(test::maxAbsDiff(*got, want), 1e-4);
}

} // namespace
} // namespace vitc
