// vitc autotune: the search, its output, the layout it writes, and its refusals.
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "autotune/search.h"
#include "backends/interpreter/interpreter.h"
#include "frontend/load_model.h"
#include "frontend/spec.h"
#include "passes/analysis.h"
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
  auto measured = autotune::profileProgram(**m, interp::compiler());
  ASSERT_TRUE(measured) << measured.error().str();
  EXPECT_GT(measured->ops.size(), 20u);
  autotune::Profile doubled = *measured;
  for (auto &[name, seconds] : doubled.ops) {
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
  o.profile = [&](const ir::Module &candidate) -> Expected<autotune::Profile> {
    ++profiled;
    EXPECT_EQ(candidate.mesh.numDevices(), 2);
    return autotune::profileProgram(candidate, interp::compiler());
  };
  auto result = autotune::search(*config, o);
  ASSERT_TRUE(result) << result.error().str();
  EXPECT_EQ(profiled, static_cast<int>(result->ranked.size()));
}

// A training step is profiled as vitc train runs it: the search hands the profile the step itself
// (its outputs are the params' next values), and timing it replaces the params, which a step only
// does when every output is finite (random optimizer moments would make the update NaN).
TEST(Autotune, TrainingStepsAreProfiledAsTheyRun) {
  auto config = frontend::readSpecFile(sourcePath("examples/parallel-tiny.vit"));
  ASSERT_TRUE(config);
  autotune::SearchOptions o;
  o.devices = 2;
  o.batch = 2;
  o.train = true;
  o.target = autotune::tpuv4();
  int profiled = 0;
  o.profile = [&](const ir::Module &step) -> Expected<autotune::Profile> {
    ++profiled;
    EXPECT_FALSE(step.paramUpdates().empty());
    return autotune::profileProgram(step, interp::compiler());
  };
  auto result = autotune::search(*config, o);
  ASSERT_TRUE(result) << result.error().str();
  ASSERT_FALSE(result->ranked.empty());
  EXPECT_EQ(profiled, static_cast<int>(result->ranked.size()));
  for (const autotune::Evaluation &e : result->ranked)
    EXPECT_GT(e.perStep.hostSeconds, 0) << e.candidate.meshString() << e.candidate.layoutString();
}

// What a step does on the host besides its kernels (copying the outputs out, a training step's
// check and re-packing of its next params, the thread runtime's collectives) is in the prediction,
// in proportion to the bytes it moves: a training step moves at least every param it updates.
TEST(Autotune, HostTimeScalesWithTheBytesAStepMoves) {
  auto config = frontend::readSpecFile(sourcePath("examples/parallel-tiny.vit"));
  ASSERT_TRUE(config);
  autotune::Candidate c;
  c.mesh = ir::Mesh{{{"data", 2}, {"model", 1}}};
  auto one = autotune::compileCandidate(*config, 2, c, 1, /*train=*/true);
  auto two = autotune::compileCandidate(*config, 2, c, 2, /*train=*/true);
  ASSERT_TRUE(one && two);
  int64_t params = 0;
  for (const ir::Op *p : (*two)->params())
    params += p->type.localBytes((*two)->mesh);
  EXPECT_GE(autotune::hostBytes(**two), 2 * params); // each of the two devices, its params
  EXPECT_GT(autotune::hostBytes(**two), autotune::hostBytes(**one));

  autotune::Profile profile;
  profile.hostSeconds = 0.01;
  profile.hostBytes = autotune::hostBytes(**two);
  autotune::Target target = autotune::tpuv4();
  autotune::Prediction big = autotune::simulate(**two, target, &profile);
  autotune::Prediction small = autotune::simulate(**one, target, &profile);
  autotune::Prediction none = autotune::simulate(**two, target);
  EXPECT_DOUBLE_EQ(big.hostSeconds, 0.01);
  EXPECT_NEAR(small.hostSeconds,
              0.01 * static_cast<double>(autotune::hostBytes(**one)) /
                  static_cast<double>(profile.hostBytes),
              1e-12);
  EXPECT_EQ(none.hostSeconds, 0);
  EXPECT_NEAR(big.stepSeconds, none.stepSeconds + 0.01, 1e-9);
}

