// `vitc run --runtime=mpi` under mpirun: every device a process, the same logits as the reference.
#include <filesystem>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

struct MpiCase {
  const char *fixture;
  const char *mesh;
  int processes;
};

class MpiRun : public ::testing::TestWithParam<MpiCase> {};

TEST_P(MpiRun, MatchesTheReference) {
  const MpiCase &c = GetParam();
  std::string dir =
      test::makeTempDir(std::string("mpi-") + c.fixture + std::to_string(c.processes));
  std::string fx = test::sourcePath(std::string("tests/fixtures/") + c.fixture);
  bool spec = std::filesystem::exists(fx + "/model.vit");
  std::string weights =
      std::filesystem::exists(fx + "/model.npz") ? fx + "/model.npz" : fx + "/model.safetensors";
  auto r = test::runCommand(
      {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(c.processes),
       VITC_BINARY, "run", spec ? fx + "/model.vit" : fx, "--weights", weights, "--input",
       fx + "/input.npy", "--output", dir + "/out.npy", "--mesh", c.mesh, "--runtime=mpi"},
      {}, 120);
  ASSERT_EQ(r.exit, 0) << r.err;
  auto got = formats::readNpy(dir + "/out.npy");
  auto want = formats::readNpy(fx + "/logits.npy");
  ASSERT_TRUE(got && want);
  EXPECT_LE(test::maxAbsDiff(*got, *want), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, MpiRun,
                         ::testing::Values(MpiCase{"parallel_map", "data=1,model=2", 2},
                                           MpiCase{"parallel_map", "data=2,model=2", 4},
                                           MpiCase{"bv_map", "data=1,model=4", 4},
                                           MpiCase{"tv_tok", "data=2,model=1", 2}),
                         [](const auto &info) {
                           return std::string(info.param.fixture) + "_" +
                                  std::to_string(info.param.processes);
                         });

TEST(MpiRun, WrongProcessCountIsAnError) {
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  auto r = test::runCommand({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3",
                             VITC_BINARY, "run", fx + "/model.vit", "--weights", "random:0",
                             "--input", fx + "/input.npy", "--output", "/tmp/never.npy", "--mesh",
                             "data=1,model=2", "--runtime=mpi"},
                            {}, 120);
  EXPECT_NE(r.exit, 0);
  EXPECT_NE(r.err.find("has 2 devices but MPI started 3 processes"), std::string::npos) << r.err;
}

} // namespace
} // namespace vitc
