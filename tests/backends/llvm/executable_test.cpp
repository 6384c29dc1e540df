// Objects and standalone executables: fixtures run by the linked program, which needs only libc.
#include <filesystem>
#include <future>
#include <map>
#include <sstream>
#include <sys/stat.h>

#include "frontend/formats/npy.h"
#include "frontend/load_model.h"
#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

namespace fs = std::filesystem;

std::string fixtureDir(const std::string &name) {
  return std::string(VITC_TEST_DATA) + "/fixtures/" + name;
}

// The fixture's model for its input batch, through the default pipeline.
Expected<std::unique_ptr<ir::Module>> fixtureModule(const std::string &name) {
  fs::path dir = fixtureDir(name);
  VITC_ASSIGN(Tensor input, formats::readNpy((dir / "input.npy").string()));
  std::string model = fs::exists(dir / "model.vit") ? (dir / "model.vit").string() : dir.string();
  VITC_ASSIGN(frontend::LoadedModel loaded, frontend::loadModel(model, {input.dim(0)}));
  std::ostringstream sink;
  passes::PassManager pm({}, sink);
  passes::PassContext ctx;
  VITC_TRY(pm.run(*loaded.module, ctx));
  return std::move(loaded.module);
}

// Executables built by this test program, removed (with their folders) when it exits.
struct BuiltExecutables {
  std::map<std::string, std::string> paths;
  ~BuiltExecutables() {
    std::error_code ec;
    for (const auto &[name, path] : paths)
      fs::remove_all(fs::path(path).parent_path(), ec);
  }
};

// Builds the fixture's executable once per test program.
const std::string &executableFor(const std::string &name) {
  static BuiltExecutables executables;
  std::map<std::string, std::string> &built = executables.paths;
  if (auto it = built.find(name); it != built.end())
    return it->second;
  std::string path = test::makeTempDir("llvm_exe_" + name) + "/model";
  auto m = fixtureModule(name);
  EXPECT_TRUE(m) << m.error().str();
  if (m) {
    Status s = llvmbe::emitExecutable(**m, path, test::verifiedOptions());
    EXPECT_TRUE(s) << s.error().str();
  }
  return built[name] = path;
}

class LlvmExecutable : public ::testing::TestWithParam<std::string> {};

TEST_P(LlvmExecutable, ComputesTheFixtureLogits) {
  std::string exe = executableFor(GetParam());
  ASSERT_TRUE(test::fileExists(exe));
  std::string dir = fixtureDir(GetParam());
  std::string out = fs::path(exe).parent_path().string() + "/logits.npy";
  test::CommandResult r = test::runCommand({exe, "--weights", dir + "/model.safetensors", "--input",
                                            dir + "/input.npy", "--output", out});
  ASSERT_EQ(r.exit, 0) << r.err;
  auto logits = formats::readNpy(out);
  ASSERT_TRUE(logits) << logits.error().str();
  auto expected = formats::readNpy(dir + "/logits.npy");
  ASSERT_TRUE(expected) << expected.error().str();
  EXPECT_LE(test::maxAbsDiff(*logits, *expected), 1e-4);
}

// F32 weights with a Hugging Face config, a vitc spec with a MAP head, and BF16 weights.
INSTANTIATE_TEST_SUITE_P(Fixtures, LlvmExecutable,
                         ::testing::Values("tv_tok", "parallel_map", "tv_bf16"),
                         [](const auto &info) { return info.param; });

// Outputs go through a temporary file renamed over the target, except where the target is a
// device or a FIFO (`--output /dev/null`): a rename would replace it with a file.
TEST(LlvmExecutable, WritesIntoAFifoInPlace) {
  std::string exe = executableFor("tv_tok");
  ASSERT_TRUE(test::fileExists(exe));
  std::string dir = fixtureDir("tv_tok");
  std::string fifo = test::makeTempDir("llvm_exe_fifo") + "/logits.npy";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto reader = std::async(std::launch::async, [&] { return test::slurp(fifo); });
  test::CommandResult r = test::runCommand({exe, "--weights", dir + "/model.safetensors", "--input",
                                            dir + "/input.npy", "--output", fifo});
  ASSERT_EQ(r.exit, 0) << r.err;
  std::string bytes = reader.get();
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_TRUE(fs::is_fifo(fifo));
  // An executable is never written over one.
  auto m = fixtureModule("tv_tok");
  ASSERT_TRUE(m) << m.error().str();
  Status s = llvmbe::emitExecutable(**m, fifo, test::verifiedOptions());
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().str().find("not a regular file"), std::string::npos) << s.error().str();
  EXPECT_TRUE(fs::is_fifo(fifo));
}

