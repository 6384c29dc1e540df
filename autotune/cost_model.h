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
// A profile also says what a step took on this host beyond its ops (Profile::hostSeconds): that
// is added, in proportion to the bytes the step moves besides its kernels (hostBytes).
#pragma once

#include "autotune/target.h"
#include "ir/module.h"

namespace vitc::autotune {

struct Prediction {
  double computeSeconds = 0;     // compute on one device
  double commSeconds = 0;        // communication, overlapped or not
  double exposedCommSeconds = 0; // communication compute did not hide
  double hostSeconds = 0;        // profiled on this host: the step's wall time beyond its ops
  double stepSeconds = 0;        // compute + exposed communication + host
  int64_t weightBytes = 0;       // per device, at the target's precision
  int64_t activationBytes = 0;   // per device: the plan-memory workspace, at the target's precision
  int64_t savedActivationBytes = 0; // training: what the backward pass keeps from the forward
};

// `m` must have been through the pipeline (plan-memory included). Ops that `measured` times (a
// profile of this very program, target.h: profileProgram) cost what was measured, and its host
// time is added.
Prediction simulate(const ir::Module &m, const Target &target, const Profile *measured = nullptr);

// The bytes a step of `m` moves on this host besides its kernels, summed over the devices: each
// device's outputs, which it copies out of its workspace (a training step's are the next params,
// which the runner then checks for NaNs and each device packs again for its kernels, device after
// device), and what its collectives send (the thread runtime's copy engine adds them up). The host
// time of a step grows with them: with the params a training step updates, with the activations
// a model-parallel layout exchanges.
int64_t hostBytes(const ir::Module &m);

// What an op costs on one device: FLOPs for matmuls and attention (true), else bytes it reads and
// writes (false), at `dtypeBytes` per element.
std::pair<double, bool> workOf(const ir::Op &op, const ir::Mesh &mesh, int64_t dtypeBytes);

} // namespace vitc::autotune
