// Parameter, FLOP and memory accounting.
#include "passes/analysis.h"

#include <unordered_map>

namespace vitc::passes {

using ir::Op;
using ir::OpKind;

double matmulFlops(const Op &op) {
  const ir::Shape &out = op.shape();
  const ir::Shape &a = op.operand(0)->shape();
  return 2.0 * static_cast<double>(numElements(out)) * static_cast<double>(a.back());
}

ModuleStats analyze(const ir::Module &m) {
  ModuleStats s;
  if (const ir::AttrValue *b = m.attrs.find("batch"); b && std::holds_alternative<int64_t>(*b))
    s.batch = std::get<int64_t>(*b);
  else if (auto inputs = m.inputs(); !inputs.empty() && inputs[0]->rank() > 0)
    s.batch = inputs[0]->shape()[0];

  std::unordered_set<const Op *> weightOnly = ir::loadTimeOps(m);
  ir::UserMap users = m.users();
  std::unordered_map<const Op *, size_t> lastUse;
  for (size_t i = 0; i < m.ops().size(); ++i)
    for (const Op *operand : m.ops()[i]->operands)
      lastUse[operand] = i;

  int64_t live = 0;
  std::vector<std::vector<const Op *>> freeAt(m.ops().size());
  for (size_t i = 0; i < m.ops().size(); ++i) {
    const Op &op = *m.ops()[i];
    if (op.is(OpKind::Param)) {
      s.params += op.type.numel();
      if (op.attrs.getBool("head"))
        s.headParams += op.type.numel();
    }
    if (op.is(OpKind::MatMul)) {
      s.flops += matmulFlops(op);
      ++s.matmuls;
    }
    if (!op.hasResult())
      continue;
    int64_t bytes = op.type.localBytes(m.mesh);
    if (weightOnly.count(&op)) {
      // A prepared weight is kept if something outside the weight-only part reads it.
      bool feedsCompute = false;
      if (auto it = users.find(&op); it != users.end())
        for (const Op *u : it->second)
          feedsCompute |= !weightOnly.count(u);
      if (feedsCompute)
        s.weightBytesPerDevice += bytes;
      continue;
    }
    live += bytes;
    s.activationPeakBytesPerDevice = std::max(s.activationPeakBytesPerDevice, live);
    auto it = lastUse.find(&op);
    size_t until = it == lastUse.end() ? i : it->second;
    freeAt[until].push_back(&op);
    for (const Op *dead : freeAt[i])
      live -= dead->type.localBytes(m.mesh);
  }
  // After plan-memory, the workspace is what a run really allocates for activations.
  if (const ir::AttrValue *w = m.attrs.find("workspace_bytes");
      w && std::holds_alternative<int64_t>(*w))
    s.activationPeakBytesPerDevice = std::get<int64_t>(*w);
  return s;
}

} // namespace vitc::passes
