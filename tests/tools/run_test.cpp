// `vitc run` and `vitc init-weights` end to end: the three weight sources, and every bad file a
// user can hand it getting one line, a non-zero exit and no output file.
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "frontend/formats/npy.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

namespace fs = std::filesystem;
using test::runVitc;
using test::sourcePath;

std::string fixture(const std::string &name, const std::string &file = "") {
  return sourcePath("tests/fixtures/" + name + (file.empty() ? "" : "/" + file));
}

double maxDiff(const std::string &a, const std::string &b) {
  auto x = formats::readNpy(a), y = formats::readNpy(b);
  EXPECT_TRUE(x && y);
  if (!x || !y || x->shape() != y->shape())
    return 1e9;
  double d = 0;
  for (int64_t i = 0; i < x->numel(); ++i)
    d = std::max(d, static_cast<double>(std::abs(x->data()[i] - y->data()[i])));
  return d;
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(Run, HuggingFaceDirectoryRunsAsItIs) {
  std::string dir = test::makeTempDir("run-hf");
  auto r = runVitc({"run", fixture("tv_tok"), "--input", fixture("tv_tok", "input.npy"), "--output",
                    dir + "/out.npy", "--backend", "interpreter"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_LE(maxDiff(dir + "/out.npy", fixture("tv_tok", "logits.npy")), 1e-4);
  // Labels come from id2label: the top-5 of each image is printed.
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(image 0:(  \w+ 0\.\d{3}){5}\n)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(image 1:)"))) << r.out;
}

// --dtype bf16 on both backends: the logits stay within 2e-2 of the largest (the fixture's
// largest is 1.75), and the LLVM backend names the bf16 kernels it chose for this CPU.
TEST(Run, Bf16RunsOnBothBackendsAndNamesItsKernels) {
  std::string dir = test::makeTempDir("run-bf16");
  for (const char *backend : {"llvm", "interpreter"}) {
    auto r = runVitc({"run", fixture("tv_tok"), "--input", fixture("tv_tok", "input.npy"),
                      "--output", dir + "/out.npy", "--backend", backend, "--dtype", "bf16"});
    ASSERT_EQ(r.exit, 0) << r.err;
    EXPECT_LE(maxDiff(dir + "/out.npy", fixture("tv_tok", "logits.npy")), 2e-2 * 1.75) << backend;
    EXPECT_EQ(
        std::string(backend) == "llvm",
        std::regex_search(
            r.err,
            std::regex(
                R"(remark: llvm: bf16 matmuls use (AMX tdpbf16ps tiles|vdpbf16ps|f32 FMAs on bf16 values) .* on \S+\n)")))
        << r.err;
  }
}

TEST(Run, BigVisionNpzRuns) {
  std::string dir = test::makeTempDir("run-bv");
  for (const char *name : {"bv_tok", "bv_gap", "bv_map"}) {
    auto r = runVitc({"run", fixture(name, "model.vit"), "--weights", fixture(name, "model.npz"),
                      "--input", fixture(name, "input.npy"), "--output", dir + "/out.npy"});
    ASSERT_EQ(r.exit, 0) << name << ": " << r.err;
    EXPECT_LE(maxDiff(dir + "/out.npy", fixture(name, "logits.npy")), 1e-4) << name;
  }
  auto compressed = runVitc({"run", fixture("bv_gap", "model.vit"), "--weights",
                             fixture("bv_gap", "model_compressed.npz"), "--input",
                             fixture("bv_gap", "input.npy"), "--output", dir + "/c.npy"});
  ASSERT_EQ(compressed.exit, 0) << compressed.err;
  EXPECT_LE(maxDiff(dir + "/c.npy", fixture("bv_gap", "logits.npy")), 1e-4);
}

TEST(Run, RandomWeightsAreDeterministicAndMatchInitWeights) {
  std::string dir = test::makeTempDir("run-random");
  std::string model = sourcePath("examples/parallel-tiny.vit");
  std::string input = fixture("parallel_map", "input.npy");
  auto a = runVitc(
      {"run", model, "--weights", "random:0", "--input", input, "--output", dir + "/a.npy"});
  auto b = runVitc(
      {"run", model, "--weights", "random:0", "--input", input, "--output", dir + "/b.npy"});
  auto c = runVitc(
      {"run", model, "--weights", "random:1", "--input", input, "--output", dir + "/c.npy"});
  ASSERT_EQ(a.exit, 0) << a.err;
  ASSERT_EQ(b.exit, 0) << b.err;
  ASSERT_EQ(c.exit, 0) << c.err;
  EXPECT_EQ(test::slurp(dir + "/a.npy"), test::slurp(dir + "/b.npy"));
  EXPECT_GT(maxDiff(dir + "/a.npy", dir + "/c.npy"), 1e-3);
  auto init = runVitc({"init-weights", model, "-o", dir + "/w.safetensors", "--seed", "0"});
  ASSERT_EQ(init.exit, 0) << init.err;
  auto d = runVitc({"run", model, "--weights", dir + "/w.safetensors", "--input", input, "--output",
                    dir + "/d.npy"});
  ASSERT_EQ(d.exit, 0) << d.err;
  EXPECT_EQ(maxDiff(dir + "/a.npy", dir + "/d.npy"), 0.0);
}

// A safetensors file whose header says something else than the original.
std::string editHeader(const std::string &bytes,
                       const std::function<void(nlohmann::json &)> &edit) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  edit(header);
  std::string text = header.dump();
  while (text.size() % 8)
    text += ' ';
  uint64_t m = text.size();
  std::string out(reinterpret_cast<const char *>(&m), 8);
  return out + text + bytes.substr(8 + n);
}

struct BadRun {
  const char *name;
  std::function<void(const std::string &dir, std::vector<std::string> &args)> prepare;
  const char *error; // regex for the single line
};

class RunErrors : public ::testing::TestWithParam<BadRun> {};

TEST_P(RunErrors, OneLineNoOutputFile) {
  std::string dir = test::makeTempDir(std::string("run-err-") + GetParam().name);
  std::vector<std::string> args{"run",       fixture("tv_tok"),
                                "--weights", fixture("tv_tok", "model.safetensors"),
                                "--input",   fixture("tv_tok", "input.npy"),
                                "--output",  dir + "/out.npy"};
  GetParam().prepare(dir, args);
  auto r = runVitc(args);
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(GetParam().error))) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  for (const auto &e : fs::directory_iterator(dir)) {
    EXPECT_NE(e.path().filename(), "out.npy");
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
}

std::string original() { return test::slurp(fixture("tv_tok", "model.safetensors")); }

INSTANTIATE_TEST_SUITE_P(
    All, RunErrors,
    ::testing::Values(BadRun{"truncated",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               std::string bytes = original();
                               writeBytes(dir + "/w.safetensors",
                                          bytes.substr(0, bytes.size() / 2));
                               args[3] = dir + "/w.safetensors";
                             },
                             R"(w\.safetensors: error: .*(past the end|truncated|beyond))"},
                      BadRun{"header-longer-than-file",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               writeBytes(dir + "/w.safetensors",
                                          std::string("\xff\xff\xff\x00\x00\x00\x00\x00{}", 10));
                               args[3] = dir + "/w.safetensors";
                             },
                             R"(w\.safetensors: error: .*header)"},
                      BadRun{"lying-offsets",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               writeBytes(dir + "/w.safetensors",
                                          editHeader(original(), [](nlohmann::json &h) {
                                            h["classifier.bias"]["data_offsets"][1] = 1u << 30;
                                          }));
                               args[3] = dir + "/w.safetensors";
                             },
                             R"(w\.safetensors: error: tensor 'classifier\.bias')"},
                      BadRun{"lying-shape",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               writeBytes(dir + "/w.safetensors",
                                          editHeader(original(), [](nlohmann::json &h) {
                                            h["classifier.bias"]["shape"] = {11};
                                          }));
                               args[3] = dir + "/w.safetensors";
                             },
                             R"(w\.safetensors: error: tensor 'classifier\.bias')"},
                      BadRun{
                          "mismatched-model",
                          [](const std::string &, std::vector<std::string> &args) {
                            args[1] = fixture("parallel_map", "model.vit");
                            args[5] = fixture("parallel_map", "input.npy");
                          },
                          R"(model\.safetensors: error: tensor 'vit\.embeddings\.position_embeddings' has shape \[1, 17, 64\], the model needs \[1, 16, 64\])"},
                      BadRun{"wrong-shape-weights",
                             [](const std::string &, std::vector<std::string> &args) {
                               args[1] = fixture("bv_tok", "model.vit"); // same layout, other sizes
                               args[5] = fixture("bv_tok", "input.npy");
                             },
                             R"(model\.safetensors: error: tensor '.*' has shape \[.*\], the model needs \[)"},
                      BadRun{"npz-for-parallel-model",
                             [](const std::string &, std::vector<std::string> &args) {
                               args[1] = fixture("parallel_map", "model.vit");
                               args[3] = fixture("bv_map", "model.npz");
                               args[5] = fixture("parallel_map", "input.npy");
                             },
                             R"(model\.npz: error: big_vision ViT checkpoints have no tensor for)"},
                      BadRun{"npy-bad-magic",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               writeBytes(dir + "/x.npy", "not an npy file at all");
                               args[5] = dir + "/x.npy";
                             },
                             R"(x\.npy: error: )"},
                      BadRun{"npy-truncated",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               std::string bytes = test::slurp(fixture("tv_tok", "input.npy"));
                               writeBytes(dir + "/x.npy", bytes.substr(0, bytes.size() - 100));
                               args[5] = dir + "/x.npy";
                             },
                             R"(x\.npy: error: .*(truncated|missing|short))"},
                      BadRun{"npy-wrong-image-shape",
                             [](const std::string &, std::vector<std::string> &args) {
                               args[5] = fixture("tv_bf16",
                                                 "input.npy"); // 48x48 images for a 32x32 model
                             },
                             R"(input\.npy: error: input has shape \[2, 3, 48, 48\]; the model takes images \[B, 3, 32, 32\])"},
                      BadRun{"npy-bool",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               std::string header =
                                   "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }";
                               while ((10 + header.size() + 1) % 64)
                                 header += ' ';
                               header += '\n';
                               std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
                               bytes += static_cast<char>(header.size() & 0xff);
                               bytes += static_cast<char>(header.size() >> 8);
                               writeBytes(dir + "/x.npy",
                                          bytes + header + std::string("\x01\x00", 2));
                               args[5] = dir + "/x.npy";
                             },
                             R"(x\.npy: error: .*b1)"},
                      BadRun{"without-plan-memory",
                             [](const std::string &, std::vector<std::string> &args) {
                               args.insert(args.end(), {"--disable-pass", "plan-memory"});
                             },
                             R"(error: module @.* has no memory plan: the llvm backend needs the plan-memory pass)"},
                      BadRun{"missing-weights-file",
                             [](const std::string &dir, std::vector<std::string> &args) {
                               args[3] = dir + "/nope.safetensors";
                             },
                             R"(nope\.safetensors: error: cannot open file)"}),
    [](const auto &info) {
      std::string n = info.param.name;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(Run, OutputFolderThatDoesNotExistIsAnError) {
  auto r = runVitc({"run", fixture("tv_tok"), "--input", fixture("tv_tok", "input.npy"), "--output",
                    "/nonexistent/dir/out.npy"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("/nonexistent/dir/out.npy: error: cannot create output file"),
            std::string::npos)
      << r.err;
}

} // namespace
} // namespace vitc

namespace vitc {
namespace {

TEST(Run, ALayoutWithMicroBatchesRunsTheBatchInParts) {
  std::string dir = test::makeTempDir("run-micro");
  std::ofstream(dir + "/two.json") << R"({"mesh": {"data": 1, "model": 2}, "microbatches": 2})";
  std::ofstream(dir + "/three.json") << R"({"microbatches": 3})";
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  auto r = test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors",
                          "--input", fx + "/input.npy", "--output", dir + "/out.npy", "--layout",
                          dir + "/two.json"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_LE(maxDiff(dir + "/out.npy", fx + "/logits.npy"), 1e-4);
  auto bad = test::runVitc({"run", fx + "/model.vit", "--weights", fx + "/model.safetensors",
                            "--input", fx + "/input.npy", "--output", dir + "/bad.npy", "--layout",
                            dir + "/three.json"});
  EXPECT_EQ(bad.exit, 1);
  EXPECT_NE(bad.err.find("three.json: error: the layout runs 3 micro-batches, which do not divide "
                         "the batch (2)"),
            std::string::npos)
      << bad.err;
}

} // namespace
} // namespace vitc
