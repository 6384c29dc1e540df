// The signature of a module: what a compiled program of it takes and returns (program/signature.h).
#pragma once

#include "ir/module.h"
#include "program/signature.h"

namespace vitc::ir {

// The mesh, every `param` and `input` under its `name` attribute, in program order, and every
// operand of `output` under its value name, each with its type's shape, element type and sharding.
Signature signatureOf(const Module &m);

} // namespace vitc::ir
