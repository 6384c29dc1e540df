// Read-only facts about a module: parameter counts, FLOPs, and memory per device.
//
// FLOPs are model FLOPs: 2 x the multiply-adds of every matmul (projections, attention scores and
// attention x values), from global shapes, so they do not change when a module is sharded or its
// linears are fused. Memory is per device, from local shapes: the prepared weights (what remains
// after everything that depends on parameters alone is computed at load time) and the peak of live
// activations in program order.
#pragma once

#include <cstdint>
#include <unordered_set>

#include "ir/module.h"

namespace vitc::passes {

struct ModuleStats {
  int64_t batch = 1;
  int64_t params = 0;     // elements of every parameter
  int64_t headParams = 0; // elements of parameters flagged head (pooling head, classifier)
  double flops = 0;       // for the whole batch
  int64_t weightBytesPerDevice = 0;
  int64_t activationPeakBytesPerDevice = 0;
  int64_t matmuls = 0;
};

ModuleStats analyze(const ir::Module &m);

// 2 * M * N * K * batch for a matmul op, from global shapes.
double matmulFlops(const ir::Op &op);

} // namespace vitc::passes
