// The program plan: a module lowered to calls of deduplicated kernels over fixed buffers.
//
// Planning decides everything a run needs before any code is generated: which kernels exist (one
// per distinct KernelDesc), which calls run once when weights load (values of parameters alone,
// and the packing of every matmul's weight into panels) and which run per forward pass, where
// each call's operands live, and how collectives map onto the communicator. Buffers are:
//   - the workspace (plan-memory's `offset`s, one allocation per device),
//   - parameters and inputs (the caller's tensors),
//   - constants (weight-only values and packed weights, computed at load),
//   - staging buffers (collectives whose send or receive layout differs from the value's).
// A reshape is a view: it names its operand's buffer. Collectives over a mesh axis of size 1 are
// copies, so single-device programs (and executables) are nothing but kernel calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/llvm/kernel_desc.h"
#include "ir/module.h"

namespace vitc::llvmbe {

enum class Storage : uint8_t { Workspace, Param, Input, Const, Staging };

// A place in one of a program's buffers: `index` picks the parameter, input, constant or staging
// buffer; `offset` is in bytes. all_slice and ring_concat address a block that depends on the
// device: when `axis` is set, the place moves by ((coordinate along axis + rotation) mod size)
// blocks of `blockBytes`.
struct BufferRef {
  Storage storage = Storage::Workspace;
  int64_t index = 0;
  int64_t offset = 0;
  int axis = -1;
  int64_t rotation = 0;
  int64_t blockBytes = 0;
  bool operator==(const BufferRef &) const = default;
  // The byte offset on `device` of `mesh`.
  int64_t offsetOn(const ir::Mesh &mesh, int64_t device) const {
    if (axis < 0)
      return offset;
    int64_t k = mesh.axisSize(axis);
    return offset + ((mesh.coordinate(device, axis) + rotation) % k + k) % k * blockBytes;
  }
};

struct KernelCall {
  int kernel = 0; // index into Plan::kernels
  std::vector<BufferRef> args;
  int64_t work = 0; // work items; a call runs [0, work)
  // Moves so little data that the calling thread does it alone: splitting it over a device's
  // threads would cost more in waking and waiting than it saves.
  bool serial = false;
  std::string opName; // for traces and errors
  std::string opKind; // the op's keyword, for traces
};

// A collective over a mesh axis of more than one device, as the interpreter does it.
struct CollectiveCall {
  enum class Phase : uint8_t { Sync, Start, Done };
  ir::OpKind kind = ir::OpKind::AllReduce; // the synchronous kind
  Phase phase = Phase::Sync;
  int axis = 0;
  int64_t groupSize = 1;
  int slot = 0; // pairs a start with its done
  // Start/sync: what is sent (after `split` when it is set) and where it is received.
  BufferRef input, send, recv;
  int64_t sendCount = 0; // floats each device contributes (all_gather) or sends
  // Done/sync: the result, assembled from `recv`.
  BufferRef result;
  int64_t resultCount = 0;
  // reduce_scatter: `input` is split into groupSize blocks along `dim` into `send` first.
  bool split = false;
  // all_gather: block c of `recv` goes to block order[c] of `result` along `dim`; when `join` is
  // false the layouts agree and the result is a plain copy.
  bool join = false;
  Shape blockShape; // operand's local shape (all_gather) or input's local shape (split)
  int64_t dim = 0;
  std::vector<int64_t> order;
  int64_t shift = 0; // collective_permute
  std::string opName;
};

struct Step {
  bool isKernel = true;
  KernelCall kernel;
  CollectiveCall collective;
};

struct NamedShape {
  std::string name;
  Shape shape; // local
};

struct Plan {
  ir::Mesh mesh;
  std::vector<KernelDesc> kernels; // distinct, in order of first use
  std::vector<std::string> keys;   // kernelKey of each
  std::vector<KernelCall> load;    // once, when weights load
  std::vector<Step> run;           // every forward pass
  std::vector<NamedShape> params, inputs;
  std::vector<int64_t> constBytes;   // size of each constant buffer
  std::vector<bool> constAfterLoad;  // whether the forward pass reads it
  std::vector<bool> paramAfterLoad;  // whether the forward pass reads the parameter itself
  std::vector<int64_t> stagingBytes; // size of each staging buffer
  std::vector<BufferRef> outputs;
  std::vector<Shape> outputShapes; // local
  int64_t workspaceBytes = 0;
  int64_t scratchBytes = 0; // the most any kernel call needs
  int numSlots = 0;         // async collectives that can be in flight
  int64_t ops = 0;          // ops in the module
  int64_t calls = 0;        // kernel calls, load and run, before deduplication
};

// Lowers a verified module that plan-memory planned; refuses one it did not plan.
Expected<Plan> planModule(const ir::Module &m, const TileConfig &tiles);

} // namespace vitc::llvmbe
