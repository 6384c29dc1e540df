// The vitc command line: stats against the published sizes, IR round trips, pass flags, errors.
#include <cmath>
#include <filesystem>
#include <regex>

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

TEST(Compile, PrintAfterAllShowsEveryPassUnderABanner) {
  auto r = runVitc({"compile", sourcePath("examples/parallel-tiny.vit"), "--print-after-all", "-o",
                    "/dev/null"});
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_NE(
      r.err.find("// -----// IR Dump After canonicalize (1) //----- //\nmodule @parallel-tiny"),
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
  EXPECT_TRUE(fileExists(dir + "/01-canonicalize.ir"));
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
        BadInput{
            "pass",
            "m.vit",
            kGoodBody,
            {"compile", "{}", "--passes=canonicalise", "-o", "{out}"},
            R"(^--passes: error: unknown pass 'canonicalise' \(known passes: canonicalize.*\)\n)"},
        BadInput{"print-after",
                 "m.vit",
                 kGoodBody,
                 {"compile", "{}", "--print-after=nope", "-o", "{out}"},
                 R"(^--print-after: error: unknown pass 'nope')"},
        BadInput{"ir",
                 "m.ir",
                 "module @m {\n  %x = input {name = \"x\"} : f32[2]\n  %y = gelu %z : f32[2]\n}\n",
                 {"compile", "{}", "-o", "{out}"},
                 R"(m\.ir:3:13: error: use of undefined value '%z')"},
        BadInput{"mesh",
                 "m.vit",
                 "[encoder]\nwidth = 64\ndepth = 1\nheads = 2\n",
                 {"stats", "{}", "--mesh", "data=2,model"},
                 R"(--mesh: error: bad mesh 'data=2,model': expected '=' after axis 'model')"}),
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
