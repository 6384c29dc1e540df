// The plan-memory pass.
#include "passes/plan_memory.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

namespace vitc::passes {
namespace {

using ir::Op;
using ir::OpKind;

constexpr int64_t kAlign = 64;

// Intervals of op positions, found by the positions they share with a query: the buffers placed so
// far, asked which are live while a new one is. (Scanning every placed buffer for each new one was
// quadratic: a chain of 160k ops took 14 s.) An interval overlapping [first, last] either holds
// `first` (found on the path to `first` in a segment tree whose nodes hold the intervals that cover
// them) or begins after it (found in a map by beginning).
class LiveIntervals {
public:
  explicit LiveIntervals(size_t positions) {
    while (size_ < positions)
      size_ *= 2;
    nodes_.resize(2 * size_);
  }

  void add(size_t id, size_t first, size_t last) {
    byFirst_.emplace(first, id);
    for (size_t lo = first + size_, hi = last + size_ + 1; lo < hi; lo /= 2, hi /= 2) {
      if (lo & 1)
        nodes_[lo++].push_back(id);
      if (hi & 1)
        nodes_[--hi].push_back(id);
    }
  }

  // The ids of the intervals that share a position with [first, last], in no particular order.
  void overlapping(size_t first, size_t last, std::vector<size_t> &out) const {
    out.clear();
    for (size_t node = first + size_; node >= 1; node /= 2)
      out.insert(out.end(), nodes_[node].begin(), nodes_[node].end());
    for (auto it = byFirst_.upper_bound(first); it != byFirst_.end() && it->first <= last; ++it)
      out.push_back(it->second);
  }

private:
  size_t size_ = 1;
  std::vector<std::vector<size_t>> nodes_;
  std::multimap<size_t, size_t> byFirst_;
};

class PlanMemory : public Pass {
public:
  std::string_view name() const override { return "plan-memory"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &) override {
    std::string before = snapshot(m);
    std::unordered_set<const Op *> outside = ir::loadTimeOps(m);
    for (const Op *in : m.inputs())
      outside.insert(in);

    // Each value's storage is its own or, for a reshape, its operand's.
    std::unordered_map<const Op *, const Op *> root;
    auto rootOf = [&](const Op *op) {
      auto it = root.find(op);
      return it == root.end() ? op : it->second;
    };
    std::unordered_map<const Op *, size_t> lastUse;
    std::unordered_set<const Op *> attentionViews = ir::attentionViews(m);
    for (size_t i = 0; i < m.ops().size(); ++i) {
      const Op *op = m.ops()[i].get();
      // A reshape is a view of its operand, and so is a slice only attention reads; a done op's
      // value is what its start received.
      if (op->is(OpKind::Reshape) || attentionViews.count(op) || op->info().has(ir::kAsyncDone))
        root[op] = rootOf(op->operand(0));
      for (const Op *operand : op->operands)
        lastUse[rootOf(operand)] = i;
      // An async collective reads its operand and fills its result until the done op.
      if (op->info().has(ir::kAsyncDone)) {
        const Op *start = op->operand(0);
        lastUse[rootOf(start->operand(0))] = std::max(lastUse[rootOf(start->operand(0))], i);
      }
    }

    // One buffer per storage root, live from its definition to its last use.
    struct Buffer {
      const Op *root;
      int64_t size;
      size_t first, last;
      int64_t offset = 0;
    };
    std::vector<Buffer> buffers;
    for (size_t i = 0; i < m.ops().size(); ++i) {
      Op *op = m.ops()[i].get();
      op->attrs.erase("offset");
      if (!op->hasResult() || outside.count(op) || rootOf(op) != op)
        continue;
      auto it = lastUse.find(op);
      buffers.push_back({op, paddedBytes(*op, m.mesh), i, it == lastUse.end() ? i : it->second});
    }
    // Greedy by size: the largest buffers first, each at the lowest offset where it overlaps no
    // buffer placed already that is live at the same time.
    std::vector<size_t> order(buffers.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return buffers[a].size > buffers[b].size; });
    LiveIntervals placed(m.ops().size());
    int64_t peak = 0;
    std::vector<size_t> overlapping;
    for (size_t bi : order) {
      Buffer &b = buffers[bi];
      placed.overlapping(b.first, b.last, overlapping);
      std::vector<const Buffer *> live;
      for (size_t pi : overlapping)
        live.push_back(&buffers[pi]);
      std::sort(live.begin(), live.end(),
                [](const Buffer *x, const Buffer *y) { return x->offset < y->offset; });
      int64_t at = 0;
      for (const Buffer *p : live) {
        if (at + b.size <= p->offset)
          break;
        at = std::max(at, p->offset + p->size);
      }
      b.offset = at;
      peak = std::max(peak, at + b.size);
      placed.add(bi, b.first, b.last);
    }
    std::unordered_map<const Op *, int64_t> offset;
    for (const Buffer &b : buffers)
      offset[b.root] = b.offset;
    for (const auto &op : m.ops())
      if (op->hasResult() && !outside.count(op.get()))
        if (auto it = offset.find(rootOf(op.get())); it != offset.end())
          op->attrs.set("offset", it->second);
    m.attrs.set("workspace_bytes", peak);
    return snapshot(m) != before;
  }

  static int64_t paddedBytes(const Op &op, const ir::Mesh &mesh) {
    return (op.type.localBytes(mesh) + kAlign - 1) / kAlign * kAlign;
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
