// The vitc command line: stats against the published sizes, IR round trips, pass flags, errors.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <unistd.h>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

using test::fileExists;
using test::runVitc;
using test::sourcePath;

const char *kExamples[] = {"vit-ti16", "vit-s16", "vit-b16", "vit-l16",      "vit-g14",
                           "vit-G14",  "vit-e14", "vit22b",  "parallel-tiny"};

double field(const std::string &text, const std::string &pattern) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(text, m, std::regex(pattern))) << pattern << "\n" << text;
  return m.empty() ? 0.0 : std::stod(m[1]);
}

// A published figure is rounded to the precision it is printed with; a computed value agrees if
// it is within `tolerance` of it or rounds to it.
bool agrees(double computed, double published, int decimals, double tolerance) {
  double scale = std::pow(10.0, decimals);
  return std::abs(computed - published) <= tolerance * published ||
         std::round(computed * scale) / scale == published;
}

struct Published {
  const char *model;
  double paramsM; // without head, millions
  int paramDecimals;
  double gflops; // at 224 px, per image
};

// ViT-G paper ("Scaling Vision Transformers", Zhai et al. 2021), Table 2.
const Published kTable2[] = {{"vit-ti16", 5.5, 1, 2.5},   {"vit-s16", 22, 0, 9.2},
                             {"vit-b16", 86, 0, 35.1},    {"vit-l16", 303, 0, 122.9},
                             {"vit-g14", 1011, 0, 533.1}, {"vit-G14", 1843, 0, 965.3}};

TEST(Stats, AgreesWithThePublishedSizes) {
  for (const Published &p : kTable2) {
    auto r = runVitc({"stats", sourcePath("examples/" + std::string(p.model) + ".vit")});
    ASSERT_EQ(r.exit, 0) << r.err;
    double params = field(r.out, R"(([0-9.]+) M without head)");
    double gflops = field(r.out, R"(GFLOPs\s+([0-9.]+) per image)");
    EXPECT_TRUE(agrees(params, p.paramsM, p.paramDecimals, 0.015))
        << p.model << ": " << params << "M vs " << p.paramsM;
    EXPECT_NEAR(gflops, p.gflops, 0.015 * p.gflops) << p.model;
  }
}

TEST(Stats, Vit22bHas21743MParameters) {
  auto r = runVitc({"stats", sourcePath("examples/vit22b")}); // ".vit" is optional
  ASSERT_EQ(r.exit, 0) << r.err;
  double params = field(r.out, R"(([0-9.]+) M without head)");
  EXPECT_NEAR(params, 21743, 0.005 * 21743);
  EXPECT_NE(r.out.find("tokens         256 per image"), std::string::npos) << r.out;
}

// bf16 matmul inputs: the weights the matmuls read are held in bf16 (half the bytes; LayerNorm
// and bias vectors stay f32), the FLOPs do not change.
TEST(Stats, Bf16HalvesTheMatmulWeights) {
  auto f32 = runVitc({"stats", sourcePath("examples/vit-b16.vit")});
  auto bf16 = runVitc({"stats", sourcePath("examples/vit-b16.vit"), "--dtype", "bf16"});
  ASSERT_EQ(bf16.exit, 0) << bf16.err;
  EXPECT_NE(bf16.out.find("dtype          bf16 matmul inputs, f32 accumulation"), std::string::npos)
      << bf16.out;
  double w32 = field(f32.out, R"(memory/device\s+([0-9.]+) MiB weights)");
  double w16 = field(bf16.out, R"(memory/device\s+([0-9.]+) MiB weights)");
  EXPECT_NEAR(w16 / w32, 0.5, 0.01) << f32.out << bf16.out;
  EXPECT_EQ(field(f32.out, R"(GFLOPs\s+([0-9.]+) per image)"),
            field(bf16.out, R"(GFLOPs\s+([0-9.]+) per image)"));
}

TEST(Stats, BatchScalesFlopsNotPerImageFlops) {
  auto one = runVitc({"stats", sourcePath("examples/vit-b16.vit")});
  auto eight = runVitc({"stats", sourcePath("examples/vit-b16.vit"), "--batch", "8"});
  ASSERT_EQ(eight.exit, 0) << eight.err;
  EXPECT_EQ(field(one.out, R"(GFLOPs\s+([0-9.]+) per image)"),
            field(eight.out, R"(GFLOPs\s+([0-9.]+) per image)"));
  EXPECT_NEAR(field(eight.out, R"(([0-9.]+) for the batch)"),
              8 * field(one.out, R"(([0-9.]+) for the batch)"), 0.05);
}

