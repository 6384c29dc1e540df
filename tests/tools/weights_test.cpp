// `vitc run` and its weights: tensors the model does not use are refused (--allow-unused-weights
// runs anyway), integer tensors are refused, and NaN or Inf in the weights or the input is a
// warning (--allow-nonfinite silences it) that leaves the exit status alone.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "frontend/formats/safetensors.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

using test::runVitc;
using test::sourcePath;

std::string fixture(const std::string &name, const std::string &file = "") {
  return sourcePath("tests/fixtures/" + name + (file.empty() ? "" : "/" + file));
}

int lines(const std::string &text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// parallel_tok's weights with `change` applied, written to `path`.
void writeChanged(
    const std::string &path,
    const std::function<void(std::vector<std::pair<std::string, Tensor>> &)> &change) {
  auto file = formats::SafetensorsFile::open(fixture("parallel_tok", "model.safetensors"));
  ASSERT_TRUE(file) << file.error().str();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const formats::SafetensorsEntry &e : file->entries())
    tensors.emplace_back(e.name, *file->load(e.name));
  change(tensors);
  ASSERT_TRUE(formats::writeSafetensors(path, tensors));
}

// Compiles parallel_tok into the standalone executable `dir`/prog; returns its command line for
// `weights` and the fixture's input (output `dir`/out.npy), or nothing if it did not compile.
std::vector<std::string> parallelTokExecutable(const std::string &dir, const std::string &weights) {
  auto exe = runVitc({"compile", fixture("parallel_tok", "model.vit"), "--batch", "2", "--emit=exe",
                      "-o", dir + "/prog"});
  EXPECT_EQ(exe.exit, 0) << exe.err;
  if (exe.exit != 0)
    return {};
  return {dir + "/prog", "--weights",     weights, "--input", fixture("parallel_tok", "input.npy"),
          "--output",    dir + "/out.npy"};
}

std::vector<std::string> runParallelTok(const std::string &weights, const std::string &out,
                                        const std::string &input = "") {
  return {"run",       fixture("parallel_tok", "model.vit"),
          "--weights", weights,
          "--input",   input.empty() ? fixture("parallel_tok", "input.npy") : input,
          "--output",  out,
          "--backend", "interpreter"};
}

TEST(Weights, BigVisionTokenCheckpointUnderAGapSpecIsRefusedNamingCls) {
  std::string dir = test::makeTempDir("weights-gap");
  std::string spec = test::slurp(fixture("bv_tok", "model.vit"));
  size_t at = spec.find("pool = \"token\"");
  ASSERT_NE(at, std::string::npos);
  spec.replace(at, 14, "pool = \"gap\"");
  std::ofstream(dir + "/gap.vit") << spec;
  std::vector<std::string> args = {"run",       dir + "/gap.vit",
                                   "--weights", fixture("bv_tok", "model.npz"),
                                   "--input",   fixture("bv_tok", "input.npy"),
                                   "--output",  dir + "/out.npy",
                                   "--backend", "interpreter"};
  auto r = runVitc(args);
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(r.err, fixture("bv_tok", "model.npz") +
                       ": error: the file holds 1 tensor the model does not use: 'cls' "
                       "(--allow-unused-weights runs anyway)\n");
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));

  args.push_back("--allow-unused-weights");
  auto allowed = runVitc(args);
  EXPECT_EQ(allowed.exit, 0) << allowed.err;
  EXPECT_TRUE(test::fileExists(dir + "/out.npy"));
}

TEST(Weights, SafetensorsWithAnExtraTensorIsRefusedAndRunsWhenAllowed) {
  std::string dir = test::makeTempDir("weights-extra");
  std::string weights = dir + "/w.safetensors";
  writeChanged(weights, [](auto &t) { t.emplace_back("extra", Tensor::zeros({4})); });
  auto r = runVitc(runParallelTok(weights, dir + "/out.npy"));
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(weights + ": error: the file holds 1 tensor the model does not use: "
                                 "'extra'"),
            std::string::npos)
      << r.err;
  std::vector<std::string> args = runParallelTok(weights, dir + "/out.npy");
  args.push_back("--allow-unused-weights");
  auto allowed = runVitc(args);
  EXPECT_EQ(allowed.exit, 0) << allowed.err;
}

// parallel_tok's weights with the first tensor's F32 data relabelled I32 (the same size), written
// to `path`; returns the tensor's name.
std::string writeWithAnI32Tensor(const std::string &path) {
  std::string name;
  writeChanged(path, [&](auto &t) { name = t[0].first; });
  // The header's keys are sorted, so the tensor's dtype is the first after its name.
  std::string bytes = test::slurp(path);
  size_t at = bytes.find("\"F32\"", bytes.find("\"" + name + "\""));
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos)
    bytes.replace(at, 5, "\"I32\"");
  std::ofstream(path, std::ios::binary) << bytes;
  return name;
}

