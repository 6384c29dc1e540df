// Memory: `vitc stats --mesh` against what a run allocates (within 10% per device); runs and
// weights too big for the process's memory limit refused in one line; files that never end
// (devices, pipes) refused rather than read into memory.
#include <chrono>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"
#include "frontend/formats/npy.h"
#include "frontend/load_model.h"
#include "frontend/weights.h"
#include "ir/signature.h"
#include "passes/analysis.h"
#include "passes/pass_manager.h"
#include "runtime/runner.h"
#include "tests/common/subprocess.h"
#include "tests/common/sanitizers.h"

namespace vitc {
namespace {

struct Case {
  const char *model;
  const char *mesh;
  int64_t batch;
  const char *backend = "interpreter";
};

class StatsMemory : public ::testing::TestWithParam<Case> {};

TEST_P(StatsMemory, PredictionMatchesTheRun) {
  const Case &c = GetParam();
  auto loaded = frontend::loadModel(std::string(VITC_SOURCE_DIR) + "/" + c.model, {c.batch});
  ASSERT_TRUE(loaded) << loaded.error().str();
  auto mesh = ir::parseMesh(c.mesh, Loc{});
  ASSERT_TRUE(mesh);
  loaded->module->mesh = *mesh;
  auto source = frontend::openWeights("random:3", loaded->module.get());
  ASSERT_TRUE(source);
  std::map<std::string, Tensor> byName;
  for (const TensorSpec &p : ir::signatureOf(*loaded->module).params)
    byName[p.name] = *(*source)->load(p);
  std::ostringstream sink;
  passes::PassManager pm({}, sink);
  passes::PassContext ctx;
  ASSERT_TRUE(pm.run(*loaded->module, ctx));
  passes::ModuleStats stats = passes::analyze(*loaded->module);

  std::shared_ptr<const ir::Module> module = std::move(loaded->module);
  std::vector<Tensor> params;
  for (const ir::Op *p : module->params())
    params.push_back(byName.at(p->attrs.getStr("name")));
  backends::Compiler compile =
      std::string(c.backend) == "llvm" ? llvmbe::compiler() : interp::compiler();
  auto executable = compile(module);
  ASSERT_TRUE(executable) << executable.error().str();
  auto runner = runtime::MeshRunner::create(*executable, params);
  ASSERT_TRUE(runner) << runner.error().str();
  Tensor images = Tensor::zeros(module->inputs()[0]->shape());
  for (int64_t i = 0; i < images.numel(); ++i)
    images.mutableData()[i] = static_cast<float>((i * 7919) % 101) / 50.0f - 1.0f;
  auto outs = (*runner)->run({images});
  ASSERT_TRUE(outs) << outs.error().str();
  for (const runtime::DeviceProgram::Memory &m : (*runner)->memory()) {
    double predicted =
        static_cast<double>(stats.weightBytesPerDevice + stats.activationPeakBytesPerDevice);
    double allocated = static_cast<double>(m.weightBytes + m.activationPeakBytes);
    EXPECT_NEAR(allocated, predicted, 0.10 * predicted)
        << c.model << " on " << c.mesh << ": weights " << m.weightBytes << " vs "
        << stats.weightBytesPerDevice << ", activations " << m.activationPeakBytes << " vs "
        << stats.activationPeakBytesPerDevice;
    // The activations alone, too: the plan's packing may lose a little to alignment.
    EXPECT_NEAR(static_cast<double>(m.activationPeakBytes),
                static_cast<double>(stats.activationPeakBytesPerDevice),
                0.25 * static_cast<double>(stats.activationPeakBytesPerDevice));
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, StatsMemory,
    ::testing::Values(Case{"examples/parallel-tiny.vit", "data=1,model=1", 1},
                      Case{"examples/parallel-tiny.vit", "data=1,model=2", 2},
                      Case{"examples/parallel-tiny.vit", "data=2,model=2", 2},
                      Case{"examples/parallel-tiny.vit", "data=1,model=4", 4},
                      Case{"tests/fixtures/tv_tok/config.json", "data=2,model=2", 4},
                      Case{"examples/vit-s16.vit", "data=1,model=2", 1},
                      Case{"examples/vit-s16.vit", "data=1,model=2", 1, "llvm"},
                      Case{"examples/vit-b16.vit", "data=2,model=2", 2, "llvm"}));

// Runs vitc with `ulimit -v` at `kib` KiB.
test::CommandResult runVitcUnderLimit(int64_t kib, const std::vector<std::string> &args) {
  std::string command = "ulimit -v " + std::to_string(kib) + " && exec \"$0\" \"$@\"";
  std::vector<std::string> argv{"bash", "-c", command, VITC_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::runCommand(argv, {}, 120);
}

int64_t lineCount(const std::string &text) {
  return static_cast<int64_t>(std::count(text.begin(), text.end(), '\n'));
}

double physicalMemoryBytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

TEST(MemoryLimit, ARunTooBigForTheAddressSpaceLimitIsOneLineNotACrash) {
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves more address space than any ulimit -v allows";
  std::string dir = test::makeTempDir("memory-limit-run");
  ASSERT_TRUE(formats::writeNpy(dir + "/x.npy", Tensor::zeros({1, 3, 224, 224})));
  // ViT-G/14: 1.8 billion parameters, about 15 GiB to run, under a 3 GiB limit.
  auto r =
      runVitcUnderLimit(3 << 20, {"run", test::sourcePath("examples/vit-G14.vit"), "--weights",
                                  "random", "--input", dir + "/x.npy", "--output", dir + "/y.npy"});
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(lineCount(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("error: this run needs"), std::string::npos) << r.err;
  if (physicalMemoryBytes() > 20.0 * (1 << 30)) { // otherwise the machine's memory is named
    EXPECT_NE(r.err.find("address-space limit (ulimit -v)"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/y.npy"));
}

TEST(MemoryLimit, InitWeightsTooBigForTheAddressSpaceLimitIsOneLineNotACrash) {
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves more address space than any ulimit -v allows";
  std::string dir = test::makeTempDir("memory-limit-init");
  auto r = runVitcUnderLimit(3 << 20, {"init-weights", test::sourcePath("examples/vit-G14.vit"),
                                       "-o", dir + "/w.safetensors"});
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(lineCount(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("error: writing these weights needs"), std::string::npos) << r.err;
  if (physicalMemoryBytes() > 12.0 * (1 << 30)) {
    EXPECT_NE(r.err.find("address-space limit (ulimit -v)"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/w.safetensors"));
}

TEST(MemoryLimit, AModelThatFitsStillRunsUnderALimit) {
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves more address space than any ulimit -v allows";
  std::string dir = test::makeTempDir("memory-limit-fits");
  ASSERT_TRUE(formats::writeNpy(dir + "/x.npy", Tensor::zeros({1, 3, 32, 32})));
  auto r = runVitcUnderLimit(3 << 20, {"run", test::sourcePath("examples/parallel-tiny.vit"),
                                       "--weights", "random", "--backend", "interpreter", "--input",
                                       dir + "/x.npy", "--output", dir + "/y.npy"});
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/y.npy"));
}

TEST(MemoryTensor, AnAllocationThatCannotBeHadIsAnErrorThatSaysHowMuch) {
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer aborts on an allocation this large instead of failing it";
  // 2^50 floats: more than any address space holds, so the allocation fails on every machine.
  Expected<Tensor> t = Tensor::tryZeros({int64_t{1} << 25, int64_t{1} << 25}, "tensor 'huge'");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().str(), "error: out of memory allocating 4096.0 TiB for tensor 'huge'")
      << t.error().str();
  Expected<Tensor> overflow = Tensor::tryZeros({int64_t{1} << 40, int64_t{1} << 40}, "x");
  ASSERT_FALSE(overflow);
  EXPECT_NE(overflow.error().str().find("does not fit in memory"), std::string::npos);
  try {
    (void)Tensor::zeros({int64_t{1} << 25, int64_t{1} << 25});
    ADD_FAILURE() << "zeros did not throw";
  } catch (const OutOfMemory &e) {
    EXPECT_STREQ(e.what(), "out of memory allocating 4096.0 TiB");
  }
}

// A model path that never ends is refused at once, not read until memory runs out.
TEST(MemoryUnboundedRead, ADeviceAsTheModelIsOneLineAndQuick) {
  auto start = std::chrono::steady_clock::now();
  auto r = test::runCommand({VITC_BINARY, "stats", "/dev/zero"}, {}, 30);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(r.err, "/dev/zero: error: cannot read file: not a regular file\n");
  EXPECT_LT(seconds, 20);
}

TEST(MemoryUnboundedRead, APipeAsTheModelIsOneLineAndDoesNotWaitForAWriter) {
  std::string dir = test::makeTempDir("memory-fifo");
  std::string fifo = dir + "/model.vit";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto r = test::runCommand({VITC_BINARY, "stats", fifo}, {}, 30);
  EXPECT_EQ(r.exit, 1) << r.err;
  EXPECT_EQ(r.err, fifo + ": error: cannot read file: not a regular file\n");
  // The same for the files a model brings along: a layout.
  auto layout = test::runCommand(
      {VITC_BINARY, "stats", test::sourcePath("examples/parallel-tiny.vit"), "--layout", fifo}, {},
      30);
  EXPECT_EQ(layout.exit, 1) << layout.err;
  EXPECT_NE(layout.err.find("not a regular file"), std::string::npos) << layout.err;
  EXPECT_EQ(lineCount(layout.err), 1) << layout.err;
}

} // namespace
} // namespace vitc
