// The verifier: every structural, type and sharding rule a module must satisfy.
//
// It reports every problem at once, each with the op's location (when known), its name and what
// is wrong. Passes must leave modules that verify; the pass manager checks after each pass when
// `--verify-each` is on (always in tests and debug builds).
#pragma once

#include "ir/module.h"

namespace vitc::ir {

Diagnostics verify(const Module &m);

// Runs `op`'s shape rule and reports a failure with the op's location and name.
Expected<TensorType> inferType(const Op &op, const Mesh &mesh);

// Problems with a type on its own (sharding rank, unknown axes, sizes that do not divide).
std::optional<std::string> checkType(const TensorType &t, const Mesh &mesh);

} // namespace vitc::ir
