// What a backend produces and a runtime runs: an Executable, and the DeviceProgram it makes for
// each device.
//
// A backend compiles a planned module once into an Executable: its generated code (or, for the
// interpreter, the module itself) and its Signature (program/signature.h), which is all a runtime
// knows of it. The runtime cuts the global parameters into each device's blocks from the
// signature and asks the executable for that device's program. A program computes everything that
// depends on parameters alone once, when it is made (concatenated fused weights, packed panels,
// ...), and then runs the forward pass as many times as asked.
#pragma once

#include <memory>
#include <vector>

#include "program/signature.h"
#include "runtime/communicator.h"
#include "support/tensor.h"

namespace vitc::runtime {

class DeviceProgram {
public:
  virtual ~DeviceProgram() = default;
  // `inputs` are this device's blocks of the signature's inputs, in order; returns its blocks of
  // the outputs.
  virtual Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs,
                                            Communicator &comm) = 0;
  // Replaces the parameters (same order and block shapes as at instantiate) and recomputes what
  // depends on them alone, keeping the rest (workspace, threads): a training loop calls it
  // between steps.
  virtual Status setParams(std::vector<Tensor> params) = 0;

  // A training step's two halves, so that its update need not hold the params twice. runStep runs
  // like run(), except that the outputs from `firstUpdate` on (the params' next values, laid out
  // as the params) may be views of the program's own memory, valid until it runs again or commits
  // them. commitStep makes those values its params, writing them over the old ones where no one
  // else holds the old ones' memory, and returns the params it now holds (the caller keeps them
  // only until the next commit, or the writes cannot be in place). A caller that finds a value
  // non-finite does not commit: the params stay as they were.
  virtual Expected<std::vector<Tensor>> runStep(const std::vector<Tensor> &inputs,
                                                Communicator &comm, size_t firstUpdate) {
    return run(inputs, comm);
  }
  virtual Expected<std::vector<Tensor>> commitStep(const std::vector<Tensor> &next) {
    VITC_TRY(setParams(next));
    return next;
  }

  // What this device holds: its prepared weights (what remains of the parameters once the
  // weight-only ops ran) and the most its activations took during the last run.
  struct Memory {
    int64_t weightBytes = 0;
    int64_t activationPeakBytes = 0;
  };
  virtual Memory memory() const { return {}; }
};

class Executable {
public:
  virtual ~Executable() = default;
  virtual const Signature &signature() const = 0;
  // The program of `device`, from its blocks of the parameters (in the order of
  // `signature().params`, each of its block shape). Safe to call for several devices at once.
  virtual Expected<std::unique_ptr<DeviceProgram>>
  instantiate(int64_t device, std::vector<Tensor> params) const = 0;
};

} // namespace vitc::runtime
