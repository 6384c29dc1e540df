// Every non-matmul kernel against the interpreter, on ragged shapes (not multiples of 8 or 16).
#include "backends/llvm/plan.h"
#include "tests/backends/llvm/llvm_test_util.h"

namespace vitc {
namespace {

TEST(ElementwiseKernels, BroadcastingAddAndMul) {
  EXPECT_MATCHES_INTERPRETER(R"(module @eltwise mesh(data=1, model=1) {
  %a = input {name = "a"} : f32[7,33]
  %bias = param {name = "bias"} : f32[33]
  %s = add %a, %bias : f32[7,33]
  %b = input {name = "b"} : f32[2,7,33]
  %pos = param {name = "pos"} : f32[1,7,33]
  %t = add %b, %pos : f32[2,7,33]
  %c = input {name = "c"} : f32[2,1,33]
  %u = mul %b, %c : f32[2,7,33]
  %col = input {name = "col"} : f32[7,1]
  %row = input {name = "row"} : f32[1,5]
  %outer = mul %col, %row : f32[7,5]
  %one = input {name = "one"} : f32[1]
  %v = add %one, %a : f32[7,33]
  %w = mul %a, %a : f32[7,33]
  output %s, %t, %u, %outer, %v, %w
}
)");
}

TEST(ElementwiseKernels, ScaleAndGelu) {
  // A wide spread of values exercises GELU's tails and the clamps of exp and erf.
  std::string text = R"(module @unary mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[13,100]
  %s = scale %x {factor = 0.125} : f32[13,100]
  %g = gelu %x : f32[13,100]
  %t = gelu %x {approximate = true} : f32[13,100]
  %y = input {name = "y"} : f32[3]
  %gy = gelu %y : f32[3]
  output %s, %g, %t, %gy
}
)";
  EXPECT_MATCHES_INTERPRETER(text);
  auto wide = test::parseAndPlan(text);
  ASSERT_TRUE(wide) << wide.error().str();
  auto c = test::compareModule(*wide, test::verifiedOptions(), 4.0f);
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_LE(c->maxRelDiff, 1e-5);
}

TEST(NormKernels, LayerNormWithAndWithoutBias) {
  EXPECT_MATCHES_INTERPRETER(R"(module @ln mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,7,33]
  %w = param {name = "w"} : f32[33]
  %b = param {name = "b"} : f32[33]
  %y = layer_norm %x, %w, %b {eps = 1e-06} : f32[2,7,33]
  %z = layer_norm %x, %w {eps = 0.001} : f32[2,7,33]
  %q = input {name = "q"} : f32[1,3,13,5]
  %qw = param {name = "qw"} : f32[5]
  %qn = layer_norm %q, %qw {eps = 1e-06} : f32[1,3,13,5]
  %r = input {name = "r"} : f32[3,100]
  %rw = param {name = "rw"} : f32[100]
  %rb = param {name = "rb"} : f32[100]
  %rn = layer_norm %r, %rw, %rb {eps = 1e-06} : f32[3,100]
  output %y, %z, %qn, %rn
}
)");
}

TEST(NormKernels, SoftmaxAndMean) {
  EXPECT_MATCHES_INTERPRETER(R"(module @softmax mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,3,13,197]
  %p = softmax %x : f32[2,3,13,197]
  %y = input {name = "y"} : f32[7,5]
  %q = softmax %y : f32[7,5]
  %z = input {name = "z"} : f32[2,7,33]
  %m0 = mean %z {axis = 0} : f32[7,33]
  %m1 = mean %z {axis = 1} : f32[2,33]
  %m2 = mean %z {axis = 2} : f32[2,7]
  output %p, %q, %m0, %m1, %m2
}
)",
                             test::verifiedOptions(), 4.0f);
}

TEST(DataMovementKernels, TransposeBroadcastConcatSlice) {
  EXPECT_MATCHES_INTERPRETER(R"(module @moves mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,5,3,7]
  %heads = transpose %x {perm = [0, 2, 1, 3]} : f32[2,3,5,7]
  %y = input {name = "y"} : f32[13,17]
  %yt = transpose %y {perm = [1, 0]} : f32[17,13]
  %z = input {name = "z"} : f32[2,3,5]
  %zt = transpose %z {perm = [2, 0, 1]} : f32[5,2,3]
  %cls = param {name = "cls"} : f32[1,1,33]
  %clsb = broadcast %cls : f32[2,1,33]
  %tok = input {name = "tok"} : f32[2,7,33]
  %all = concat %clsb, %tok {axis = 1} : f32[2,8,33]
  %last = concat %tok, %tok, %all {axis = 1} : f32[2,22,33]
  %feat = concat %tok, %tok {axis = 0} : f32[4,7,33]
  %narrow = input {name = "narrow"} : f32[2,7,5]
  %wide = concat %tok, %narrow {axis = 2} : f32[2,7,38]
  %first = slice %all {axis = 1, size = 1, start = 0} : f32[2,1,33]
  %mid = slice %all {axis = 2, size = 5, start = 3} : f32[2,8,5]
  %v = input {name = "v"} : f32[5]
  %vb = broadcast %v : f32[3,4,5]
  output %heads, %yt, %zt, %all, %last, %feat, %wide, %first, %mid, %vb
}
)");
}

