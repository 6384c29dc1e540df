// schedule-overlap: make collectives asynchronous and give them as much work to hide behind as
// the data dependencies allow.
//
//   %x1 = collective_permute %x0           %x1.start = collective_permute_start %x0
//   %y0 = matmul %x0, %w             =>    %y0 = matmul %x0, %w
//   %y1 = matmul %x1, %w                   %x1 = collective_permute_done %x1.start
//                                          %y1 = matmul %x1, %w
//
// Every collective becomes a start/done pair. A start moves up to just after its operand is
// computed; a done moves down to just before its first user. Gathers of weights (parameters
// split over the data axis) start no earlier than the previous weight gather is done, so each
// layer's weights are fetched while the layer before runs: one layer ahead, not the whole model.
// Preconditions: a verified module with collectives. Postconditions: the same computation; every
// device issues its collectives in the same order (the program order), as SPMD requires.
// Cost: buffers of collectives in flight live longer (plan-memory accounts for it).
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createScheduleOverlap();

} // namespace vitc::passes
