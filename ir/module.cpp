// Module construction and editing.
#include "ir/module.h"

#include <algorithm>
#include <cassert>
#include <set>

namespace vitc::ir {

std::string Module::uniqueName(std::string hint) {
  if (hint.empty()) {
    while (names_.count(std::to_string(nextNumber_)))
      ++nextNumber_;
    hint = std::to_string(nextNumber_++);
  }
  if (!names_.count(hint))
    return hint;
  for (int64_t i = 1;; ++i) {
    std::string candidate = hint + "." + std::to_string(i);
    if (!names_.count(candidate))
      return candidate;
  }
}

Op *Module::create(OpKind kind, std::vector<Op *> operands, Attrs attrs, TensorType type,
                   std::string nameHint, Loc loc, const Op *before) {
  auto op = std::make_unique<Op>();
  op->kind = kind;
  op->operands = std::move(operands);
  op->attrs = std::move(attrs);
  op->type = std::move(type);
  op->loc = std::move(loc);
  if (op->hasResult()) {
    op->name = uniqueName(std::move(nameHint));
    names_.insert(op->name);
  }
  Op *raw = op.get();
  if (before) {
    ops_.insert(ops_.begin() + static_cast<std::ptrdiff_t>(indexOf(before)), std::move(op));
  } else {
    ops_.push_back(std::move(op));
  }
  return raw;
}

void Module::erase(Op *op) {
  size_t i = indexOf(op);
  names_.erase(op->name);
  ops_.erase(ops_.begin() + static_cast<std::ptrdiff_t>(i));
}

void Module::eraseAll(const std::unordered_set<const Op *> &dead) {
  if (dead.empty())
    return;
  for (const auto &op : ops_)
    if (dead.count(op.get()))
      names_.erase(op->name);
  std::erase_if(ops_, [&](const std::unique_ptr<Op> &op) { return dead.count(op.get()) > 0; });
}

void Module::replaceAllUsesWith(Op *from, Op *to) {
  for (auto &op : ops_) {
    if (op.get() == to)
      continue;
    for (Op *&operand : op->operands)
      if (operand == from)
        operand = to;
  }
}

void Module::reorder(const std::vector<Op *> &order) {
  assert(order.size() == ops_.size() && "reorder must keep every op");
  std::unordered_map<const Op *, std::unique_ptr<Op>> owned;
  owned.reserve(ops_.size());
  for (auto &op : ops_)
    owned[op.get()] = std::move(op);
  ops_.clear();
  for (Op *op : order) {
    auto it = owned.find(op);
    assert(it != owned.end() && it->second && "reorder names an op twice or a foreign op");
    ops_.push_back(std::move(it->second));
  }
}

void Module::topologicalSort() {
  // Kahn's algorithm, always taking the ready op that comes first in the current order.
  std::unordered_map<const Op *, size_t> position;
  position.reserve(ops_.size());
  for (size_t i = 0; i < ops_.size(); ++i)
    position[ops_[i].get()] = i;
  std::vector<size_t> pending(ops_.size(), 0);
  std::vector<std::vector<size_t>> users(ops_.size());
  for (size_t i = 0; i < ops_.size(); ++i)
    for (const Op *operand : ops_[i]->operands) {
      size_t p = position.at(operand);
      users[p].push_back(i);
      ++pending[i];
    }
  std::set<size_t> ready;
  for (size_t i = 0; i < ops_.size(); ++i)
    if (pending[i] == 0)
      ready.insert(i);
  std::vector<Op *> order;
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(ops_[i].get());
    for (size_t u : users[i])
      if (--pending[u] == 0)
        ready.insert(u);
  }
  assert(order.size() == ops_.size() && "the module has a cycle");
  reorder(order);
}

std::string Module::rename(Op *op, std::string hint) {
  names_.erase(op->name);
  op->name = uniqueName(std::move(hint));
  names_.insert(op->name);
  return op->name;
}

UserMap Module::users() const {
  UserMap map;
  map.reserve(ops_.size()); // growing it step by step cost more than filling it
  for (const auto &op : ops_)
    for (Op *operand : op->operands) {
      auto &list = map[operand];
      if (list.empty() || list.back() != op.get())
        list.push_back(op.get());
    }
  return map;
}

std::vector<Op *> Module::inputs() const {
  std::vector<Op *> out;
  for (const auto &op : ops_)
    if (op->is(OpKind::Input))
      out.push_back(op.get());
  return out;
}

std::vector<Op *> Module::params() const {
  std::vector<Op *> out;
  for (const auto &op : ops_)
    if (op->is(OpKind::Param))
      out.push_back(op.get());
  return out;
}

std::vector<size_t> Module::paramUpdates() const {
  const AttrValue *first = attrs.find(kParamUpdatesAttr);
  const Op *out = output();
  if (!first || !std::holds_alternative<int64_t>(*first) || !out)
    return {};
  size_t base = static_cast<size_t>(std::max<int64_t>(0, std::get<int64_t>(*first)));
  std::vector<Op *> ps = params();
  if (out->operands.size() != base + ps.size())
    return {};
  std::vector<size_t> indices;
  for (size_t i = 0; i < ps.size(); ++i)
    indices.push_back(base + i);
  return indices;
}

Op *Module::output() const {
  for (auto it = ops_.rbegin(); it != ops_.rend(); ++it)
    if ((*it)->is(OpKind::Output))
      return it->get();
  return nullptr;
}

