// What every backend offers: compiling a module into an Executable (runtime/program.h).
//
// Tools and tests pick a backend as a `Compiler` value (interp::compiler(), llvmbe::compiler(...)),
// compile once, and hand the executable to a runtime. A module reaches a backend verified and,
// for backends that place values in a workspace, planned by plan-memory, the last pass of the
// pipeline; backends check for the plan and never run passes themselves.
#pragma once

#include <functional>
#include <memory>

#include "ir/module.h"
#include "runtime/program.h"

namespace vitc::backends {

using Compiler = std::function<Expected<std::shared_ptr<const runtime::Executable>>(
    std::shared_ptr<const ir::Module> module)>;

} // namespace vitc::backends
