// The interpreter backend: runs any verified module, sharded or not, op by op.
//
// It defines what every vitc op means; every other backend is tested against it. Values that depend
// on parameters alone are computed once, when the program is built.
#pragma once

#include "runtime/program.h"

namespace vitc::interp {

Expected<std::unique_ptr<runtime::DeviceProgram>>
createInterpreter(std::shared_ptr<const ir::Module> module, int64_t device,
                  std::vector<Tensor> params);

// The factory runtimes use to build interpreter programs.
runtime::ProgramFactory interpreterFactory();

} // namespace vitc::interp
