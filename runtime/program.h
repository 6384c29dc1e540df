// What a backend produces for one device and a runtime runs: a DeviceProgram.
//
// A program is built from a verified module and that device's blocks of the parameters (in the
// order of `Module::params()`). It computes everything that depends on parameters alone once, when
// it is built (concatenated fused weights, reshaped patch kernels, ...), and then runs the forward
// pass as many times as asked.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "ir/module.h"
#include "runtime/communicator.h"
#include "support/tensor.h"

namespace vitc::runtime {

class DeviceProgram {
public:
  virtual ~DeviceProgram() = default;
  // `inputs` are this device's blocks of the module's inputs, in order; returns its blocks of the
  // outputs.
  virtual Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs,
                                            Communicator &comm) = 0;

  // What this device holds: its prepared weights (what remains of the parameters once the
  // weight-only ops ran) and the most its activations took during the last run.
  struct Memory {
    int64_t weightBytes = 0;
    int64_t activationPeakBytes = 0;
  };
  virtual Memory memory() const { return {}; }
};

// Builds one device's program. Backends provide one of these.
using ProgramFactory = std::function<Expected<std::unique_ptr<DeviceProgram>>(
    std::shared_ptr<const ir::Module> module, int64_t device, std::vector<Tensor> params)>;

} // namespace vitc::runtime
