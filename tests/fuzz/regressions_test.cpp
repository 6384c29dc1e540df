// Fuzz regressions: every kept input runs clean through its harness, and so do a few large ones.
//
// tests/fuzz/regressions/<target>/ holds the inputs that once broke a parser (found by
// scripts/fuzz.sh, renamed to say what they do) and small hand-made hostile ones (written by
// make_regressions.py). The harness aborts on a broken promise and the sanitizer build catches
// memory errors, so passing means not crashing. Inputs too large to keep as files (nesting a
// hundred thousand levels deep) are built here.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "autotune/target.h"
#include "frontend/hf_config.h"
#include "frontend/spec.h"
#include "fuzz/harness.h"
#include "ir/text.h"
#include "ir/verifier.h"

namespace vitc::fuzz {
namespace {

using Harness = void (*)(const uint8_t *, size_t);

struct Target {
  const char *name; // folder under tests/fuzz/regressions/
  Harness run;
};

const Target kTargets[] = {
    {"spec", runSpec}, {"ir", runIr},   {"hf_config", runHfConfig}, {"safetensors", runSafetensors},
    {"npy", runNpy},   {"npz", runNpz}, {"layout", runLayout},      {"onnx", runOnnx},
};

void run(Harness harness, const std::string &input) {
  harness(reinterpret_cast<const uint8_t *>(input.data()), input.size());
}

class Regressions : public ::testing::TestWithParam<Target> {};

TEST_P(Regressions, KeptInputsRunClean) {
  std::filesystem::path dir =
      std::filesystem::path(VITC_TEST_DATA) / "fuzz" / "regressions" / GetParam().name;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  std::vector<std::filesystem::path> files;
  for (const auto &entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file())
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  EXPECT_FALSE(files.empty()) << "no inputs kept in " << dir;
  for (const auto &path : files) {
    SCOPED_TRACE(path.string());
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    run(GetParam().run, bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(Fuzz, Regressions, ::testing::ValuesIn(kTargets),
                         [](const auto &info) { return std::string(info.param.name); });

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i)
    out += s;
  return out;
}

constexpr size_t kDeep = 100'000;

TEST(DeepNesting, Spec) {
  run(runSpec, repeat("a.", kDeep) + "a = 1\n");
  run(runSpec, "[" + repeat("a.", kDeep) + "a]\n");
  run(runSpec, "x = " + repeat("[", kDeep) + "\n");
  run(runSpec, "x = " + repeat("{a = ", kDeep) + "\n");
}

TEST(DeepNesting, HfConfig) {
  run(runHfConfig, "{\"model_type\": " + repeat("[", kDeep) + repeat("]", kDeep) + "}");
  run(runHfConfig, "{\"hidden_act\": " + repeat("{\"a\":", kDeep) + "1" + repeat("}", kDeep) + "}");
  run(runHfConfig, "{\"image_size\": [" + repeat("[", kDeep) + repeat("]", kDeep) + ", 1]}");
  run(runHfConfig, repeat("[", kDeep));
}

std::string safetensors(const std::string &header) {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

TEST(DeepNesting, Safetensors) {
  std::string deep = repeat("[", kDeep) + repeat("]", kDeep);
  run(runSafetensors,
      safetensors("{\"t\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": " + deep + "}}"));
  run(runSafetensors, safetensors("{\"t\": {\"dtype\": \"F32\", \"shape\": [" + deep +
                                  "], \"data_offsets\": [0, 4]}}xxxx"));
  run(runSafetensors, safetensors("{\"__metadata__\": " + deep + "}"));
}

TEST(DeepNesting, Npy) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + repeat("(", kDeep) +
                     repeat(")", kDeep) + "}";
  std::string npy = "\x93NUMPY\x02";
  npy += '\0';
  for (int i = 0; i < 4; ++i)
    npy += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
  run(runNpy, npy + dict);
}

TEST(DeepNesting, Layout) {
  run(runLayout, "{\"mesh\": " + repeat("{\"a\":", kDeep) + "1" + repeat("}", kDeep) + "}");
  run(runLayout, "{\"links\": {\"*\": {\"gbps\": 1, \"latency_us\": " + repeat("[", kDeep) +
                     repeat("]", kDeep) +
                     "}}, \"peak_flops\": 1, \"memory_bandwidth\": 1, "
                     "\"memory_bytes\": 1}");
}

// IR text has no nesting; its long inputs are long lists.
TEST(LongInputs, Ir) {
  std::string dims = "1" + repeat(",1", kDeep);
  run(runIr, "module @m {\n  %x = input {name = \"x\"} : f32[" + dims + "]\n  output %x\n}\n");
  std::string ops = "module @m {\n  %x0 = input {name = \"x\"} : f32[2]\n";
  for (int i = 1; i < 20000; ++i)
    ops += "  %x" + std::to_string(i) + " = add %x" + std::to_string(i - 1) + ", %x" +
           std::to_string(i - 1) + " : f32[2]\n";
  run(runIr, ops + "  output %x19999\n}\n");
}

// What some of the fixes promise, beyond not crashing.
TEST(Fixes, SpecKeepsNonAsciiInStringsAndWritesLabelsBack) {
  auto c = frontend::parseSpec(
      "# caf\u00e9\n[encoder]\nwidth = 8\ndepth = 1\nheads = 1\n[head]\n"
      "classes = 3\nlabels = [\"caf\u00e9\", \"a \\\"b\\\"\", \"c\\\\d\\ne\"]\n",
      "t.vit");
  ASSERT_TRUE(c) << c.error().str();
  auto again = frontend::parseSpec(frontend::writeSpec(*c), "again.vit");
  ASSERT_TRUE(again) << again.error().str();
  EXPECT_EQ(again->labels, (std::vector<std::string>{"caf\u00e9", "a \"b\"", "c\\d\ne"}));
  auto outside = frontend::parseSpec("\u00e9 = 1\n", "t.vit");
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().str(), "t.vit:1: error: non-ASCII character outside a string");
}

// toml++ reads a bare value on to where it ends, quotes included, and asks of each character
// whether it is white space: undefined behaviour for some non-ASCII ones.
TEST(Fixes, SpecRefusesNonAsciiWhereABareValueIsRead) {
  for (const char *text : {"a = 19e['\u01e2']\n", "a = [1, 2\"\u01e2\"]\n",
                           "a = 1979-05-27 \"\u01e2\"\n", "n = [ 1979-05-27 0#\u01e2\n"}) {
    auto c = frontend::parseSpec(text, "t.vit");
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().str(), "t.vit:1: error: non-ASCII character in a value") << text;
  }
  // A value that ends before the string is not read into it.
  auto c = frontend::parseSpec("name = \"\u01e2\"\n[encoder]\nwidth = 8\ndepth = 1\nheads = 1 "
                               "# \u01e2\n[head]\nclasses = 1\nlabels = [\"\u01e2\"]\n",
                               "t.vit");
  ASSERT_TRUE(c) << c.error().str();
}

TEST(Fixes, ErrorsQuotingLineBreaksStayOnOneLine) {
  auto c = frontend::parseSpec("\"a\\nb\" = 1\n", "t.vit");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str().find('\n'), std::string::npos) << c.error().str();
  EXPECT_NE(c.error().str().find("unknown key 'a\\nb'"), std::string::npos) << c.error().str();
}

TEST(Fixes, IrTypesWhoseByteSizeOverflowsAreRefused) {
  auto m =
      ir::parseModule("module @m {\n  %x = input {name = \"x\"} : bf16[4611686018427387904,2]\n"
                      "  output %x\n}\n",
                      "m.ir");
  ASSERT_TRUE(m) << m.error().str();
  Diagnostics d = ir::verify(**m);
  EXPECT_NE(d.str().find("its byte size does not fit in 64 bits"), std::string::npos) << d.str();
}

TEST(Fixes, JsonNumbersBeyondDoubleAreErrors) {
  auto hf = frontend::parseHfConfig(R"({"layer_norm_eps": 1e400})", "c/config.json");
  ASSERT_FALSE(hf);
  EXPECT_EQ(hf.error().str(),
            "c/config.json: error: malformed JSON: number overflow parsing '1e400'");
  auto t = autotune::parseTarget(
      R"({"peak_flops": 1, "memory_bandwidth": 1, "memory_bytes": 1e30})", "t.json");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().str(),
            "t.json: error: 'memory_bytes' and 'cores_per_host' must be below 2^63");
}

} // namespace
} // namespace vitc::fuzz