TEST(LlvmExecutable, NeedsOnlyTheCLibraries) {
  std::string exe = executableFor("tv_tok");
  ASSERT_TRUE(test::fileExists(exe));
  test::CommandResult r = test::runCommand({"ldd", exe});
  ASSERT_EQ(r.exit, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int libraries = 0;
  while (std::getline(lines, line)) {
    bool allowed = false;
    for (const char *lib : {"linux-vdso.so", "libc.so", "libm.so", "libpthread.so", "ld-linux"})
      allowed |= line.find(lib) != std::string::npos;
    EXPECT_TRUE(allowed) << "unexpected dependency: " << line;
    ++libraries;
  }
  EXPECT_GT(libraries, 0);
  // A position-independent executable.
  test::CommandResult file = test::runCommand({"readelf", "-h", exe});
  if (file.exit == 0) {
    EXPECT_NE(file.out.find("DYN"), std::string::npos) << file.out;
  }
}

TEST(LlvmExecutable, ReportsBadFilesInOneLine) {
  std::string exe = executableFor("tv_tok");
  ASSERT_TRUE(test::fileExists(exe));
  std::string dir = fixtureDir("tv_tok");
  std::string tmp = fs::path(exe).parent_path().string();
  test::CommandResult r =
      test::runCommand({exe, "--weights", tmp + "/missing.safetensors", "--input",
                        dir + "/input.npy", "--output", tmp + "/out.npy"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("error: cannot open"), std::string::npos) << r.err;
  // An input of another model's shape.
  r = test::runCommand({exe, "--weights", dir + "/model.safetensors", "--input",
                        fixtureDir("tv_bf16") + "/input.npy", "--output", tmp + "/out.npy"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("the model takes [2, 3, 32, 32]"), std::string::npos) << r.err;
  // Weights of another model.
  r = test::runCommand({exe, "--weights", fixtureDir("tv_bf16") + "/model.safetensors", "--input",
                        dir + "/input.npy", "--output", tmp + "/out.npy"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("has shape"), std::string::npos) << r.err;
  EXPECT_FALSE(test::fileExists(tmp + "/out.npy"));
  r = test::runCommand({exe, "--bogus"});
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("unknown argument '--bogus'"), std::string::npos) << r.err;
}

// The executable reads F32 weights in place from the mapped file, as `vitc run` does: a file
// truncated while it runs is one line naming the file and exit status 1, not a SIGBUS.
TEST(LlvmExecutable, AWeightsFileTruncatedWhileRunningIsOneLine) {
  std::string exe = executableFor("tv_tok");
  ASSERT_TRUE(test::fileExists(exe));
  std::string dir = fixtureDir("tv_tok");
  std::string tmp = test::makeTempDir("llvm_exe_truncated");
  fs::copy_file(dir + "/model.safetensors", tmp + "/w.safetensors");
  // Runs for minutes unless stopped; the weights are cut to nothing a second into the runs.
  std::string script =
      "\"$0\" --weights \"$1/w.safetensors\" --input \"$2\" --output "
      "\"$1/out.npy\" --repeat 100000000 & pid=$!; sleep 1; : > \"$1/w.safetensors\"; "
      "wait $pid";
  test::CommandResult r =
      test::runCommand({"timeout", "120", "sh", "-c", script, exe, tmp, dir + "/input.npy"});
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(r.err, tmp + "/w.safetensors: error: the file changed (was truncated) while vitc was "
                         "reading it\n");
  EXPECT_FALSE(test::fileExists(tmp + "/out.npy"));
}

TEST(LlvmExecutable, RefusesMultiDeviceMeshes) {
  auto m = test::parseAndPlan(R"(module @dp mesh(data=2, model=1) {
  %x = input {name = "x"} : f32[8@data,6]
  %w = param {name = "w"} : f32[5,6]
  %y = matmul %x, %w {transpose_b = true} : f32[8@data,5]
  output %y
}
)");
  ASSERT_TRUE(m) << m.error().str();
  test::ScopedTempDir dir("llvm_exe_mesh");
  std::string path = dir.path + "/model";
  Status s = llvmbe::emitExecutable(**m, path, test::verifiedOptions());
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("executables run on one device"), std::string::npos)
      << s.error().str();
  EXPECT_NE(s.error().message().find("2 devices"), std::string::npos) << s.error().str();
  EXPECT_FALSE(test::fileExists(path));
}

TEST(LlvmObject, IsARelocatableElfWithTheKernels) {
  auto m = fixtureModule("seq_gap_qknorm");
  ASSERT_TRUE(m) << m.error().str();
  test::ScopedTempDir dir("llvm_obj");
  std::string path = dir.path + "/model.o";
  llvmbe::CompileReport report;
  Status s = llvmbe::emitObject(**m, path, test::verifiedOptions(), &report);
  ASSERT_TRUE(s) << s.error().str();
  std::string bytes = test::slurp(path);
  ASSERT_GT(bytes.size(), 64u);
  EXPECT_EQ(bytes.substr(0, 4), "\x7f"
                                "ELF");
  EXPECT_EQ(bytes[16], 1); // ET_REL
  EXPECT_NE(bytes.find("vitc_program_kernels"), std::string::npos);
  EXPECT_NE(bytes.find("vitc_attention_"), std::string::npos);
  EXPECT_GT(report.uniqueKernels, 0);

  auto ir = llvmbe::emitLlvmIr(**m, test::verifiedOptions());
  ASSERT_TRUE(ir) << ir.error().str();
  EXPECT_NE(ir->find("define void @vitc_attention_"), std::string::npos);
  EXPECT_NE(ir->find("\"vitc-kernel\"=\"attention"), std::string::npos);
}

} // namespace
} // namespace vitc