TEST(Weights, IntegerTensorIsRefused) {
  std::string dir = test::makeTempDir("weights-i32");
  std::string weights = dir + "/w.safetensors";
  std::string name = writeWithAnI32Tensor(weights);
  auto r = runVitc(runParallelTok(weights, dir + "/out.npy"));
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(r.err, weights + ": error: tensor '" + name +
                       "' has dtype I32; weights must be floating point (F32, F16, BF16 or F64)\n");
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));

  // The standalone executable refuses it too.
  auto exe = runVitc({"compile", fixture("parallel_tok", "model.vit"), "--batch", "2", "--emit=exe",
                      "-o", dir + "/prog"});
  ASSERT_EQ(exe.exit, 0) << exe.err;
  auto run = test::runCommand({dir + "/prog", "--weights", weights, "--input",
                               fixture("parallel_tok", "input.npy"), "--output", dir + "/out.npy"});
  EXPECT_EQ(run.exit, 1) << run.err;
  EXPECT_EQ(lines(run.err), 1) << run.err;
  EXPECT_NE(run.err.find("tensor '" + name + "' has dtype I32"), std::string::npos) << run.err;
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));
}

// A tensor of the wrong shape, a missing one and one the model does not use: `vitc run` and the
// standalone executable bind with the same function and say the same one line.
TEST(Weights, RunAndTheExecutableReportMisshapedMissingAndUnusedTensorsInOneLine) {
  std::string dir = test::makeTempDir("weights-three-kinds");
  std::string weights = dir + "/w.safetensors";
  std::string misshaped, missing;
  writeChanged(weights, [&](auto &t) {
    misshaped = t[0].first;
    t[0].second = Tensor::zeros({3});
    missing = t[1].first;
    t.erase(t.begin() + 1);
    t.emplace_back("extra", Tensor::zeros({4}));
  });
  std::string expected =
      fmt::format("{}: error: tensor '{}' has shape [3], the model needs [", weights, misshaped);
  std::string rest = fmt::format("; missing tensor '{}' (shape [", missing);
  std::string unused = "; the file holds 1 tensor the model does not use: 'extra' "
                       "(--allow-unused-weights runs anyway)\n";

  auto r = runVitc(runParallelTok(weights, dir + "/out.npy"));
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind(expected, 0), 0u) << r.err;
  EXPECT_NE(r.err.find(rest), std::string::npos) << r.err;
  EXPECT_TRUE(r.err.ends_with(unused)) << r.err;

  std::vector<std::string> args = parallelTokExecutable(dir, weights);
  ASSERT_FALSE(args.empty());
  auto run = test::runCommand(args);
  EXPECT_EQ(run.exit, 1) << run.err;
  EXPECT_EQ(run.err, r.err);
  EXPECT_FALSE(test::fileExists(dir + "/out.npy"));

  // --allow-unused-weights drops the third complaint only, in both.
  args.push_back("--allow-unused-weights");
  auto allowed = test::runCommand(args);
  EXPECT_EQ(allowed.exit, 1) << allowed.err;
  EXPECT_EQ(allowed.err.find("extra"), std::string::npos) << allowed.err;
  EXPECT_NE(allowed.err.find(rest), std::string::npos) << allowed.err;
}

// The executable runs weights with a tensor the model does not use when told to, as `vitc run`
// does.
TEST(Weights, TheExecutableRunsWithUnusedTensorsWhenAllowed) {
  std::string dir = test::makeTempDir("weights-exe-extra");
  std::string weights = dir + "/w.safetensors";
  writeChanged(weights, [](auto &t) { t.emplace_back("extra", Tensor::zeros({4})); });
  std::vector<std::string> args = parallelTokExecutable(dir, weights);
  ASSERT_FALSE(args.empty());
  auto refused = test::runCommand(args);
  EXPECT_EQ(refused.exit, 1) << refused.err;
  EXPECT_EQ(refused.err, weights + ": error: the file holds 1 tensor the model does not use: "
                                   "'extra' (--allow-unused-weights runs anyway)\n");
  args.push_back("--allow-unused-weights");
  auto allowed = test::runCommand(args);
  EXPECT_EQ(allowed.exit, 0) << allowed.err;
  auto got = formats::readNpy(dir + "/out.npy");
  auto want = formats::readNpy(fixture("parallel_tok", "logits.npy"));
  ASSERT_TRUE(got && want);
  ASSERT_EQ(got->shape(), want->shape());
  for (int64_t i = 0; i < got->numel(); ++i)
    EXPECT_NEAR(got->data()[i], want->data()[i], 1e-4) << i;
}

