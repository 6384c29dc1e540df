// The IR module: a mesh, metadata, and one straight-line SSA program of ops.
//
// A ViT forward pass has no control flow, so the program is a single block kept in program order:
// every operand is defined before its user and the last op is `output`. Passes create, erase and
// reorder ops through this class, which keeps value names unique.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/op.h"

namespace vitc::ir {

using UserMap = std::unordered_map<const Op *, std::vector<Op *>>;

// A training step's module attribute: its outputs from this index on are the next values of its
// params, in the order of `params()` (the optimizer pass sets it).
inline constexpr std::string_view kParamUpdatesAttr = "param_updates";

class Module {
public:
  std::string name = "module";
  Mesh mesh = Mesh::single();
  Attrs attrs; // model metadata: image, patch, tokens, width, ... (informational)

  const std::vector<std::unique_ptr<Op>> &ops() const { return ops_; }
  size_t size() const { return ops_.size(); }

  // Creates an op at the end, or just before `before` when given. The name is made unique by
  // appending ".N" if needed; an empty hint gives a numbered name.
  Op *create(OpKind kind, std::vector<Op *> operands, Attrs attrs, TensorType type,
             std::string nameHint = "", Loc loc = {}, const Op *before = nullptr);
  // Removes an op nobody uses.
  void erase(Op *op);
  // Removes ops nobody outside the set uses, in one pass over the module.
  void eraseAll(const std::unordered_set<const Op *> &ops);
  // Points every use of `from` at `to` (not including uses by `to` itself).
  void replaceAllUsesWith(Op *from, Op *to);
  // Replaces the program order with `order`, which must hold exactly the module's ops.
  void reorder(const std::vector<Op *> &order);
  // Puts the ops in an order where every operand comes before its users, keeping the current
  // order wherever it already is one. Passes may create ops anywhere and then sort.
  void topologicalSort();
  // Renames an op, keeping names unique; returns the name it got.
  std::string rename(Op *op, std::string hint);

  // Each op's users, in program order.
  UserMap users() const;
  std::vector<Op *> inputs() const;
  std::vector<Op *> params() const;
  Op *output() const; // the `output` op, or nullptr while building
  // For a training step (kParamUpdatesAttr), the index among the output's operands of each
  // param's next value, in the order of `params()`; empty for any other module.
  std::vector<size_t> paramUpdates() const;
  Op *findByName(std::string_view name) const;
  // Position of `op` in program order.
  size_t indexOf(const Op *op) const;

  std::unique_ptr<Module> clone() const;

private:
  std::string uniqueName(std::string hint);

  std::vector<std::unique_ptr<Op>> ops_;
  std::unordered_set<std::string> names_;
  int64_t nextNumber_ = 0;
};

// Structural equality: same name, mesh, metadata and the same ops in the same order with the same
// names, operands, attributes and types. Locations are not compared.
bool equal(const Module &a, const Module &b);

// Removes ops whose results nobody uses (params included, inputs not). Returns how many.
size_t eraseDeadOps(Module &m);

// Ops whose value depends on parameters and constants alone.
std::unordered_set<const Op *> weightOnlyOps(const Module &m);
// The weight-only ops a program computes when its params are bound, outside the run's workspace:
// all of them, except in a training step (kParamUpdatesAttr) the elementwise ones on params and
// what reads those, which run in the step, where their buffers are reused. plan-memory, the
// backends and the analyses of memory and time agree on this set.
std::unordered_set<const Op *> loadTimeOps(const Module &m);

// Slices along the last axis of an activation that only attention reads, as its queries, keys
// or values (the q/k/v of a fused projection): strided views of their operand, never copied.
// plan-memory keeps the operand alive for them; backends read it in place.
std::unordered_set<const Op *> attentionViews(const Module &m);

} // namespace vitc::ir