Op *Module::findByName(std::string_view name) const {
  for (const auto &op : ops_)
    if (op->name == name)
      return op.get();
  return nullptr;
}

size_t Module::indexOf(const Op *op) const {
  for (size_t i = 0; i < ops_.size(); ++i)
    if (ops_[i].get() == op)
      return i;
  assert(false && "op is not in this module");
  return ops_.size();
}

std::unique_ptr<Module> Module::clone() const {
  auto m = std::make_unique<Module>();
  m->name = name;
  m->mesh = mesh;
  m->attrs = attrs;
  std::unordered_map<const Op *, Op *> map;
  for (const auto &op : ops_) {
    std::vector<Op *> operands;
    for (Op *o : op->operands)
      operands.push_back(map.at(o));
    Op *copy = m->create(op->kind, std::move(operands), op->attrs, op->type, op->name, op->loc);
    map[op.get()] = copy;
  }
  m->nextNumber_ = nextNumber_;
  return m;
}

bool equal(const Module &a, const Module &b) {
  if (a.name != b.name || !(a.mesh == b.mesh) || !(a.attrs == b.attrs) || a.size() != b.size())
    return false;
  std::unordered_map<const Op *, size_t> ia, ib;
  for (size_t i = 0; i < a.size(); ++i) {
    ia[a.ops()[i].get()] = i;
    ib[b.ops()[i].get()] = i;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const Op &x = *a.ops()[i];
    const Op &y = *b.ops()[i];
    if (x.kind != y.kind || x.name != y.name || !(x.attrs == y.attrs) ||
        x.operands.size() != y.operands.size())
      return false;
    if (x.hasResult() && !(x.type == y.type))
      return false;
    for (size_t j = 0; j < x.operands.size(); ++j)
      if (ia.at(x.operands[j]) != ib.at(y.operands[j]))
        return false;
  }
  return true;
}

size_t eraseDeadOps(Module &m) {
  // One walk from the end: users come after what they read, so by the time an op is reached every
  // op that could read it has been judged, and erasing a dead op releases its operands at once.
  // (A start op whose done op is dead is dead too.)
  const auto &ops = m.ops();
  std::unordered_map<const Op *, size_t> uses;
  uses.reserve(ops.size());
  for (const auto &op : ops)
    for (const Op *operand : op->operands)
      ++uses[operand];
  std::unordered_set<const Op *> dead;
  for (auto it = ops.rbegin(); it != ops.rend(); ++it) {
    const Op *op = it->get();
    if (!op->hasResult() || op->is(OpKind::Input) || uses[op] > 0)
      continue;
    dead.insert(op);
    for (const Op *operand : op->operands)
      --uses[operand];
  }
  m.eraseAll(dead);
  return dead.size();
}

std::unordered_set<const Op *> weightOnlyOps(const Module &m) {
  std::unordered_set<const Op *> weightOnly;
  for (const auto &op : m.ops()) {
    if (op->is(OpKind::Param)) {
      weightOnly.insert(op.get());
      continue;
    }
    if (!op->hasResult() || op->is(OpKind::Input) || op->info().has(kCollective))
      continue;
    bool all = true; // constants (no operands) are weight-only too
    for (const Op *operand : op->operands)
      all &= weightOnly.count(operand) > 0;
    if (all)
      weightOnly.insert(op.get());
  }
  return weightOnly;
}

std::unordered_set<const Op *> loadTimeOps(const Module &m) {
  std::unordered_set<const Op *> loadTime = weightOnlyOps(m);
  if (m.paramUpdates().empty())
    return loadTime;
  // A training step's params change every step, so what depends on them is computed every step
  // wherever it is placed. Computed when they are bound, an elementwise op on them (AdamW's
  // beta1 * m) would hold a copy of its operand for the program's life; in the step its buffer is
  // reused. Only what puts params in the form the kernels read (transposes, concatenations, bf16
  // copies, the backends' packed panels) is worth keeping.
  std::unordered_set<const Op *> fromParams;
  for (const auto &op : m.ops()) {
    if (!loadTime.count(op.get()))
      continue;
    bool param = op->is(OpKind::Param), inStep = false;
    for (const Op *operand : op->operands) {
      param |= fromParams.count(operand) > 0;
      // An op that reads a value computed in the step runs in the step too.
      inStep |= !loadTime.count(operand);
    }
    inStep |= param && op->info().has(kElementwise) && !op->is(OpKind::Convert);
    if (inStep)
      loadTime.erase(op.get());
    else if (param)
      fromParams.insert(op.get());
  }
  return loadTime;
}

std::unordered_set<const Op *> attentionViews(const Module &m) {
  std::unordered_set<const Op *> views;
  std::unordered_set<const Op *> weightOnly = weightOnlyOps(m);
  UserMap users = m.users();
  for (const auto &op : m.ops()) {
    if (!op->is(OpKind::Slice) || weightOnly.count(op->operand(0)) ||
        op->attrs.getInt("axis") != static_cast<int64_t>(op->type.shape.size()) - 1)
      continue;
    const std::vector<Op *> &readers = users[op.get()];
    bool onlyAttention = !readers.empty();
    for (const Op *user : readers) {
      onlyAttention &= user->is(OpKind::Attention);
      for (size_t i = 3; onlyAttention && i < user->operands.size(); ++i)
        onlyAttention &= user->operands[i] != op.get();
    }
    if (onlyAttention)
      views.insert(op.get());
  }
  return views;
}

} // namespace vitc::ir
