// The LLVM backend: CPU kernels generated for each op, JIT-compiled or emitted as objects.
//
// A module (verified, and planned by plan-memory, the last pass of the pipeline: a module without
// a memory plan is refused) is lowered to calls of kernels whose shapes and attributes are all
// constants; identical kernels are generated once. Kernels are vectorized for the chosen CPU
// (AVX-512 when it has it, else AVX2), optimized at `optLevel` and either JIT-compiled with ORC
// LLJIT into an Executable (`compile`) or written as an ELF object or a standalone single-device
// executable. Nothing here exposes LLVM types.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "backends/backend.h"
#include "support/error.h"

namespace vitc::llvmbe {

// Matmul (and attention) tile sizes; 0 picks the default for the target's vector width: 8 x 48
// register tiles, kc 768, mc 160, nc 768 with AVX-512; 6 x 16, kc 256, mc 72, nc 1024 with AVX2.
// Each product balances its blocks around mc and nc (kernel_desc.h: matmulTiles).
struct Tiles {
  int64_t mr = 0; // rows of the register tile
  int64_t nr = 0; // columns of the register tile, a multiple of the vector width
  int64_t kc = 0; // depth of a cache block
  int64_t mc = 0; // rows of a cache block (rounded down to a multiple of mr)
  int64_t nc = 0; // columns of a cache block (rounded down to a multiple of nr)
};

// What compiling a module did.
struct CompileReport {
  int64_t ops = 0;           // ops in the module
  int64_t kernels = 0;       // kernel calls (at load and per run) before deduplication
  int64_t uniqueKernels = 0; // distinct kernels generated and compiled
  std::string cpu;           // the CPU compiled for
  int64_t vectorWidth = 0;   // floats per vector register used
  // How bf16 matmuls (and attention) multiply, when the module has any: "AMX tdpbf16ps tiles
  // (amx-bf16)", "vdpbf16ps (avx512bf16)" or "f32 FMAs on bf16 values (no avx512bf16)"; empty when
  // every product is f32.
  std::string bf16Kernels;
  double planSeconds = 0, codegenSeconds = 0, optimizeSeconds = 0, machineSeconds = 0;
  double seconds = 0; // all of it: module to callable machine code (or to the output file)
};

struct Options {
  int optLevel = 2;         // LLVM's O0..O3
  std::string cpu = "host"; // "host", or an LLVM CPU name: "haswell", "x86-64-v4", ...
  std::string features;     // added to the CPU's: "+avx512f,-avx512bw"
  Tiles tiles;
  // Threads each device's program splits every kernel call over (intra-op parallelism). Matmul
  // blocks are sized for this many threads, so it is part of what gets compiled.
  int threads = 1;
#ifdef NDEBUG
  bool verify = false; // run LLVM's verifier on the generated IR (always in debug builds)
#else
  bool verify = true;
#endif
  // JIT only: also write the compiled object file here (for disassembly and debugging).
  std::string saveObject;
  // Called once per compiled module, with what compiling it did.
  std::function<void(const CompileReport &)> onCompiled;
};

// Matmul tiles measured on this host: a few register tiles and cache depths timed on ViT
// projection shapes, the fastest cached as `cacheDir`/tiles-<cpu>-<width>.json (`retune` measures
// again). Takes about two seconds the first time.
Expected<Tiles> tunedTiles(const Options &options, const std::string &cacheDir,
                           bool retune = false);

// JIT-compiles the module's kernels into an executable for runtime::MeshRunner and friends. Its
// programs share the machine code; each binds its device's parameters, computes weight-only
// values and packs weights once, and allocates its workspace once.
Expected<std::shared_ptr<const runtime::Executable>> compile(const ir::Module &m,
                                                             const Options &options = {});

// What one device's program of a module holds, from its plan alone (nothing is generated): every
// param (a runner keeps them, the program the ones its run reads), the weight-only values the run
// reads (packed matmul panels, concatenated weights: a param read both by a matmul and by other
// ops, as in a training step's update, is held twice), plan-memory's workspace with the
// collectives' staging buffers, and each thread's kernel scratch.
struct ProgramMemory {
  int64_t paramBytes = 0;
  int64_t preparedBytes = 0;
  int64_t workspaceBytes = 0;
  int64_t scratchBytes = 0;
  int64_t total() const { return paramBytes + preparedBytes + workspaceBytes + scratchBytes; }
};
Expected<ProgramMemory> programMemory(const ir::Module &m, const Options &options = {});

// `compile` with these options, as a value for code that takes any backend.
backends::Compiler compiler(Options options = {});

// Checks a CPU name (Options::cpu) for this host's target before anything is compiled.
Status checkCpu(const std::string &cpu);

// The optimized LLVM IR of the module's kernels (and of the program table of an executable when
// the module runs on one device).
Expected<std::string> emitLlvmIr(const ir::Module &m, const Options &options,
                                 CompileReport *report = nullptr);
// The target assembly of the same, for inspection.
Expected<std::string> emitAssembly(const ir::Module &m, const Options &options,
                                   CompileReport *report = nullptr);
// A relocatable ELF object (position independent) with one function per kernel, plus the program
// table when the module runs on one device.
Status emitObject(const ir::Module &m, const std::string &path, const Options &options,
                  CompileReport *report = nullptr);
// A position-independent executable, linked with the system `c++` (or $VITC_CXX), that runs the
// module on one device: `PROG --weights W.safetensors --input X.npy --output Y.npy`. It links the
// runtime (backends/llvm/exe) and the C++ and GCC runtimes statically, so it needs only libc.
// Modules whose mesh has more than one device are refused.
Status emitExecutable(const ir::Module &m, const std::string &path, const Options &options,
                      CompileReport *report = nullptr);

} // namespace vitc::llvmbe
