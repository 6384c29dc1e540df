// vitc autotune: the search, its output, the layout it writes, and its refusals.
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "autotune/search.h"
#include "backends/interpreter/interpreter.h"
#include "frontend/spec.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

using test::runVitc;
using test::sourcePath;

TEST(Autotune, Vit22bOnA1024ChipTpuPodPlansWithoutWeights) {
  auto r = runVitc({"autotune", sourcePath("examples/vit22b"), "--devices", "1024", "--target",
                    "tpuv4", "--mode=train", "--batch", "65536"});
  ASSERT_EQ(r.exit, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.out, m, std::regex(R"(chosen: (data=\d+, model=\d+) with .*, ([0-9.]+)% MFU)")))
      << r.out;
  double mfu = std::stod(m[2]);
  EXPECT_GT(mfu, 20);
  EXPECT_LT(mfu, 90);
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"(ViT-22B's layout .*best on data=\d+, model=\d+: .*% MFU)")))
      << r.out;
}

TEST(Autotune, WritesALayoutThatCompileAndRunAccept) {
  std::string dir = test::makeTempDir("autotune-layout");
  auto r = runVitc({"autotune", sourcePath("examples/parallel-tiny.vit"), "--devices", "2",
                    "--batch", "2", "--target", sourcePath("examples/targets/tpuv4.json"), "-o",
                    dir + "/layout.json"});
  ASSERT_EQ(r.exit, 0) << r.err;
  std::string layout = test::slurp(dir + "/layout.json");
  EXPECT_NE(layout.find("\"mesh\""), std::string::npos) << layout;
  auto compile = runVitc({"compile", sourcePath("examples/parallel-tiny.vit"), "--batch", "2",
                          "--layout", dir + "/layout.json", "-o", dir + "/m.ir"});
  ASSERT_EQ(compile.exit, 0) << compile.err;
  std::string fx = sourcePath("tests/fixtures/parallel_map");
  auto run =
      runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors", "--input",
               fx + "/input.npy", "--output", dir + "/out.npy", "--layout", dir + "/layout.json"});
  ASSERT_EQ(run.exit, 0) << run.err;
}

TEST(Autotune, AModelThatFitsNoCandidateSaysWhyAndFails) {
  std::string dir = test::makeTempDir("autotune-nofit");
  std::ofstream(dir + "/tiny.json")
      << R"({"name": "tiny", "peak_flops": 1e12, "memory_bandwidth": 1e11,
             "memory_bytes": 1048576, "links": {"*": {"gbps": 10}}})";
  auto r = runVitc({"autotune", sourcePath("examples/vit-b16.vit"), "--devices", "2", "--target",
                    dir + "/tiny.json"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_TRUE(std::regex_search(
      r.err,
      std::regex(R"(no layout fits 2 devices of tiny: .*needs [0-9.]+ GiB per device \(weights)")))
      << r.err;
}

TEST(Autotune, BadTargetsAreOneLineErrors) {
  std::string dir = test::makeTempDir("autotune-target");
  std::ofstream(dir + "/bad.json") << R"({"name": "x", "peak_flops": -1})";
  auto r = runVitc({"autotune", sourcePath("examples/parallel-tiny.vit"), "--devices", "2",
                    "--target", dir + "/bad.json"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("bad.json: error: 'peak_flops' must be a non-negative number"),
            std::string::npos)
      << r.err;
  auto missing = runVitc({"autotune", sourcePath("examples/parallel-tiny.vit"), "--devices", "2",
                          "--target", dir + "/none.json"});
  EXPECT_EQ(missing.exit, 1);
}

TEST(Autotune, SearchRanksByPredictedTimeAndExtrapolatesDepth) {
  auto config = frontend::readSpecFile(sourcePath("examples/vit22b.vit"));
  ASSERT_TRUE(config);
  autotune::SearchOptions o;
  o.devices = 64;
  o.batch = 64;
  o.target = autotune::tpuv4();
  auto result = autotune::search(*config, o);
  ASSERT_TRUE(result) << result.error().str();
  ASSERT_FALSE(result->ranked.empty());
  for (size_t i = 1; i < result->ranked.size(); ++i)
    EXPECT_LE(result->ranked[i - 1].perStep.stepSeconds, result->ranked[i].perStep.stepSeconds);
  // The depth-2 extrapolation equals compiling all 48 layers, for one candidate.
  const autotune::Candidate &c = result->ranked.front().candidate;
  auto full = autotune::compileCandidate(*config, o.batch / c.microbatches, c);
  ASSERT_TRUE(full);
  autotune::Prediction p = autotune::simulate(**full, o.target);
  double predicted = result->ranked.front().perStep.computeSeconds / c.microbatches;
  EXPECT_NEAR(predicted, p.computeSeconds, 0.01 * p.computeSeconds);
  EXPECT_NEAR(static_cast<double>(result->ranked.front().perStep.weightBytes),
              static_cast<double>(p.weightBytes), 0.01 * p.weightBytes);
}

// On a host it can run, the search profiles each candidate that fits, and its ops then cost what
// they took: all of them, so that doubling the profile doubles the predicted compute.
TEST(Autotune, ProfiledCandidatesCostWhatTheirOpsMeasured) {
  auto config = frontend::readSpecFile(sourcePath("examples/parallel-tiny.vit"));
  ASSERT_TRUE(config);
  autotune::Candidate c;
  c.mesh = ir::Mesh{{{"data", 1}, {"model", 2}}};
  auto m = autotune::compileCandidate(*config, 2, c, 2);
  ASSERT_TRUE(m) << m.error().str();
  auto measured = autotune::profileOps(**m, interp::compiler());
  ASSERT_TRUE(measured) << measured.error().str();
  EXPECT_GT(measured->size(), 20u);
  autotune::OpSeconds doubled = *measured;
  for (auto &[name, seconds] : doubled) {
    EXPECT_GT(seconds, 0) << name;
    seconds *= 2;
  }
  autotune::Target target = autotune::tpuv4(); // its rates must not matter
  autotune::Prediction once = autotune::simulate(**m, target, &*measured);
  autotune::Prediction twice = autotune::simulate(**m, target, &doubled);
  EXPECT_GT(once.computeSeconds, 0);
  EXPECT_NEAR(twice.computeSeconds, 2 * once.computeSeconds, 1e-9 * once.computeSeconds);

  autotune::SearchOptions o;
  o.devices = 2;
  o.batch = 2;
  o.target = target;
  int profiled = 0;
  o.profile = [&](const ir::Module &candidate) -> Expected<autotune::OpSeconds> {
    ++profiled;
    EXPECT_EQ(candidate.mesh.numDevices(), 2);
    return autotune::profileOps(candidate, interp::compiler());
  };
  auto result = autotune::search(*config, o);
  ASSERT_TRUE(result) << result.error().str();
  EXPECT_EQ(profiled, static_cast<int>(result->ranked.size()));
}

} // namespace
} // namespace vitc
