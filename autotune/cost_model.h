// Predicting a compiled program's step time on a target, from its IR.
//
// One device's program is simulated in its schedule order with two kinds of resource: the
// device's compute, and one link per mesh axis. Matmuls and attention cost their FLOPs at the
// target's matmul rate; other ops cost the bytes they read and write at its memory bandwidth,
// plus a launch overhead; or, when the program was profiled on this host, what each op took. A
// collective costs the link model's time (runtime/link_model.h, the
// same formulas the emulated interconnect uses): an asynchronous one occupies its axis' link from
// its start and only its done waits for it, so compute scheduled between them hides it; a
// synchronous one is waited for at once. Weight-only ops run at load and cost nothing per step.
#pragma once

#include "autotune/target.h"
#include "ir/module.h"

namespace vitc::autotune {

struct Prediction {
  double computeSeconds = 0;     // compute on one device
  double commSeconds = 0;        // communication, overlapped or not
  double exposedCommSeconds = 0; // communication compute did not hide
  double stepSeconds = 0;        // compute + exposed communication
  int64_t weightBytes = 0;       // per device, at the target's precision
  int64_t activationBytes = 0;   // per device: the plan-memory workspace, at the target's precision
  int64_t savedActivationBytes = 0; // training: what the backward pass keeps from the forward
};

// `m` must have been through the pipeline (plan-memory included). Ops that `measured` times (a
// profile of this very program, target.h: profileOps) cost what was measured.
Prediction simulate(const ir::Module &m, const Target &target, const OpSeconds *measured = nullptr);

// What an op costs on one device: FLOPs for matmuls and attention (true), else bytes it reads and
// writes (false), at `dtypeBytes` per element.
std::pair<double, bool> workOf(const ir::Op &op, const ir::Mesh &mesh, int64_t dtypeBytes);

} // namespace vitc::autotune
