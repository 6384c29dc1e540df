// The schedule-overlap pass.
#include "passes/schedule_overlap.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

class ScheduleOverlap : public Pass {
public:
  std::string_view name() const override { return "schedule-overlap"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    bool changed = splitCollectives(m);
    std::string before;
    for (const auto &op : m.ops())
      before += op->name + ";";
    reorder(m);
    std::string after;
    for (const auto &op : m.ops())
      after += op->name + ";";
    changed |= before != after;
    if (changed) {
      int pairs = 0;
      for (const auto &op : m.ops())
        pairs += op->info().has(ir::kAsyncStart);
      ctx.remark(fmt::format("{} asynchronous collectives", pairs));
    }
    return changed;
  }

  // Every synchronous collective -> start + done.
  static bool splitCollectives(ir::Module &m) {
    std::vector<Op *> sync;
    for (const auto &op : m.ops())
      if (op->info().has(ir::kCollective) && !op->info().has(ir::kAsyncStart) &&
          !op->info().has(ir::kAsyncDone))
        sync.push_back(op.get());
    if (sync.empty())
      return false;
    // Start and done are created at the end and put in place of the collective when all are
    // split; readers are found in a users map made once. (Inserting, replacing and erasing across
    // the whole module once per collective made deep models quadratic.)
    ir::UserMap users = m.users();
    size_t oldSize = m.size();
    std::unordered_map<const Op *, std::pair<Op *, Op *>> split;
    std::unordered_set<const Op *> replaced;
    ir::Builder b(m);
    for (Op *op : sync) {
      b.setLoc(op->loc);
      Op *start =
          b.create(ir::asyncStartKind(op->kind), op->operands, op->attrs, op->name + ".start");
      Op *done = b.create(ir::asyncDoneKind(op->kind), {start}, {}, op->name + ".done");
      for (Op *user : users[op])
        for (Op *&operand : user->operands)
          if (operand == op)
            operand = done;
      split[op] = {start, done};
      replaced.insert(op);
      std::string name = op->name;
      m.rename(op, name + "\x01split"); // a name no value can have, until it leaves
      m.rename(done, name);
    }
    std::vector<Op *> order;
    order.reserve(m.size());
    for (size_t i = 0; i < oldSize; ++i) {
      Op *op = m.ops()[i].get();
      if (auto it = split.find(op); it != split.end()) {
        order.push_back(it->second.first);
        order.push_back(it->second.second);
      }
      order.push_back(op);
    }
    m.reorder(order);
    m.eraseAll(replaced);
    return true;
  }

  // A list schedule: among the ops ready to go, starts go first and dones last; everything else
  // keeps its program order.
  static void reorder(ir::Module &m) {
    std::unordered_set<const Op *> weightOnly = ir::weightOnlyOps(m);
    std::unordered_map<const Op *, size_t> position;
    for (size_t i = 0; i < m.ops().size(); ++i)
      position[m.ops()[i].get()] = i;
    ir::UserMap users = m.users();
    std::unordered_map<const Op *, size_t> waiting;
    for (const auto &op : m.ops())
      waiting[op.get()] = 0;
    for (const auto &op : m.ops())
      waiting[op.get()] += op->operands.size();
    // A weight gather waits for the done of the weight gather before it.
    std::unordered_map<const Op *, const Op *> gateOf;
    const Op *lastWeightDone = nullptr;
    for (const auto &op : m.ops()) {
      if (!op->info().has(ir::kAsyncStart) || !weightOnly.count(op->operand(0)))
        continue;
      if (lastWeightDone) {
        gateOf[op.get()] = lastWeightDone;
        ++waiting[op.get()];
      }
      lastWeightDone = users.at(op.get())[0];
    }
    std::unordered_map<const Op *, std::vector<const Op *>> gated;
    for (const auto &[start, gate] : gateOf)
      gated[gate].push_back(start);

    auto rank = [&](const Op *op) {
      // Starts first, dones last, others in program order.
      int cls = op->info().has(ir::kAsyncStart) ? 0 : op->info().has(ir::kAsyncDone) ? 2 : 1;
      return std::make_pair(cls, position.at(op));
    };
    auto cmp = [&](const Op *a, const Op *b) { return rank(a) > rank(b); };
    std::vector<const Op *> ready;
    for (const auto &op : m.ops())
      if (waiting[op.get()] == 0)
        ready.push_back(op.get());
    std::make_heap(ready.begin(), ready.end(), cmp);
    std::vector<Op *> order;
    while (!ready.empty()) {
      std::pop_heap(ready.begin(), ready.end(), cmp);
      const Op *op = ready.back();
      ready.pop_back();
      // A done is only taken when nothing but dones is ready; then the one started first.
      order.push_back(const_cast<Op *>(op));
      auto release = [&](const Op *u) {
        if (--waiting[u] == 0) {
          ready.push_back(u);
          std::push_heap(ready.begin(), ready.end(), cmp);
        }
      };
      if (auto it = users.find(op); it != users.end())
        for (const Op *u : it->second)
          for (const Op *operand : u->operands)
            if (operand == op)
              release(u);
      if (auto it = gated.find(op); it != gated.end())
        for (const Op *start : it->second)
          release(start);
    }
    m.reorder(order);
  }
};

} // namespace

std::unique_ptr<Pass> createScheduleOverlap() { return std::make_unique<ScheduleOverlap>(); }

} // namespace vitc::passes