// `--weights random:SEED` and the file `vitc init-weights --seed SEED` writes are the same
// weights, LayerNorm scales (drawn near 1, known from the frontend module) included.
TEST(Weights, RandomWeightsRunAsTheFileInitWeightsWrites) {
  std::string dir = test::makeTempDir("weights-random");
  auto init = runVitc({"init-weights", fixture("parallel_tok", "model.vit"), "--seed", "6", "-o",
                       dir + "/w.safetensors"});
  ASSERT_EQ(init.exit, 0) << init.err;
  auto fromFile = runVitc(runParallelTok(dir + "/w.safetensors", dir + "/file.npy"));
  ASSERT_EQ(fromFile.exit, 0) << fromFile.err;
  auto random = runVitc(runParallelTok("random:6", dir + "/random.npy"));
  ASSERT_EQ(random.exit, 0) << random.err;
  EXPECT_EQ(test::slurp(dir + "/random.npy"), test::slurp(dir + "/file.npy"));
}

TEST(Weights, NonFiniteWeightsAndInputsWarnAndAllowNonfiniteSilencesThem) {
  std::string dir = test::makeTempDir("weights-nan");
  std::string weights = dir + "/w.safetensors";
  std::string name;
  writeChanged(weights, [&](auto &t) {
    for (auto &[n, tensor] : t)
      if (tensor.rank() == 2 && name.empty()) {
        name = n;
        Tensor copy = Tensor::zeros(tensor.shape());
        std::copy(tensor.data(), tensor.data() + tensor.numel(), copy.mutableData());
        copy.mutableData()[tensor.dim(1) + 2] = std::nanf("");
        copy.mutableData()[tensor.dim(1) + 3] = INFINITY;
        tensor = copy;
      }
  });
  ASSERT_FALSE(name.empty());
  auto r = runVitc(runParallelTok(weights, dir + "/out.npy"));
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_NE(r.err.find(weights + ": warning: tensor '" + name +
                       "' holds NaN at index [1, 2] (2 non-finite values in all)\n"),
            std::string::npos)
      << r.err;

  auto input = formats::readNpy(fixture("parallel_tok", "input.npy"));
  ASSERT_TRUE(input) << input.error().str();
  Tensor images = Tensor::zeros(input->shape());
  std::copy(input->data(), input->data() + input->numel(), images.mutableData());
  images.mutableData()[images.numel() - 1] = -INFINITY;
  ASSERT_TRUE(formats::writeNpy(dir + "/x.npy", images));
  auto in = runVitc(runParallelTok(fixture("parallel_tok", "model.safetensors"), dir + "/out.npy",
                                   dir + "/x.npy"));
  EXPECT_EQ(in.exit, 0) << in.err;
  const Shape &s = images.shape();
  EXPECT_NE(in.err.find(fmt::format("{}/x.npy: warning: tensor 'pixels' holds -Inf at index [{}, "
                                    "{}, {}, {}] (1 non-finite value in all)\n",
                                    dir, s[0] - 1, s[1] - 1, s[2] - 1, s[3] - 1)),
            std::string::npos)
      << in.err;

  std::vector<std::string> args = runParallelTok(weights, dir + "/out.npy", dir + "/x.npy");
  args.push_back("--allow-nonfinite");
  auto quiet = runVitc(args);
  EXPECT_EQ(quiet.exit, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("warning"), std::string::npos) << quiet.err;

  // The standalone executable warns alike, in the same words, and is as quiet when told.
  std::vector<std::string> exe = parallelTokExecutable(dir, weights);
  ASSERT_FALSE(exe.empty());
  exe[4] = dir + "/x.npy";
  auto both = test::runCommand(exe);
  EXPECT_EQ(both.exit, 0) << both.err;
  auto bothRun = runVitc(runParallelTok(weights, dir + "/out.npy", dir + "/x.npy"));
  EXPECT_EQ(bothRun.exit, 0) << bothRun.err;
  // The same two lines (vitc run reads the input first, the executable the weights).
  auto sortedLines = [](const std::string &text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      out.push_back(line);
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(lines(both.err), 2) << both.err;
  EXPECT_EQ(sortedLines(both.err), sortedLines(bothRun.err));
  exe.push_back("--allow-nonfinite");
  auto exeQuiet = test::runCommand(exe);
  EXPECT_EQ(exeQuiet.exit, 0) << exeQuiet.err;
  EXPECT_EQ(exeQuiet.err, "");
}

} // namespace
} // namespace vitc
