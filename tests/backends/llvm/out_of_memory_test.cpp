// A program whose buffers do not fit under the process's memory limit: an error that says what was
// being allocated and how much, not a crash (aligned_alloc's null result was written through).
#include <cstdio>
#include <fstream>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/backends/llvm/llvm_test_util.h"
#include "tests/common/sanitizers.h"

namespace vitc {
namespace {

// 70 million rows: about 5 GiB for each of the two activations.
const char *kHugeModule = R"(module @huge mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[70000000,33]
  %w = param {name = "w"} : f32[20,33]
  %b = param {name = "b"} : f32[20]
  %y = fused_linear %x, %w, %b {bias = true, gelu = true, transpose_b = true} : f32[70000000,20]
  %s = param {name = "s"} : f32[20]
  %n = layer_norm %y, %s {eps = 1e-06} : f32[70000000,20]
  output %n
}
)";

// Runs in a child process (a death test): limits the address space to what is mapped now and
// 1 GiB more, then builds the program.
[[noreturn]] void buildUnderLimit() {
  auto m = test::parseAndPlan(kHugeModule);
  if (!m) {
    std::fprintf(stderr, "%s\n", m.error().str().c_str());
    std::_Exit(2);
  }
  std::vector<Tensor> params;
  for (const ir::Op *p : (*m)->params())
    params.push_back(Tensor::zeros(p->shape()));
  double pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  rlim_t mapped = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGE_SIZE));
  struct rlimit limit {
    mapped + (rlim_t{1} << 30), mapped + (rlim_t{1} << 30)
  };
  if (setrlimit(RLIMIT_AS, &limit) != 0)
    std::_Exit(3);
  auto executable = llvmbe::compile(**m);
  if (!executable) {
    std::fprintf(stderr, "%s\n", executable.error().str().c_str());
    std::_Exit(5);
  }
  auto program = (*executable)->instantiate(0, params);
  if (program)
    std::_Exit(4);
  std::fprintf(stderr, "%s\n", program.error().str().c_str());
  std::_Exit(0);
}

TEST(JitProgramDeathTest, BuffersBeyondTheMemoryLimitAreAnErrorNotACrash) {
  if (test::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves more address space than any limit allows";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(buildUnderLimit(), ::testing::ExitedWithCode(0),
              "error: out of memory allocating [0-9.]+ GiB for the activations of device 0");
}

} // namespace
} // namespace vitc
