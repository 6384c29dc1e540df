// The plan-memory pass.
#include "passes/plan_memory.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

constexpr int64_t kAlign = 64;

// First-fit allocator over [0, infinity) that remembers its high-water mark.
class Arena {
public:
  int64_t allocate(int64_t size) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < size)
        continue;
      int64_t at = it->first, left = it->second - size;
      free_.erase(it);
      if (left > 0)
        free_[at + size] = left;
      return at;
    }
    // Grow: reuse a free range that ends at the top.
    int64_t at = top_;
    if (!free_.empty()) {
      auto last = std::prev(free_.end());
      if (last->first + last->second == top_) {
        at = last->first;
        free_.erase(last);
      }
    }
    top_ = at + size;
    peak_ = std::max(peak_, top_);
    return at;
  }
  void release(int64_t at, int64_t size) {
    auto [it, inserted] = free_.emplace(at, size);
    // Merge with the neighbours.
    if (auto next = std::next(it); next != free_.end() && at + size == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }
  int64_t peak() const { return peak_; }

private:
  std::map<int64_t, int64_t> free_;
  int64_t top_ = 0;
  int64_t peak_ = 0;
};

class PlanMemory : public Pass {
public:
  std::string_view name() const override { return "plan-memory"; }

  Expected<bool> run(ir::Module &m, PassContext &) override {
    std::string before = snapshot(m);
    std::unordered_set<const Op *> outside = ir::weightOnlyOps(m);
    for (const Op *in : m.inputs())
      outside.insert(in);

    // Each value's storage is its own or, for a reshape, its operand's.
    std::unordered_map<const Op *, const Op *> root;
    auto rootOf = [&](const Op *op) {
      auto it = root.find(op);
      return it == root.end() ? op : it->second;
    };
    std::unordered_map<const Op *, size_t> lastUse;
    for (size_t i = 0; i < m.ops().size(); ++i) {
      const Op *op = m.ops()[i].get();
      // A reshape is a view of its operand; a done op's value is what its start received.
      if (op->is(OpKind::Reshape) || op->info().has(ir::kAsyncDone))
        root[op] = rootOf(op->operand(0));
      for (const Op *operand : op->operands)
        lastUse[rootOf(operand)] = i;
      // An async collective reads its operand and fills its result until the done op.
      if (op->info().has(ir::kAsyncDone)) {
        const Op *start = op->operand(0);
        lastUse[rootOf(start->operand(0))] = std::max(lastUse[rootOf(start->operand(0))], i);
      }
    }

    Arena arena;
    std::unordered_map<const Op *, int64_t> offset;
    std::vector<std::vector<const Op *>> freeAfter(m.ops().size());
    for (size_t i = 0; i < m.ops().size(); ++i) {
      Op *op = m.ops()[i].get();
      place(*op, i, m.mesh, outside, rootOf, lastUse, arena, offset, freeAfter);
      // Values whose last use was this op can be reused by later ones (never by this op's own
      // result, which was placed above while they were still live).
      for (const Op *dead : freeAfter[i])
        arena.release(offset.at(dead), paddedBytes(*dead, m.mesh));
    }
    m.attrs.set("workspace_bytes", arena.peak());
    return snapshot(m) != before;
  }

private:
  static int64_t paddedBytes(const Op &op, const ir::Mesh &mesh) {
    return (op.type.localBytes(mesh) + kAlign - 1) / kAlign * kAlign;
  }

  template <typename RootOf>
  static void place(Op &op, size_t i, const ir::Mesh &mesh,
                    const std::unordered_set<const Op *> &outside, RootOf rootOf,
                    const std::unordered_map<const Op *, size_t> &lastUse, Arena &arena,
                    std::unordered_map<const Op *, int64_t> &offset,
                    std::vector<std::vector<const Op *>> &freeAfter) {
    op.attrs.erase("offset");
    if (!op.hasResult() || outside.count(&op))
      return;
    const Op *r = rootOf(&op);
    if (r != &op) {
      if (offset.count(r))
        op.attrs.set("offset", offset.at(r));
      return;
    }
    int64_t at = arena.allocate(paddedBytes(op, mesh));
    offset[&op] = at;
    op.attrs.set("offset", at);
    auto it = lastUse.find(&op);
    freeAfter[it == lastUse.end() ? i : it->second].push_back(&op);
  }

  static std::string snapshot(const ir::Module &m) {
    std::string s = std::to_string(m.attrs.find("workspace_bytes") ? 1 : 0);
    for (const auto &op : m.ops())
      if (const ir::AttrValue *v = op->attrs.find("offset"))
        s += op->name + "=" + std::to_string(std::get<int64_t>(*v)) + ";";
    if (const ir::AttrValue *w = m.attrs.find("workspace_bytes"))
      s += "ws=" + std::to_string(std::get<int64_t>(*w));
    return s;
  }
};

} // namespace

std::unique_ptr<Pass> createPlanMemory() { return std::make_unique<PlanMemory>(); }

} // namespace vitc::passes
