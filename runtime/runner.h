// Runs a module on every device of its mesh and returns whole outputs.
//
// The runner cuts global parameters and inputs into each device's blocks, builds each device's
// program with the backend's factory, runs them (one thread per device for meshes larger than
// one), and assembles the outputs.
#pragma once

#include "runtime/program.h"

namespace vitc::runtime {

class MeshRunner {
public:
  // `params` are the global parameter values, in the order of `module->params()`.
  static Expected<std::unique_ptr<MeshRunner>> create(std::shared_ptr<const ir::Module> module,
                                                      const ProgramFactory &factory,
                                                      const std::vector<Tensor> &params);
  // `inputs` are the global input values, in the order of `module->inputs()`.
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs);

private:
  std::shared_ptr<const ir::Module> module_;
  std::vector<std::unique_ptr<DeviceProgram>> programs_;
};

} // namespace vitc::runtime