// A training step's timing params: random weights, zero optimizer state, so that the step stays
// finite and replaces its params each time.
TEST(Autotune, TimedTrainingStepsStayFinite) {
  auto config = frontend::readSpecFile(sourcePath("examples/parallel-tiny.vit"));
  ASSERT_TRUE(config);
  autotune::Candidate c;
  c.mesh = ir::Mesh{{{"data", 1}, {"model", 2}}};
  auto step = autotune::compileCandidate(*config, 2, c, 1, /*train=*/true);
  ASSERT_TRUE(step) << step.error().str();
  auto times = autotune::timeSteps(std::move(*step), interp::compiler(), {}, 2, 2);
  ASSERT_TRUE(times) << times.error().str();
  EXPECT_EQ(times->size(), 2u);
}

// The cached calibration of this CPU is used only where it is this host's and says when it was
// taken: one from another host, or one without its date, is measured again.
TEST(Autotune, StaleCalibrationsAreMeasuredAgain) {
  std::string dir = test::makeTempDir("autotune-calibration");
  autotune::Target cached;
  cached.name = "cpu";
  cached.peakFlops = 1234;
  cached.memoryBandwidth = 1;
  cached.memoryBytes = 1 << 20; // not this host's
  cached.coresPerHost = 1000;
  cached.calibratedAt = "2026-01-01T00:00:00Z";
  std::ofstream(dir + "/cpu-interpreter.json") << autotune::writeTarget(cached);
  auto fresh = autotune::calibrateCpu(interp::compiler(), "interpreter", dir);
  ASSERT_TRUE(fresh) << fresh.error().str();
  EXPECT_NE(fresh->peakFlops, 1234);
  EXPECT_FALSE(fresh->calibratedAt.empty());
  // What it wrote is this host's now: kept as it is, when it was taken on an idle host (a
  // calibration taken while the host was busier than now is measured again, so the test says
  // which, whatever the load while it runs).
  autotune::Target idle = *fresh;
  idle.calibrationLoad = 0;
  std::ofstream(dir + "/cpu-interpreter.json") << autotune::writeTarget(idle);
  auto again = autotune::calibrateCpu(interp::compiler(), "interpreter", dir);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->peakFlops, fresh->peakFlops);
  EXPECT_EQ(again->calibratedAt, fresh->calibratedAt);
  autotune::Target busy = *fresh;
  busy.calibrationLoad = 1e6;
  std::ofstream(dir + "/cpu-interpreter.json") << autotune::writeTarget(busy);
  auto quieter = autotune::calibrateCpu(interp::compiler(), "interpreter", dir);
  ASSERT_TRUE(quieter);
  EXPECT_LT(quieter->calibrationLoad, 1e6);
  // Unless asked to measure again.
  auto forced = autotune::calibrateCpu(interp::compiler(), "interpreter", dir, true);
  ASSERT_TRUE(forced);
  EXPECT_NE(forced->peakFlops, fresh->peakFlops);
}

