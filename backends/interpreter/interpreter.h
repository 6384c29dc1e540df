// The interpreter backend: runs any verified module, sharded or not, op by op.
//
// It defines what every vitc op means; every other backend is tested against it. Values that depend
// on parameters alone are computed once, when the program is built.
#pragma once

#include "backends/backend.h"

namespace vitc::interp {

// An executable that interprets `module`: any verified module, with or without a memory plan.
// Its programs share the module.
Expected<std::shared_ptr<const runtime::Executable>>
compile(std::shared_ptr<const ir::Module> module);

// `compile`, as a value for code that takes any backend.
backends::Compiler compiler();

} // namespace vitc::interp
