// LLVM IR generation for a plan's kernels (internal to backends/llvm).
//
// `emitKernels` adds one external function per distinct kernel of a plan, named by
// `kernelSymbol`, with the signature of kernel_desc.h. `emitProgramTable` adds the data a standalone
// executable's runtime reads (exe/program_table.h). Both work on a module whose target triple,
// data layout, CPU and features are already chosen; every function carries the CPU, features and
// vector-width attributes so that JIT and AOT code generation agree.
#pragma once

#include <string>

#include "backends/llvm/plan.h"

namespace llvm {
class Module;
} // namespace llvm

namespace vitc::llvmbe {

struct CodegenTarget {
  std::string cpu;
  std::string features;
  int64_t vectorWidth = 16; // floats per vector: 16 (AVX-512), 8 (AVX) or 4
  // bf16 products: vdpbf16ps where the CPU has AVX512-BF16 (and 16-float vectors), else f32 math
  // on the bf16 values.
  bool avx512Bf16 = false;
  // bf16 products on AMX tiles (tdpbf16ps) where the CPU has AMX-BF16.
  bool amxBf16 = false;
};

std::string kernelSymbol(const Plan &plan, size_t kernel);

void emitKernels(llvm::Module &module, const Plan &plan, const CodegenTarget &target);

// For executables (single-device plans whose run is kernel calls only).
void emitProgramTable(llvm::Module &module, const Plan &plan);

} // namespace vitc::llvmbe