// An ONNX model has one depth: its candidates are compiled from the imported graph and simulated
// whole, and they cost what the same model's spec costs (the same FLOPs, the same collectives).
TEST(Autotune, AnOnnxGraphCostsWhatItsSpecCosts) {
  std::string dir = sourcePath("tests/fixtures/parallel_map");
  auto config = frontend::readSpecFile(dir + "/model.vit");
  ASSERT_TRUE(config);
  autotune::GraphBuilder graph = [&](int64_t batch) -> Expected<std::unique_ptr<ir::Module>> {
    VITC_ASSIGN(frontend::LoadedModel m, frontend::loadModel(dir + "/model.onnx", {batch}));
    return std::move(m.module);
  };
  autotune::SearchOptions o;
  o.devices = 2;
  o.batch = 2;
  o.target = autotune::tpuv4();
  auto fromOnnx = autotune::search(graph, o);
  auto fromSpec = autotune::search(*config, o);
  ASSERT_TRUE(fromOnnx) << fromOnnx.error().str();
  ASSERT_TRUE(fromSpec) << fromSpec.error().str();
  ASSERT_FALSE(fromOnnx->ranked.empty());
  EXPECT_NEAR(fromOnnx->modelFlopsPerStep, fromSpec->modelFlopsPerStep,
              0.01 * fromSpec->modelFlopsPerStep);
  const autotune::Evaluation &best = fromOnnx->ranked.front();
  const autotune::Evaluation *same = nullptr;
  for (const autotune::Evaluation &e : fromSpec->ranked)
    if (e.candidate.meshString() == best.candidate.meshString() &&
        e.candidate.layoutString() == best.candidate.layoutString())
      same = &e;
  ASSERT_NE(same, nullptr) << best.candidate.layoutString();
  // Within 10%: the exporter spells a few elementwise ops differently (a MAP head's probe is a
  // broadcast add), which cost their bytes; the matmuls and collectives are the same.
  EXPECT_NEAR(best.perStep.stepSeconds, same->perStep.stepSeconds,
              0.10 * same->perStep.stepSeconds);
  EXPECT_NEAR(best.perStep.commSeconds, same->perStep.commSeconds,
              0.01 * same->perStep.commSeconds + 1e-9);
  EXPECT_EQ(best.perStep.weightBytes, same->perStep.weightBytes);
}

TEST(Autotune, OnnxModelsRankMeasureAndRefuseInOneLine) {
  std::string onnx = sourcePath("tests/fixtures/tv_tok/model_opset17.onnx");
  std::string dir = test::makeTempDir("autotune-onnx");
  auto r = runVitc({"autotune", onnx, "--devices", "2", "--batch", "2", "--target", "tpuv4",
                    "--mode=train", "--measure", "2", "-o", dir + "/layout.json"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(chosen: data=\d+, model=\d+ with )")))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(
  2  data=\d+, model=\d+ .* [0-9.]+ m?s +[0-9.]+ m?s +[-+][0-9]+%)")))
      << r.out;
  EXPECT_TRUE(test::fileExists(dir + "/layout.json"));
  // Three devices do not divide the batch: the data-parallel candidates are refused, each in one
  // line, and the model axis is tried alone.
  auto three = runVitc(
      {"autotune", onnx, "--devices", "3", "--batch", "2", "--target", "tpuv4", "--verbose"});
  ASSERT_EQ(three.exit, 0) << three.err;
  EXPECT_TRUE(std::regex_search(
      three.out,
      std::regex(R"(\n  rejected data=3, model=1 data parallel: the batch \(2\) does not )"
                 R"(divide over data=3\n)")))
      << three.out;
  // A graph exported for a fixed batch is tuned for that batch.
  auto fixed = runVitc({"autotune", sourcePath("tests/fixtures/parallel_map/model.onnx"),
                        "--devices", "2", "--batch", "4", "--target", "tpuv4"});
  EXPECT_EQ(fixed.exit, 1);
  EXPECT_TRUE(std::regex_match(
      fixed.err,
      std::regex(
          R"(.*model\.onnx: error: the model was exported for a batch of 2: give --batch 2\n)")))
      << fixed.err;
}

// IR text is already compiled for one mesh: there is nothing to choose.
TEST(Autotune, IrTextIsRefusedInOneLine) {
  std::string dir = test::makeTempDir("autotune-ir");
  auto compile = runVitc(
      {"compile", sourcePath("examples/parallel-tiny.vit"), "--emit=ir", "-o", dir + "/m.ir"});
  ASSERT_EQ(compile.exit, 0) << compile.err;
  auto r = runVitc({"autotune", dir + "/m.ir", "--devices", "2", "--target", "tpuv4"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_TRUE(std::regex_match(
      r.err, std::regex(R"(.*m\.ir: error: autotune needs a model description \(a spec, a Hugging )"
                        R"(Face config or an ONNX file\), not IR text: [^\n]*\n)")))
      << r.err;
}

} // namespace
} // namespace vitc
