// plan-memory: give every intermediate value a place in one workspace per device.
//
//   %h = fused_linear %x, %w ... : f32[1,197,3072]     %h = fused_linear ... {offset = 0}
//   %y = fused_linear %h, %v ... : f32[1,197,768]  =>  %y = fused_linear ... {offset = 2420736}
//   %r = reshape %y : f32[197,768]                     %r = reshape %y {offset = 2420736}
//   module @m ...                                      module @m attributes {workspace_bytes = ...}
//
// Values are placed first-fit, in program order, into a free list of 64-byte-aligned ranges; a
// range is free again after the value's last use. A reshape is a view: it shares its operand's
// place and keeps it alive. An async collective's operand and result stay alive until its done op.
// Inputs, parameters and values computed from parameters alone are not in the workspace (the
// program owns them). Preconditions: a verified module; no pass changes the program after this
// one. Postconditions: every workspace value has `offset`, no two values live at the same time
// overlap, and the module has `workspace_bytes` (the peak, per device). Cost: none at run time;
// a run allocates the workspace once.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createPlanMemory();

} // namespace vitc::passes