TEST(Compile, EveryExampleRoundTripsThroughIrText) {
  std::string dir = test::makeTempDir("roundtrip");
  for (const char *name : kExamples) {
    std::string a = dir + "/" + name + ".ir";
    auto first = runVitc(
        {"compile", sourcePath("examples/" + std::string(name) + ".vit"), "--emit=ir", "-o", a});
    ASSERT_EQ(first.exit, 0) << name << ": " << first.err;
    auto second = runVitc({"compile", a, "--emit=ir"});
    ASSERT_EQ(second.exit, 0) << name << ": " << second.err;
    EXPECT_EQ(second.out, test::slurp(a)) << name;
  }
}

TEST(Compile, EmitSignatureShowsWhatTheProgramTakesAndReturnsWithItsBlocks) {
  // ViT-22B on a 2x4 mesh: shapes alone, no weights. The images and logits are cut over the data
  // axis, the first layer's query projection over the model axis by output features.
  auto r = runVitc({"compile", sourcePath("examples/vit22b.vit"), "--mesh", "data=2,model=4",
                    "--batch", "8", "--emit=signature"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "mesh    data=2, model=4");
  std::smatch m;
  EXPECT_TRUE(
      std::regex_search(r.out, m, std::regex(R"(\ninput +pixels +f32\[8@data,3,224,224\]\n)")))
      << r.out.substr(r.out.size() - 300);
  EXPECT_TRUE(std::regex_search(r.out, m, std::regex(R"(\noutput +logits +f32\[8@data,1000\]\n$)")))
      << r.out.substr(r.out.size() - 300);
  EXPECT_TRUE(std::regex_search(
      r.out, m,
      std::regex(
          R"(\nparam +vit\.encoder\.layer\.0\.attention\.attention\.query\.weight +f32\[6144@model,6144\]\n)")))
      << r.out.substr(0, 2000);
  // One line per parameter: 48 layers of more than five each.
  size_t params = 0;
  for (size_t at = r.out.find("\nparam "); at != std::string::npos;
       at = r.out.find("\nparam ", at + 1))
    ++params;
  EXPECT_GT(params, 48u * 5);
}

TEST(Compile, PrintAfterAllShowsEveryPassUnderABanner) {
  auto r = runVitc({"compile", sourcePath("examples/parallel-tiny.vit"), "--print-after-all", "-o",
                    "/dev/null"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_NE(
      r.err.find("// -----// IR Dump After canonicalize (2) //----- //\nmodule @parallel-tiny"),
      std::string::npos)
      << r.err;
  // The output went to the device itself, not to a file renamed over it.
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
}

TEST(Compile, DumpDirWritesNumberedFiles) {
  std::string dir = test::makeTempDir("dump");
  auto r = runVitc({"compile", sourcePath("examples/vit-ti16.vit"), "--dump-dir", dir, "-o",
                    "/dev/null", "--time-passes"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_TRUE(fileExists(dir + "/00-input.ir"));
  EXPECT_TRUE(fileExists(dir + "/02-canonicalize.ir"));
  EXPECT_NE(r.err.find("vitc pass execution timing"), std::string::npos);
}

TEST(Compile, EmitsGraphviz) {
  auto r = runVitc({"compile", sourcePath("examples/parallel-tiny.vit"), "--emit=dot"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out.rfind("digraph \"parallel-tiny\" {", 0), 0u);
  EXPECT_NE(r.out.find("->"), std::string::npos);
}

struct BadInput {
  const char *name;
  const char *file;              // written to a temp dir under this name (empty: none)
  const char *contents;          //
  std::vector<std::string> args; // {} replaced by the file's path
  const char *error;             // a regex the single error line must match
};

class CliErrors : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliErrors, OneLineNonZeroExitNoOutputFile) {
  const BadInput &b = GetParam();
  std::string dir = test::makeTempDir(std::string("err-") + b.name);
  std::string path = dir + "/" + b.file;
  if (*b.contents) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    FILE *f = std::fopen(path.c_str(), "w");
    std::fputs(b.contents, f);
    std::fclose(f);
  }
  std::vector<std::string> args;
  for (const std::string &a : b.args)
    args.push_back(a == "{}" ? path : a == "{out}" ? dir + "/out.ir" : a);
  auto r = runVitc(args);
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(b.error))) << r.err;
  EXPECT_EQ(r.err.find("\\n"), std::string::npos) << "an escaped line break: " << r.err;
  EXPECT_FALSE(fileExists(dir + "/out.ir"));
  for (const auto &entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

const char *kGoodBody = "[image]\nsize = 224\npatch = 16\n[encoder]\nwidth = 768\ndepth = 2\n";

INSTANTIATE_TEST_SUITE_P(
    All, CliErrors,
    testing::Values(
        BadInput{"unknown-key",
                 "m.vit",
                 "[encoder]\nwidth = 64\ndepth = 1\nheads = 2\ncolour = 1\n",
                 {"compile", "{}", "-o", "{out}"},
                 R"(^.*/m\.vit:5:1: error: unknown key 'colour' in \[encoder\])"},
        BadInput{"bad-value",
                 "m.vit",
                 "[encoder]\nwidth = 64\ndepth = 1\nheads = 2\nblock = \"x\"\n",
                 {"stats", "{}"},
                 R"(m\.vit:5:9: error: bad value "x" for 'block')"},
        BadInput{"heads",
                 "m.vit",
                 "[encoder]\nwidth = 6100\ndepth = 48\nheads = 48\n",
                 {"compile", "{}", "-o", "{out}"},
                 R"(m\.vit:4:9: error: heads \(48\) must divide width \(6100\))"},
        BadInput{"patch",
                 "m.vit",
                 "[image]\nsize = 225\npatch = 16\n[encoder]\nwidth = 64\ndepth = 1\nheads = 2\n",
                 {"stats", "{}"},
                 R"(m\.vit:3:9: error: patch \(16\) must divide the image size)"},
        BadInput{"missing",
                 "",
                 "",
                 {"stats", "/nonexistent/model.vit"},
                 R"(^/nonexistent/model\.vit: error: no such model file or directory\n)"},
        BadInput{"json",
                 "hf/config.json",
                 "{\"hidden_size\": 64,,}",
                 {"compile", "{}", "-o", "{out}"},
                 R"(config\.json:1:20: error: malformed JSON: )"},
        BadInput{"hfdir",
                 "hf/config.json",
                 "{\"num_attention_heads\": 5}",
                 {"stats", "{}"},
                 R"(config\.json:1:25: error: heads \(5\) must divide width)"},
        BadInput{"ir",
                 "m.ir",
                 "module @m {\n  %x = input {name = \"x\"} : f32[2]\n  %y = gelu %z : f32[2]\n}\n",
                 {"compile", "{}", "-o", "{out}"},
                 R"(m\.ir:3:13: error: use of undefined value '%z')"},
        BadInput{
            "ir-several-problems",
            "m.ir",
            "module @m {\n  %x = input {name = \"x\"} : f32[2]\n  %y = gelu %x : "
            "f32[3]\n  %z = gelu %x : f32[4]\n}\n",
            {"compile", "{}", "-o", "{out}"},
            R"(m\.ir:3:3: error: '%y' \(gelu\): result type is f32\[3\].*; .*m\.ir:4:3: error: '%z')"}),
    [](const auto &info) {
      std::string n = info.param.name;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(Cli, UsageErrorsExitWithTwo) {
  auto r = runVitc({"frobnicate"});
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos);
  auto flag = runVitc({"stats", sourcePath("examples/vit-b16.vit"), "--no-such-flag"});
  EXPECT_EQ(flag.exit, 2);
  auto help = runVitc({"--help"});
  EXPECT_EQ(help.exit, 0);
  EXPECT_NE(help.out.find("compile"), std::string::npos);
}

} // namespace
} // namespace vitc

namespace vitc {
namespace {

TEST(CompileLlvm, EmitsIrAssemblyObjectAndAStandaloneExecutable) {
  std::string dir = test::makeTempDir("emit");
  std::string model = test::sourcePath("examples/parallel-tiny.vit");
  auto ll = test::runVitc({"compile", model, "--emit=llvm"});
  ASSERT_EQ(ll.exit, 0) << ll.err;
  EXPECT_NE(ll.out.find("define "), std::string::npos);
  auto obj = test::runVitc({"compile", model, "--emit=obj", "-o", dir + "/m.o"});
  ASSERT_EQ(obj.exit, 0) << obj.err;
  EXPECT_EQ(test::slurp(dir + "/m.o").substr(0, 4), "\x7f"
                                                    "ELF");
  EXPECT_NE(obj.err.find("remark: llvm:"), std::string::npos) << obj.err;
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  auto exe = test::runVitc(
      {"compile", fx + "/model.vit", "--batch", "2", "--emit=exe", "-o", dir + "/prog"});
  ASSERT_EQ(exe.exit, 0) << exe.err;
  auto run = test::runCommand({dir + "/prog", "--weights", fx + "/model.safetensors", "--input",
                               fx + "/input.npy", "--output", dir + "/out.npy"});
  ASSERT_EQ(run.exit, 0) << run.err;
  auto got = formats::readNpy(dir + "/out.npy");
  auto want = formats::readNpy(fx + "/logits.npy");
  ASSERT_TRUE(got && want);
  EXPECT_LE(test::maxAbsDiff(*got, *want), 1e-4);
}

TEST(CompileLlvm, ObjectAndExecutableNeedAnOutputFile) {
  auto r = test::runVitc({"compile", test::sourcePath("examples/parallel-tiny.vit"), "--emit=exe"});
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.err.find("--emit=exe needs -o FILE"), std::string::npos) << r.err;
  auto mesh = test::runVitc({"compile", test::sourcePath("examples/parallel-tiny.vit"), "--mesh",
                             "data=1,model=2", "--emit=exe", "-o", "/tmp/never-written"});
  EXPECT_EQ(mesh.exit, 1);
  EXPECT_FALSE(test::fileExists("/tmp/never-written"));
}

} // namespace
} // namespace vitc

namespace vitc {
namespace {

namespace fs = std::filesystem;

std::string parallelMap(const std::string &file) {
  return test::sourcePath("tests/fixtures/parallel_map/" + file);
}

// Whether `text` holds a control character other than the line breaks ending its lines.
bool hasControlCharacter(const std::string &text) {
  return std::any_of(text.begin(), text.end(), [](char ch) {
    unsigned char c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f;
  });
}

struct BadCommandLine {
  const char *name;
  std::vector<std::string> args; // {dir} is replaced by a fresh folder, {spec} by a spec in it
  const char *error;             // a regex the single error line must match
};

class CommandLineErrors : public ::testing::TestWithParam<BadCommandLine> {};

// A bad value on the command line is a usage error (exit 2) of one line, found before any file is
// written or any work done.
TEST_P(CommandLineErrors, ExitTwoWithOneLine) {
  const BadCommandLine &b = GetParam();
  std::string dir = test::makeTempDir(std::string("usage-") + b.name);
  std::ofstream(dir + "/m.vit") << kGoodBody;
  fs::copy_file(parallelMap("input.npy"), dir + "/x.npy");
  fs::copy_file(parallelMap("model.safetensors"), dir + "/w.safetensors");
  std::vector<std::string> args;
  for (std::string a : b.args) {
    for (const auto &[from, to] :
         {std::pair<std::string, std::string>{"{dir}", dir}, {"{spec}", dir + "/m.vit"}})
      if (size_t at = a.find(from); at != std::string::npos)
        a.replace(at, from.size(), to);
    args.push_back(a);
  }
  auto r = runVitc(args);
  EXPECT_EQ(r.exit, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(hasControlCharacter(r.err)) << r.err;
  // An escaped line break is the user's own (escaped); vitc's messages never hold one.
  if (std::none_of(args.begin(), args.end(),
                   [](const std::string &a) { return a.find('\n') != std::string::npos; })) {
    EXPECT_EQ(r.err.find("\\n"), std::string::npos) << r.err;
  }
  EXPECT_TRUE(std::regex_search(r.err, std::regex(b.error))) << r.err;
  EXPECT_EQ(r.err.find("remark:"), std::string::npos) << r.err;
  EXPECT_FALSE(fileExists(dir + "/out")) << "an output was written";
}

// `vitc run` of the parallel_map fixture, writing {dir}/out, with `extra` flags or replacements
// of --input, --weights and --output.
std::vector<std::string> runArgs(std::vector<std::string> extra) {
  std::vector<std::string> args{"run", parallelMap("model.vit")};
  if (std::find(extra.begin(), extra.end(), "--input") == extra.end())
    extra.insert(extra.end(), {"--input", parallelMap("input.npy")});
  if (std::find(extra.begin(), extra.end(), "--weights") == extra.end())
    extra.insert(extra.end(), {"--weights", parallelMap("model.safetensors")});
  if (std::find(extra.begin(), extra.end(), "--output") == extra.end())
    extra.insert(extra.end(), {"--output", "{dir}/out"});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> compileArgs(std::vector<std::string> extra) {
  std::vector<std::string> args{"compile", "{spec}", "-o", "{dir}/out"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

INSTANTIATE_TEST_SUITE_P(
    All, CommandLineErrors,
    testing::Values(
        BadCommandLine{"batch-zero",
                       {"stats", "{spec}", "--batch", "0"},
                       R"(^--batch: error: the batch must be between 1 and 1048576, got 0\n$)"},
        BadCommandLine{"compile-batch-zero", compileArgs({"--batch", "0"}), R"(^--batch: error:)"},
        BadCommandLine{"mesh-zero",
                       {"stats", "{spec}", "--mesh", "data=0"},
                       R"(^--mesh: error: bad mesh 'data=0': axis 'data' needs a positive size)"},
        BadCommandLine{"mesh-syntax", compileArgs({"--mesh", "data=2,model"}),
                       R"(^--mesh: error: bad mesh 'data=2,model': expected '=' after axis)"},
        BadCommandLine{"run-mesh-zero", runArgs({"--mesh", "model=0"}), R"(^--mesh: error:)"},
        BadCommandLine{"link", runArgs({"--link", "abc"}),
                       R"(^--link: error: link spec 'abc': 'abc' is not a bandwidth)"},
        BadCommandLine{"autotune-link",
                       {"autotune", "{spec}", "--devices", "2", "--link", "abc"},
                       R"(^--link: error: link spec 'abc')"},
        BadCommandLine{
            "passes", compileArgs({"--passes=nosuchpass"}),
            R"(^--passes: error: unknown pass 'nosuchpass' \(known passes: accumulate-microbatches, autodiff.*\)\n$)"},
        BadCommandLine{"run-passes", runArgs({"--passes=nosuchpass"}),
                       R"(^--passes: error: unknown pass 'nosuchpass')"},
        BadCommandLine{"print-after", compileArgs({"--print-after=nope"}),
                       R"(^--print-after: error: unknown pass 'nope')"},
        BadCommandLine{"seed", runArgs({"--weights", "random:abc"}),
                       R"(^--weights: error: bad seed 'abc' in 'random:abc')"},
        BadCommandLine{"cpu", compileArgs({"--emit=obj", "--cpu", "pentium9000"}),
                       R"(^--cpu: error: unknown cpu 'pentium9000')"},
        BadCommandLine{"threads", runArgs({"--threads", "10000"}),
                       R"(^vitc: error: --threads must be at most 1024, got 10000\n$)"},
        BadCommandLine{"timeout-zero", runArgs({"--collective-timeout", "0"}),
                       R"(^vitc: error: --collective-timeout must be more than 0)"},
        BadCommandLine{"timeout-nan", runArgs({"--collective-timeout", "nan"}),
                       R"(^vitc: error: --collective-timeout must be more than 0)"},
        BadCommandLine{
            "stop-after", compileArgs({"--stop-after-pass-num=-1"}),
            R"(^--stop-after-pass-num: error: expected a number of passes >= 0, got -1)"},
        BadCommandLine{"pass-option-no-value", compileArgs({"--pass-option", "foo"}),
                       R"(^--pass-option: error: expected KEY=VALUE, got 'foo')"},
        BadCommandLine{
            "pass-option-not-a-number", compileArgs({"--pass-option", "layout.microbatches=abc"}),
            R"(^--pass-option: error: pass option layout.microbatches='abc': expected an integer)"},
        BadCommandLine{
            "pass-option-out-of-range", compileArgs({"--pass-option", "layout.microbatches=0"}),
            R"(^--pass-option: error: pass option layout.microbatches=0 is out of range: expected 1 to)"},
        BadCommandLine{
            "pass-option-huge",
            runArgs({"--pass-option", "layout.params-over-data-min-bytes=99999999999999999999"}),
            R"(^--pass-option: error: .* is out of range)"},
        BadCommandLine{
            "pass-option-enum", compileArgs({"--pass-option", "layout.activations=columns"}),
            R"(^--pass-option: error: pass option layout.activations='columns': expected one of: tokens replicated)"},
        BadCommandLine{"pass-option-bool",
                       compileArgs({"--pass-option", "layout.collective-matmul=yes"}),
                       R"(^--pass-option: error: .*expected true or false)"},
        BadCommandLine{
            "pass-option-key", compileArgs({"--pass-option", "layout.colour=red"}),
            R"(^--pass-option: error: unknown pass option 'layout.colour' \(known: dtype, layout.activations,)"},
        BadCommandLine{"dtype-compile", compileArgs({"--dtype", "f16"}),
                       R"(^--dtype: error: expected f32 or bf16, got 'f16'\n$)"},
        BadCommandLine{"dtype-run", runArgs({"--dtype", "bfloat16"}),
                       R"(^--dtype: error: expected f32 or bf16, got 'bfloat16'\n$)"},
        BadCommandLine{"dtype-stats",
                       {"stats", "{spec}", "--dtype", "fp8"},
                       R"(^--dtype: error: expected f32 or bf16, got 'fp8'\n$)"},
        BadCommandLine{"remarks", compileArgs({"--remarks=nosuchpass"}),
                       R"(^--remarks: error: unknown pass 'nosuchpass')"},
        BadCommandLine{"run-batch-mismatch", runArgs({"--batch", "4"}),
                       R"(^--batch: error: 4 images per batch, but .*input\.npy holds 2\n$)"},
        BadCommandLine{"control-characters",
                       {"stats", "{spec}", "--mesh", "da\nta=2\x1b[31m"},
                       R"(^--mesh: error: bad mesh 'da\\nta=2\\x1b\[31m')"},
        BadCommandLine{"unknown-command", {"fro\nb"}, R"(^vitc: error: unknown command 'fro\\nb')"},
        BadCommandLine{"unknown-flag",
                       {"stats", "{spec}", "--no-such-flag"},
                       R"(^vitc: error: unrecognised option '--no-such-flag')"},
        // Copies of the fixture's files: a vitc without the check would overwrite them.
        BadCommandLine{"output-is-input",
                       runArgs({"--input", "{dir}/x.npy", "--output", "{dir}/./x.npy"}),
                       R"(^--output: error: '.*/\./x\.npy' is the same file as --input)"},
        BadCommandLine{
            "output-is-weights",
            runArgs({"--weights", "{dir}/w.safetensors", "--output", "{dir}//w.safetensors"}),
            R"(^--output: error: .* is the same file as --weights)"},
        BadCommandLine{"compile-output-is-model",
                       {"compile", "{spec}", "-o", "{dir}/./m.vit"},
                       R"(^-o: error: .* is the same file as the model)"}),
    [](const auto &info) {
      std::string n = info.param.name;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

// Links and other spellings of an input are the input: they are refused, and the input is kept.
TEST(Cli, AnOutputThatIsAnInputUnderAnotherNameIsRefused) {
  std::string dir = test::makeTempDir("output-is-input");
  fs::copy_file(parallelMap("input.npy"), dir + "/x.npy");
  fs::create_symlink(dir + "/x.npy", dir + "/symlink.npy");
  fs::create_hard_link(dir + "/x.npy", dir + "/hardlink.npy");
  std::string before = test::slurp(dir + "/x.npy");
  for (const std::string &output : {dir + "/symlink.npy", dir + "/hardlink.npy", dir + "/./x.npy",
                                    dir + "/../" + fs::path(dir).filename().string() + "/x.npy"}) {
    auto r = runVitc({"run", parallelMap("model.vit"), "--weights", "random", "--input",
                      dir + "/x.npy", "--output", output});
    EXPECT_EQ(r.exit, 2) << output << ": " << r.err;
    EXPECT_NE(r.err.find("is the same file as --input"), std::string::npos) << r.err;
    EXPECT_EQ(test::slurp(dir + "/x.npy"), before) << output;
  }
  std::ofstream(dir + "/m.vit") << kGoodBody;
  fs::create_symlink(dir + "/m.vit", dir + "/m-link.vit");
  for (const std::vector<std::string> &args :
       {std::vector<std::string>{"init-weights", dir + "/m.vit", "-o", dir + "/m-link.vit"},
        std::vector<std::string>{"compile", dir + "/m", "-o", dir + "/m-link.vit"},
        std::vector<std::string>{"autotune", dir + "/m.vit", "--devices", "1", "--target", "tpuv4",
                                 "-o", dir + "/m-link.vit"}}) {
    auto r = runVitc(args);
    EXPECT_EQ(r.exit, 2) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("-o: error: "), std::string::npos) << r.err;
    EXPECT_EQ(test::slurp(dir + "/m.vit"), kGoodBody) << args[0];
  }
}

// Runs every command that writes an output with `out` as the output, and expects each to refuse
// it in one line before it does any work.
void expectRefusedFirst(const std::string &dir, const std::string &out) {
  std::vector<std::vector<std::string>> commands{
      {"compile", test::sourcePath("examples/vit22b.vit"), "--mesh", "data=2,model=4", "--batch",
       "2", "-o", out},
      {"run", parallelMap("model.vit"), "--weights", parallelMap("model.safetensors"), "--input",
       parallelMap("input.npy"), "--output", out},
      {"run", parallelMap("model.vit"), "--weights", parallelMap("model.safetensors"), "--input",
       parallelMap("input.npy"), "--output", dir + "/ok.npy", "--trace", out},
      {"init-weights", test::sourcePath("examples/vit22b.vit"), "-o", out},
      {"autotune", test::sourcePath("examples/vit-b16.vit"), "--devices", "2", "--target", "tpuv4",
       "-o", out}};
  for (const auto &args : commands) {
    auto r = runVitc(args);
    EXPECT_EQ(r.exit, 1) << args[0] << " " << out << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind(out + ": error: cannot create output file", 0), 0u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_FALSE(fileExists(dir + "/ok.npy"));
}

// An output that cannot be written is refused before the work that would produce it: no remarks
// of a compile, no JIT, no autotune table, no memory check of a model too big for the machine.
TEST(Cli, AnOutputThatCannotBeWrittenIsRefusedFirst) {
  std::string dir = test::makeTempDir("unwritable");
  fs::create_directories(dir + "/folder");
  expectRefusedFirst(dir, dir + "/missing/out");
  expectRefusedFirst(dir, dir + "/folder");
}

TEST(Cli, AnOutputInAReadOnlyFolderIsRefusedFirst) {
  if (geteuid() == 0)
    GTEST_SKIP() << "root may write into a read-only folder";
  std::string dir = test::makeTempDir("read-only");
  fs::create_directories(dir + "/read-only");
  fs::permissions(dir + "/read-only", fs::perms::owner_read | fs::perms::owner_exec);
  expectRefusedFirst(dir, dir + "/read-only/out");
  fs::permissions(dir + "/read-only", fs::perms::owner_all);
}

// Errors about the mesh name where the mesh came from: a layout file or an IR header.
TEST(Cli, MeshErrorsNameWhereTheMeshCameFrom) {
  std::string dir = test::makeTempDir("mesh-source");
  std::string model = test::sourcePath("examples/parallel-tiny.vit");
  std::ofstream(dir + "/layout.json") << R"({"mesh": {"data": 2}})";
  auto layout = runVitc({"compile", model, "--layout", dir + "/layout.json", "-o", "/dev/null"});
  EXPECT_EQ(layout.exit, 1);
  EXPECT_EQ(layout.err.rfind(dir + "/layout.json: error: the data axis 'data' (2 devices) does "
                                   "not divide the batch (1)\n",
                             0),
            0u)
      << layout.err;
  auto ir = runVitc(
      {"compile", model, "--mesh", "data=2", "--stop-after-pass-num=0", "-o", dir + "/m.ir"});
  ASSERT_EQ(ir.exit, 0) << ir.err;
  auto fromHeader = runVitc({"compile", dir + "/m.ir", "-o", "/dev/null"});
  EXPECT_EQ(fromHeader.exit, 1);
  EXPECT_EQ(fromHeader.err.rfind(dir + "/m.ir: error: the data axis 'data' (2 devices) does not "
                                       "divide the batch (1)\n",
                                 0),
            0u)
      << fromHeader.err;
  auto given = runVitc({"compile", model, "--mesh", "data=2", "-o", "/dev/null"});
  EXPECT_EQ(given.err.rfind("--mesh: error: the data axis", 0), 0u) << given.err;
}

// A --pass-option beats the layout file's setting of the same key.
TEST(Cli, APassOptionOverridesTheLayoutFile) {
  std::string dir = test::makeTempDir("pass-option-order");
  std::ofstream(dir + "/layout.json")
      << R"({"mesh": {"data": 1, "model": 2}, "collective_matmul": false})";
  std::string model = test::sourcePath("examples/parallel-tiny.vit");
  auto off = runVitc({"compile", model, "--layout", dir + "/layout.json", "-o", "/dev/null"});
  ASSERT_EQ(off.exit, 0) << off.err;
  EXPECT_NE(off.err.find("collective-matmul: off in the layout"), std::string::npos) << off.err;
  auto on = runVitc({"compile", model, "--layout", dir + "/layout.json", "--pass-option",
                     "layout.collective-matmul=true", "-o", "/dev/null"});
  ASSERT_EQ(on.exit, 0) << on.err;
  EXPECT_EQ(on.err.find("collective-matmul: off in the layout"), std::string::npos) << on.err;
}

// A layout file's value is checked as its --pass-option is: an unknown word is an error, one
// line naming the key, never the default.
TEST(Cli, ALayoutFileValueIsCheckedAsItsPassOption) {
  std::string dir = test::makeTempDir("layout-values");
  std::string model = test::sourcePath("examples/parallel-tiny.vit");
  struct Bad {
    const char *json, *message;
  };
  const Bad bad[] = {
      {R"({"activations": "columns"})", "'activations' must be one of: tokens replicated"},
      {R"({"microbatches": "abc"})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"microbatches": 0})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"model_axis": "a,b"})", "'model_axis' must be a mesh axis name"},
  };
  for (const Bad &b : bad) {
    std::ofstream(dir + "/layout.json") << b.json;
    const std::vector<std::string> commands[] = {
        {"compile", model, "--layout", dir + "/layout.json", "-o", "/dev/null"},
        {"stats", model, "--layout", dir + "/layout.json"}};
    for (const std::vector<std::string> &args : commands) {
      auto r = runVitc(args);
      EXPECT_EQ(r.exit, 1) << args[0] << " " << b.json;
      EXPECT_EQ(r.err, dir + "/layout.json: error: " + b.message + "\n") << args[0];
    }
  }
}

int remarkLines(const std::string &text, const std::string &pass = "") {
  int n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    n += line.rfind("remark: " + pass, 0) == 0;
  return n;
}

// Compiling a deep parallel model prints one remark line per pass by default; --remarks prints
// every remark, --remarks=PASS those of one pass.
TEST(Compile, RemarksAreOneLinePerPassUnlessAsked) {
  std::vector<std::string> args{"compile", test::sourcePath("examples/vit22b.vit"),
                                "--mesh",  "data=2,model=4",
                                "--batch", "2",
                                "-o",      "/dev/null"};
  auto summary = runVitc(args);
  ASSERT_EQ(summary.exit, 0) << summary.err;
  std::map<std::string, int> perPass;
  std::istringstream in(summary.err);
  for (std::string line; std::getline(in, line);) {
    ASSERT_EQ(line.rfind("remark: ", 0), 0u) << line;
    ++perPass[line.substr(8, line.find(':', 8) - 8)];
  }
  EXPECT_GE(perPass.size(), 5u) << summary.err;
  for (const auto &[pass, lines] : perPass)
    EXPECT_EQ(lines, 1) << pass << "\n" << summary.err;
  EXPECT_NE(summary.err.find("remark: collective-matmul: all_gather %l0.ln.rs -> 4-step ring into "
                             "%l0.fused.mm (and 48 more like it)"),
            std::string::npos)
      << summary.err;

  args.push_back("--remarks");
  auto all = runVitc(args);
  ASSERT_EQ(all.exit, 0) << all.err;
  EXPECT_GE(remarkLines(all.err, "fuse-parallel-linear: "), 96) << all.err;
  EXPECT_GE(remarkLines(all.err, "collective-matmul: "), 96);
  args.back() = "--remarks=collective-matmul,schedule-overlap";
  auto some = runVitc(args);
  ASSERT_EQ(some.exit, 0) << some.err;
  EXPECT_EQ(remarkLines(some.err), remarkLines(some.err, "collective-matmul: ") +
                                       remarkLines(some.err, "schedule-overlap: "));
  EXPECT_EQ(remarkLines(some.err, "collective-matmul: "),
            remarkLines(all.err, "collective-matmul: "));
  EXPECT_EQ(remarkLines(some.err, "schedule-overlap: "), 1);
}

// No exception escapes main: a last-resort handler prints one line and exits 1.
TEST(Cli, AnExceptionEndsInOneLineAndExitOne) {
  std::vector<std::string> args{VITC_BINARY, "stats", test::sourcePath("examples/vit-ti16.vit")};
  auto thrown = test::runCommand(args, {"VITC_TEST_THROW=it broke\nbadly"});
  EXPECT_EQ(thrown.exit, 1) << thrown.err;
  EXPECT_EQ(thrown.err, "vitc: error: internal error: it broke\\nbadly\n");
  auto memory = test::runCommand(args, {"VITC_TEST_THROW=bad_alloc"});
  EXPECT_EQ(memory.exit, 1);
  EXPECT_EQ(memory.err, "vitc: error: out of memory\n");
}

// The pass option that used to abort (std::stoll on a word) is an error, and a good one works.
TEST(Cli, PassOptionsThatAreValidAreAccepted) {
  auto r = runVitc({"compile", test::sourcePath("examples/parallel-tiny.vit"), "--mesh",
                    "data=1,model=2", "--pass-option", "layout.activations=replicated",
                    "--pass-option", "layout.params-over-data-min-bytes=0", "-o", "/dev/null"});
  EXPECT_EQ(r.exit, 0) << r.err;
}

} // namespace
} // namespace vitc

namespace vitc {
namespace {

// The standalone executable, like vitc run, refuses an output that is one of its inputs under
// another name, and leaves the input as it was.
TEST(CompileLlvm, TheExecutableRefusesToOverwriteAnInput) {
  namespace fs = std::filesystem;
  std::string dir = test::makeTempDir("exe-output-is-input");
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  auto exe = test::runVitc(
      {"compile", fx + "/model.vit", "--batch", "2", "--emit=exe", "-o", dir + "/prog"});
  ASSERT_EQ(exe.exit, 0) << exe.err;
  fs::copy_file(fx + "/input.npy", dir + "/x.npy");
  fs::copy_file(fx + "/model.safetensors", dir + "/w.safetensors");
  fs::create_hard_link(dir + "/x.npy", dir + "/x-hardlink.npy");
  fs::create_symlink(dir + "/w.safetensors", dir + "/w-symlink.safetensors");
  std::string input = test::slurp(dir + "/x.npy"), weights = test::slurp(dir + "/w.safetensors");
  for (const std::string &output :
       {dir + "/x-hardlink.npy", dir + "/w-symlink.safetensors", dir + "/./x.npy"}) {
    auto r = test::runCommand({dir + "/prog", "--weights", dir + "/w.safetensors", "--input",
                               dir + "/x.npy", "--output", output});
    EXPECT_EQ(r.exit, 1) << output;
    EXPECT_NE(r.err.find("is the same file as --"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(test::slurp(dir + "/x.npy"), input);
  EXPECT_EQ(test::slurp(dir + "/w.safetensors"), weights);
  auto good = test::runCommand({dir + "/prog", "--weights", dir + "/w.safetensors", "--input",
                                dir + "/x.npy", "--output", dir + "/y.npy"});
  EXPECT_EQ(good.exit, 0) << good.err;
}

// A linker that fails says why on the error's one line, its own lines joined.
TEST(CompileLlvm, AFailedLinkIsOneLine) {
  std::string dir = test::makeTempDir("failed-link");
  std::ofstream(dir + "/cxx") << "#!/bin/sh\necho 'first problem'\necho 'second problem'\nexit 3\n";
  std::filesystem::permissions(dir + "/cxx", std::filesystem::perms::owner_all);
  auto r = test::runCommand({VITC_BINARY, "compile", test::sourcePath("examples/parallel-tiny.vit"),
                             "--emit=exe", "-o", dir + "/prog"},
                            {"VITC_CXX=" + dir + "/cxx"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("failed (exit 3): first problem; second problem\n"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("\\n"), std::string::npos) << r.err;
  EXPECT_FALSE(test::fileExists(dir + "/prog"));
}

} // namespace
} // namespace vitc