TEST(DataMovementKernels, Patchify) {
  EXPECT_MATCHES_INTERPRETER(R"(module @patches mesh(data=1, model=1) {
  %img = input {name = "img"} : f32[2,3,32,32]
  %p = patchify %img {patch = 8} : f32[2,16,192]
  %big = input {name = "big"} : f32[1,3,48,48]
  %q = patchify %big {patch = 16} : f32[1,9,768]
  %odd = input {name = "odd"} : f32[1,2,15,10]
  %r = patchify %odd {patch = 5} : f32[1,6,50]
  output %p, %q, %r
}
)");
}

TEST(ProgramKernels, WeightOnlyValuesViewsAndFills) {
  // Concatenated and sliced weights, fills and reshapes of parameters are computed once at load;
  // reshapes of activations are views.
  EXPECT_MATCHES_INTERPRETER(R"(module @weights mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,7,12]
  %wq = param {name = "wq"} : f32[12,12]
  %wk = param {name = "wk"} : f32[12,12]
  %w = concat %wq, %wk {axis = 0} : f32[24,12]
  %zero = fill {value = 0.0} : f32[12]
  %bk = param {name = "bk"} : f32[12]
  %b = concat %zero, %bk {axis = 0} : f32[24]
  %y = matmul %x, %w {transpose_b = true} : f32[2,7,24]
  %yb = add %y, %b : f32[2,7,24]
  %flat = reshape %yb : f32[14,24]
  %k = slice %flat {axis = 1, size = 12, start = 12} : f32[14,12]
  %conv = param {name = "conv"} : f32[12,3,2,2]
  %conv2d = reshape %conv : f32[12,12]
  %half = scale %conv2d {factor = 0.5} : f32[12,12]
  %kk = matmul %k, %half : f32[14,12]
  %probe = param {name = "probe"} : f32[1,1,12]
  %pq = matmul %probe, %wq {transpose_b = true} : f32[1,1,12]
  %pqb = broadcast %pq : f32[2,1,12]
  %ones = fill {value = 1.5} : f32[3,5]
  output %kk, %pqb, %ones
}
)");
}

TEST(ProgramKernels, AttentionReadsSlicesOfAFusedProjectionInPlace) {
  // q and k are views of the projection (no copy kernels); v is an output too, so it is copied.
  const char *text = R"(module @qkv mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[2,13,16]
  %w = param {name = "w"} : f32[48,16]
  %f = matmul %x, %w {transpose_b = true} : f32[2,13,48]
  %q = slice %f {axis = 2, size = 16, start = 0} : f32[2,13,16]
  %k = slice %f {axis = 2, size = 16, start = 16} : f32[2,13,16]
  %v = slice %f {axis = 2, size = 16, start = 32} : f32[2,13,16]
  %o = attention %q, %k, %v {heads = 2, scale = 0.25} : f32[2,13,16]
  output %o, %v
}
)";
  EXPECT_MATCHES_INTERPRETER(text);
  auto m = test::parseAndPlan(text);
  ASSERT_TRUE(m) << m.error().str();
  auto plan = llvmbe::planModule(**m, llvmbe::TileConfig{});
  ASSERT_TRUE(plan) << plan.error().str();
  int copies = 0;
  const llvmbe::AttentionDesc *attention = nullptr;
  for (const llvmbe::KernelDesc &k : plan->kernels) {
    copies += std::holds_alternative<llvmbe::CopyDesc>(k);
    if (const auto *a = std::get_if<llvmbe::AttentionDesc>(&k))
      attention = a;
  }
  EXPECT_EQ(copies, 1);
  ASSERT_NE(attention, nullptr);
  EXPECT_EQ(attention->qRow, 48);
  EXPECT_EQ(attention->kRow, 48);
  EXPECT_EQ(attention->vRow, 16);
}

TEST(ProgramKernels, UnplannedModulesAreRefusedNamingThePass) {
  // plan-memory is the pipeline's last step; a backend checks for it and never runs it itself.
  auto m = test::parseAndPlan(R"(module @unplanned mesh(data=1, model=1) {
  %x = input {name = "x"} : f32[7,33]
  %w = param {name = "w"} : f32[33]
  %y = layer_norm %x, %w {eps = 1e-06} : f32[7,33]
  %z = gelu %y : f32[7,33]
  output %z
}
)",
                              /*planMemory=*/false);
  ASSERT_TRUE(m) << m.error().str();
  auto compiled = llvmbe::compile(**m, test::verifiedOptions());
  ASSERT_FALSE(compiled);
  EXPECT_EQ(compiled.error().message(),
            "module @unplanned has no memory plan: the llvm backend needs the plan-memory pass to "
            "run last (it was left out of the pipeline)");
  EXPECT_FALSE(llvmbe::emitObject(**m, testing::TempDir() + "/unplanned.o", test::verifiedOptions()));
}

} // namespace
} // namespace vitc
