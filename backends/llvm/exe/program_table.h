// The program table of a vitc executable: what the generated object tells its runtime.
//
// The object that emitExecutable links defines three symbols:
//   const int64_t vitc_program[];     the table described here
//   const char vitc_program_names[];  parameter and input names, back to back (no separators)
//   void (*const vitc_program_kernels[])(float *const *args, int64_t begin, int64_t end,
//                                        float *scratch);
// The table is a sequence of 64-bit words:
//   header:  magic, version, workspaceBytes, scratchBytes, numParams, numInputs, numOutputs,
//            numConsts, numLoadCalls, numRunCalls
//   params:  nameOffset, nameLength, keepAfterLoad, rank, dims[rank]
//   inputs:  nameOffset, nameLength, rank, dims[rank]
//   consts:  bytes, keepAfterLoad
//   calls:   the load calls, then the run calls: kernel, work, numArgs, then per argument
//            storage, index, byteOffset
//   outputs: storage, index, byteOffset, rank, dims[rank]
// Storage codes are those below. A call runs kernel(args, 0, work, scratch) with each argument the
// address of its buffer plus the offset. This header depends on nothing: the runtime that reads
// it is linked into executables that carry no vitc library.
#pragma once

#include <cstdint>

namespace vitc::exe {

constexpr int64_t kProgramMagic = 0x7669746370726f67; // "vitcprog"
constexpr int64_t kProgramVersion = 1;
constexpr int64_t kHeaderWords = 10;

enum StorageCode : int64_t { kWorkspace = 0, kParam = 1, kInput = 2, kConst = 3 };

using KernelFn = void (*)(float *const *args, int64_t begin, int64_t end, float *scratch);

} // namespace vitc::exe
