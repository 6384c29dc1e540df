// The step-time simulation.
#include "autotune/cost_model.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "passes/analysis.h"

namespace vitc::autotune {
namespace {

using ir::Op;
using ir::OpKind;

// FLOPs of one op on one device (local shapes), 0 for non-arithmetic-heavy ops.
double localFlops(const Op &op, const ir::Mesh &mesh) {
  switch (op.kind) {
  case OpKind::MatMul:
  case OpKind::FusedLinear: {
    ir::Shape out = op.type.localShape(mesh);
    ir::Shape a = op.operand(0)->type.localShape(mesh);
    return 2.0 * static_cast<double>(numElements(out)) * static_cast<double>(a.back());
  }
  case OpKind::Attention: {
    ir::Shape q = op.operand(0)->type.localShape(mesh);
    ir::Shape k = op.operand(1)->type.localShape(mesh);
    // Scores and values: 2 x (B Tq Tk D) multiply-adds each, D the local features.
    return 4.0 * static_cast<double>(q[0]) * static_cast<double>(q[1]) * static_cast<double>(k[1]) *
           static_cast<double>(q[2]);
  }
  default:
    return 0;
  }
}

// Bytes an op reads and writes (local), for ops that move data.
double localBytes(const Op &op, const ir::Mesh &mesh, int64_t dtypeBytes) {
  if (op.is(OpKind::Reshape) || op.is(OpKind::ToManual) || op.is(OpKind::FromManual))
    return 0; // views
  double elements = static_cast<double>(numElements(op.type.localShape(mesh)));
  for (const Op *o : op.operands)
    elements += static_cast<double>(numElements(o->type.localShape(mesh)));
  return elements * static_cast<double>(dtypeBytes);
}

} // namespace

std::pair<double, bool> workOf(const Op &op, const ir::Mesh &mesh, int64_t dtypeBytes) {
  double flops = localFlops(op, mesh);
  if (flops > 0)
    return {flops, true};
  return {localBytes(op, mesh, dtypeBytes), false};
}

namespace {

runtime::CollectiveKind collectiveKind(OpKind sync) {
  switch (sync) {
  case OpKind::AllGather:
    return runtime::CollectiveKind::AllGather;
  case OpKind::ReduceScatter:
    return runtime::CollectiveKind::ReduceScatter;
  case OpKind::AllReduce:
    return runtime::CollectiveKind::AllReduce;
  default:
    return runtime::CollectiveKind::Permute;
  }
}

// The element count a device hands the communicator for this collective (see interpreter.cpp).
int64_t collectiveCount(const Op &op, const ir::Mesh &mesh) {
  OpKind sync = ir::syncCollectiveKind(op.kind);
  const ir::TensorType &in = op.operand(0)->type;
  if (sync == OpKind::ReduceScatter)
    return numElements(op.type.localShape(mesh));
  return numElements(in.localShape(mesh));
}

} // namespace

int64_t hostBytes(const ir::Module &m) {
  int64_t perDevice = 0;
  for (const auto &op : m.ops()) {
    if (op->is(OpKind::Output))
      for (const Op *o : op->operands)
        perDevice += o->type.localBytes(m.mesh);
    if (op->info().has(ir::kCollective) && !op->info().has(ir::kAsyncDone))
      perDevice += collectiveCount(*op, m.mesh) * 4;
  }
  return perDevice * m.mesh.numDevices();
}

Prediction simulate(const ir::Module &m, const Target &target, const Profile *profile) {
  const OpSeconds *measured = profile ? &profile->ops : nullptr;
  Prediction p;
  int64_t devices = m.mesh.numDevices();
  double flopsRate = target.effectiveFlops(devices);
  double bandwidth = target.effectiveBandwidth(devices);
  double scale = static_cast<double>(target.dtypeBytes) / 4.0; // the IR counts f32
  // What a program computes when its params are bound is not part of a run.
  std::unordered_set<const Op *> weightOnly = ir::loadTimeOps(m);

  double now = 0;
  std::map<int, double> linkFree; // per mesh axis: when its link is idle again
  std::unordered_map<const Op *, double> arrives;
  for (const auto &owned : m.ops()) {
    const Op &op = *owned;
    if (weightOnly.count(&op) || op.is(OpKind::Input) || op.is(OpKind::Output))
      continue;
    if (op.info().has(ir::kCollective)) {
      if (op.info().has(ir::kAsyncDone)) {
        double at = arrives.at(op.operand(0));
        p.exposedCommSeconds += std::max(0.0, at - now);
        now = std::max(now, at);
        continue;
      }
      int axis = m.mesh.axisIndex(op.meshAxisName());
      std::chrono::nanoseconds d = target.links.duration(
          collectiveKind(ir::syncCollectiveKind(op.kind)), op.meshAxisName(), m.mesh.axisSize(axis),
          static_cast<int64_t>(static_cast<double>(collectiveCount(op, m.mesh)) * scale));
      double seconds = static_cast<double>(d.count()) * 1e-9;
      p.commSeconds += seconds;
      double begin = std::max(now, linkFree[axis]);
      double end = begin + seconds;
      linkFree[axis] = end;
      if (op.info().has(ir::kAsyncStart)) {
        arrives[&op] = end;
      } else {
        p.exposedCommSeconds += end - now;
        now = end;
      }
      continue;
    }
    auto [work, isFlops] = workOf(op, m.mesh, target.dtypeBytes);
    double seconds = 0;
    if (auto it = measured ? measured->find(op.name) : OpSeconds::const_iterator();
        measured && it != measured->end()) {
      seconds = it->second;
    } else if (auto it = target.secondsPerUnit.find(std::string(op.keyword()));
               it != target.secondsPerUnit.end()) {
      // Measured on this model; devices sharing a core run proportionally slower.
      seconds = work * it->second * (target.effectiveFlops(1) / flopsRate);
    } else if (work > 0) {
      seconds = (isFlops ? work / flopsRate : work / bandwidth) + target.opOverheadSeconds;
    }
    p.computeSeconds += seconds;
    now += seconds;
  }
  // The profiled program's host time, scaled to this program's bytes (the search profiles the
  // two-layer program and predicts the one-layer one with it too).
  if (profile && profile->hostBytes > 0)
    p.hostSeconds = profile->hostSeconds * static_cast<double>(hostBytes(m)) /
                    static_cast<double>(profile->hostBytes);
  else if (profile)
    p.hostSeconds = profile->hostSeconds;
  p.stepSeconds = now + p.hostSeconds;
  passes::ModuleStats stats = passes::analyze(m);
  p.weightBytes = static_cast<int64_t>(static_cast<double>(stats.weightBytesPerDevice) * scale);
  p.activationBytes =
      static_cast<int64_t>(static_cast<double>(stats.activationPeakBytesPerDevice) * scale);
  // Without rematerialization, the backward pass keeps what the forward pass's arithmetic read:
  // the inputs of matmuls, attention, normalization and nonlinearities, each value once. (A
  // collective-matmul ring reads the blocks of what an all-gather would have made whole: the
  // total is the same with and without it.)
  std::unordered_set<const Op *> saved;
  for (const auto &op : m.ops()) {
    bool arithmetic = op->is(OpKind::MatMul) || op->is(OpKind::FusedLinear) ||
                      op->is(OpKind::Attention) || op->is(OpKind::LayerNorm) ||
                      op->is(OpKind::Gelu) || op->is(OpKind::Softmax);
    if (!arithmetic)
      continue;
    for (const Op *operand : op->operands)
      if (!weightOnly.count(operand) && saved.insert(operand).second)
        p.savedActivationBytes += operand->type.localBytes(m.mesh);
  }
  p.savedActivationBytes =
      static_cast<int64_t>(static_cast<double>(p.savedActivationBytes) * scale);
  return p;
}

} // namespace vitc::autotune
