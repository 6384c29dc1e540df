// `vitc` on ONNX models: run with the file's own weights, compile to a standalone executable, the
// imported-vs-spec fusions, and one-line errors with exit 1.
#include <fstream>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

std::string fixture(const std::string &path) { return test::sourcePath("tests/fixtures/" + path); }

double diffToLogits(const std::string &out, const std::string &dir) {
  auto got = formats::readNpy(out);
  auto want = formats::readNpy(fixture(dir + "/logits.npy"));
  if (!got || !want)
    return INFINITY;
  return test::maxAbsDiff(*got, *want);
}

TEST(OnnxRun, TheFileBringsItsOwnWeightsOnEveryBackend) {
  std::string dir = test::makeTempDir("onnx-run");
  for (const char *backend : {"interpreter", "llvm"}) {
    auto r = test::runVitc({"run", fixture("tv_tok/model_opset13.onnx"), "--input",
                            fixture("tv_tok/input.npy"), "--output", dir + "/y.npy", "--backend",
                            backend});
    ASSERT_EQ(r.exit, 0) << r.err;
    EXPECT_LE(diffToLogits(dir + "/y.npy", "tv_tok"), 1e-4) << backend;
  }
  // On a 2x2 mesh of threads.
  auto r = test::runVitc({"run", fixture("parallel_map/model.onnx"), "--input",
                          fixture("parallel_map/input.npy"), "--output", dir + "/m.npy", "--mesh",
                          "data=2,model=2"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_LE(diffToLogits(dir + "/m.npy", "parallel_map"), 1e-4);
}

TEST(OnnxRun, AStandaloneExecutableRunsWithTheWeightsAsSafetensors) {
  std::string dir = test::makeTempDir("onnx-exe");
  std::string model = fixture("parallel_map/model.onnx");
  auto exe = test::runVitc({"compile", model, "--emit=exe", "-o", dir + "/prog"});
  ASSERT_EQ(exe.exit, 0) << exe.err;
  auto weights =
      test::runVitc({"init-weights", model, "--from", model, "-o", dir + "/w.safetensors"});
  ASSERT_EQ(weights.exit, 0) << weights.err;
  auto run = test::runCommand({dir + "/prog", "--weights", dir + "/w.safetensors", "--input",
                               fixture("parallel_map/input.npy"), "--output", dir + "/y.npy"});
  ASSERT_EQ(run.exit, 0) << run.err;
  EXPECT_LE(diffToLogits(dir + "/y.npy", "parallel_map"), 1e-4);
}

// The imported ViT-22B-style model gets the fusions of the same model from its spec: the
// parallel block's merged projections and one attention kernel per attention.
TEST(OnnxRun, TheImportedModelIsFusedAsTheSpecIs) {
  auto imported = test::runVitc({"compile", fixture("parallel_map/model.onnx"), "-o", "/dev/null"});
  auto spec = test::runVitc(
      {"compile", fixture("parallel_map/model.vit"), "--batch", "2", "-o", "/dev/null"});
  ASSERT_EQ(imported.exit, 0) << imported.err;
  ASSERT_EQ(spec.exit, 0) << spec.err;
  auto line = [](const std::string &err, const std::string &pass) {
    size_t at = err.find("remark: " + pass + ":");
    return at == std::string::npos ? std::string() : err.substr(at, err.find('\n', at) - at);
  };
  EXPECT_EQ(line(imported.err, "fuse-elementwise"),
            "remark: fuse-elementwise: 11 fused_linear, 3 attention");
  EXPECT_EQ(line(imported.err, "fuse-elementwise"), line(spec.err, "fuse-elementwise"));
}

TEST(OnnxRun, ErrorsAreOneLineWithExitOne) {
  std::string dir = test::makeTempDir("onnx-errors");
  std::ofstream(dir + "/bad.onnx") << "not a protobuf at all \xff\xff\xff";
  auto r = test::runVitc({"stats", dir + "/bad.onnx"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_EQ(r.err, dir + "/bad.onnx: error: not an ONNX model: the protobuf does not parse\n");
  // A batch of 4 for a model exported with a fixed batch of 2.
  auto input = formats::readNpy(fixture("parallel_map/input.npy"));
  ASSERT_TRUE(input);
  ASSERT_TRUE(formats::writeNpy(dir + "/x4.npy", test::repeatBatch(*input, 2)));
  auto batch = test::runVitc({"run", fixture("parallel_map/model.onnx"), "--input", dir + "/x4.npy",
                              "--output", dir + "/y.npy", "--backend", "interpreter"});
  EXPECT_EQ(batch.exit, 1) << batch.err << batch.out;
  EXPECT_EQ(batch.err, dir + "/x4.npy: error: input has 4 images; the model was exported with a "
                             "fixed batch of 2\n");
  EXPECT_FALSE(test::fileExists(dir + "/y.npy"));
}

} // namespace
} // namespace vitc
