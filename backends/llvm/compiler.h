// From a plan to machine code: target selection, IR generation, optimization, JIT and objects.
//
// This is the one place that drives LLVM's pass pipeline, ORC and the code generator (the
// headers that make a file slow to compile stay in compiler.cpp). LLVM errors become vitc
// Errors here; no exception crosses an LLVM frame.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/llvm/exe/program_table.h"
#include "backends/llvm/llvm_backend.h"
#include "backends/llvm/plan.h"

namespace vitc::llvmbe {

// The machine the code is for, resolved from Options.
struct Target {
  std::string triple;
  std::string cpu;
  std::string features; // comma-separated, as LLVM takes them
  int64_t vectorWidth = 16;
  bool avx512Bf16 = false; // bf16 matmuls with vdpbf16ps (else f32 math on bf16 values)
  bool amxBf16 = false;    // bf16 matmuls on AMX tiles (needs the process's AMX permission)
  TileConfig tiles;
  int optLevel = 2;
  bool verify = false;
};

Expected<Target> resolveTarget(const Options &options);

// Whether the plan multiplies bf16 (on a target with AMX, those kernels use its tiles).
bool hasBf16Matmuls(const Plan &plan);
// Asks Linux, once per process, for the AMX tile state that AMX kernels need before they run.
Status requestAmxState();

// Kernels JIT-compiled into this process; the functions live as long as this object.
class JitKernels {
public:
  virtual ~JitKernels() = default;
  std::vector<exe::KernelFn> functions; // one per Plan::kernels entry
};

Expected<std::unique_ptr<JitKernels>> compileJit(const Plan &plan, const Target &target,
                                                 const std::string &saveObject,
                                                 CompileReport &report);

// One C[m, n] = A[m, k] * W[n, k]^T product on its own, with W packed into panels first, as
// programs do with weights at load: for the tile tuner and the benchmarks. With `bf16`, A and W
// hold bfloat16 (k even) and C is f32.
struct StandaloneMatmul {
  MatmulDesc matmul;
  PackDesc pack;
  std::unique_ptr<JitKernels> kernels; // functions[0]: the product, functions[1]: the packing
  // Packs `w` into `packed` (packedFloats(pack) floats); then C = A * W^T into `c`.
  void packWeights(float *packed, const void *w, float *scratch) const;
  void multiply(float *c, const void *a, const float *packed, float *scratch) const;
};
Expected<StandaloneMatmul> compileStandaloneMatmul(const Target &target, int64_t m, int64_t n,
                                                   int64_t k, bool bf16 = false);

enum class OutputKind { LlvmIr, Assembly, Object };
// The plan's kernels (and its program table when `table`) as text or an object file image.
Expected<std::string> compileToBuffer(const Plan &plan, const Target &target, bool table,
                                      OutputKind kind, CompileReport &report);

} // namespace vitc::llvmbe
