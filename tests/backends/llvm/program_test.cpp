// The JIT's device programs: what they hold, and the errors they report.
#include "runtime/single_device.h"
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

const char *kSmallModule = R"(module @small mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[7,33]
  %w = param {name = "w"} : f32[20,33]
  %b = param {name = "b"} : f32[20]
  %y = fused_linear %x, %w, %b {bias = true, gelu = true, transpose_b = true} : f32[7,20]
  %s = param {name = "s"} : f32[20]
  %n = layer_norm %y, %s {eps = 1e-06} : f32[7,20]
  output %n
}
)";

std::vector<Tensor> paramsFor(const ir::Module &m) {
  std::vector<Tensor> params;
  uint32_t seed = 1;
  for (const ir::Op *p : m.params())
    params.push_back(test::normalTensor(p->shape(), seed++));
  return params;
}

TEST(JitProgram, ReportsTheMemoryItHolds) {
  auto m = test::parseAndPlan(kSmallModule);
  ASSERT_TRUE(m) << m.error().str();
  auto executable = llvmbe::compile(**m, test::verifiedOptions());
  ASSERT_TRUE(executable) << executable.error().str();
  auto runner = runtime::MeshRunner::create(*executable, paramsFor(**m));
  ASSERT_TRUE(runner) << runner.error().str();
  auto outs = (*runner)->run({test::normalTensor({7, 33}, 9)});
  ASSERT_TRUE(outs) << outs.error().str();
  std::vector<runtime::DeviceProgram::Memory> memory = (*runner)->memory();
  ASSERT_EQ(memory.size(), 1u);
  // The weight packed into one panel (20 columns padded to the panel width: 48 by default with
  // AVX-512, 16 with AVX2, never past 64), the bias and the scale.
  EXPECT_GE(memory[0].weightBytes, (20 * 33 + 20 + 20) * 4);
  EXPECT_LE(memory[0].weightBytes, (64 * 33 + 20 + 20) * 4);
  EXPECT_EQ(memory[0].activationPeakBytes, std::get<int64_t>(*(*m)->attrs.find("workspace_bytes")));
}

TEST(JitProgram, RejectsParametersAndInputsOfTheWrongShape) {
  auto m = test::parseAndPlan(kSmallModule);
  ASSERT_TRUE(m) << m.error().str();
  auto executable = llvmbe::compile(**m, test::verifiedOptions());
  ASSERT_TRUE(executable) << executable.error().str();
  std::vector<Tensor> params = paramsFor(**m);
  auto tooFew = (*executable)->instantiate(0, {params[0]});
  ASSERT_FALSE(tooFew);
  EXPECT_NE(tooFew.error().message().find("1 parameter tensors for 3 parameters"),
            std::string::npos)
      << tooFew.error().str();
  std::vector<Tensor> wrong = params;
  wrong[1] = Tensor::zeros({21});
  auto badShape = (*executable)->instantiate(0, wrong);
  ASSERT_FALSE(badShape);
  EXPECT_NE(badShape.error().message().find("parameter 'b' has shape [21], expected [20]"),
            std::string::npos)
      << badShape.error().str();

  auto program = (*executable)->instantiate(0, params);
  ASSERT_TRUE(program) << program.error().str();
  runtime::SingleDeviceCommunicator comm((*m)->mesh);
  auto out = (*program)->run({Tensor::zeros({7, 32})}, comm);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message().find("input 'x' has shape [7, 32], expected [7, 33]"),
            std::string::npos)
      << out.error().str();
  out = (*program)->run({}, comm);
  ASSERT_FALSE(out);
  // A good run after bad ones, twice: the program keeps nothing from one run to the next.
  Tensor x = test::normalTensor({7, 33}, 3);
  auto first = (*program)->run({x}, comm);
  auto second = (*program)->run({x}, comm);
  ASSERT_TRUE(first && second);
  ASSERT_EQ(first->size(), 1u);
  for (int64_t i = 0; i < (*first)[0].numel(); ++i)
    ASSERT_EQ((*first)[0].data()[i], (*second)[0].data()[i]);
}

TEST(JitProgram, RefusesWhatItCannotCompute) {
  auto bf16 = test::parseAndPlan(R"(module @half mesh(data=1, model=1) {
  %x = input {name = "x"} : bf16[4,8]
  %y = scale %x {factor = 2.0} : bf16[4,8]
  output %y
}
)");
  ASSERT_TRUE(bf16) << bf16.error().str();
  auto r = llvmbe::emitLlvmIr(**bf16, test::verifiedOptions());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("computes f32 only, got bf16"), std::string::npos)
      << r.error().str();
}

} // namespace
} // namespace vitc
