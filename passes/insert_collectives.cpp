// The insert-collectives pass.
#include "passes/insert_collectives.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

#include "ir/builder.h"
#include "passes/deferred_edits.h"

namespace vitc::passes {
namespace {

using ir::DimSharding;
using ir::kNoAxis;
using ir::Op;
using ir::OpKind;

class InsertCollectives : public Pass {
public:
  std::string_view name() const override { return "insert-collectives"; }

private:
  Expected<bool> rewrite(ir::Module &m, PassContext &ctx) override {
    std::vector<Op *> reshards;
    for (const auto &op : m.ops())
      if (op->is(OpKind::Reshard))
        reshards.push_back(op.get());
    std::map<std::string, int> counts;
    // New ops are created at the end and put before their reshards when all are lowered, and the
    // reshards leave then; readers are found in a users map made once. (Inserting, replacing and
    // erasing across the whole module once per reshard made deep models quadratic.)
    ir::UserMap users = m.users();
    size_t oldSize = m.size();
    OpsBefore before;
    std::unordered_set<const Op *> lowered;
    for (Op *r : reshards) {
      size_t created = m.size();
      Expected<Op *> replacement = lower(m, r, counts);
      for (size_t i = created; i < m.size(); ++i)
        before[r].push_back(m.ops()[i].get());
      if (!replacement) {
        placeAndErase(m, oldSize, before, lowered);
        return replacement.error();
      }
      for (Op *user : users[r]) {
        if (user == *replacement)
          continue;
        for (Op *&operand : user->operands)
          if (operand == r)
            operand = *replacement;
      }
      std::string name = r->name;
      Op *source = r->operand(0);
      lowered.insert(r);
      // The replaced reshard holds a name no value can have until it leaves.
      m.rename(r, name + "\x01lowered");
      if (*replacement != source && (*replacement)->name.rfind(name, 0) != 0)
        m.rename(*replacement, name);
    }
    placeAndErase(m, oldSize, before, lowered);
    if (!reshards.empty()) {
      std::string summary;
      for (const auto &[kind, n] : counts)
        summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", n, kind);
      ctx.remark(fmt::format("{} reshards -> {}", reshards.size(),
                             summary.empty() ? "nothing to move" : summary));
    }
    return !reshards.empty();
  }

  static Expected<Op *> lower(ir::Module &m, Op *r, std::map<std::string, int> &counts) {
    const ir::Sharding &to = r->type.sharding;
    Op *cur = r->operand(0);
    ir::Builder b(m);
    b.setLoc(r->loc);
    auto step = [&](OpKind kind, ir::Attrs attrs, const char *what) -> Status {
      Expected<Op *> next =
          b.tryCreate(kind, {cur}, std::move(attrs), r->operand(0)->name + "." + what);
      if (!next)
        return next.error();
      cur = *next;
      ++counts[what];
      return Status::ok();
    };
    for (int a = 0; a < static_cast<int>(m.mesh.axes.size()); ++a) {
      std::string axis = m.mesh.axes[static_cast<size_t>(a)].name;
      const ir::Sharding &from = cur->type.sharding;
      if (to.isPartial(a) && !from.isPartial(a))
        return makeError(r->loc, "'%{}': a reshard cannot create a partial sum over '{}'", r->name,
                         axis);
      if (from.isPartial(a) && !to.isPartial(a)) {
        int64_t scatterDim = -1;
        for (size_t d = 0; d < to.dims.size(); ++d)
          if (to.dims[d].axis == a && to.dims[d].rotation == 0 && from.dims[d].axis == kNoAxis)
            scatterDim = static_cast<int64_t>(d);
        if (scatterDim >= 0)
          VITC_TRY(step(OpKind::ReduceScatter, {{"mesh_axis", axis}, {"dim", scatterDim}},
                        "reduce_scatter"));
        else
          VITC_TRY(step(OpKind::AllReduce, {{"mesh_axis", axis}}, "all_reduce"));
      }
      for (size_t d = 0; d < to.dims.size(); ++d) {
        const DimSharding &have = cur->type.sharding.dims[d];
        if (have.axis == a && !(have == to.dims[d]))
          VITC_TRY(
              step(OpKind::AllGather, {{"mesh_axis", axis}, {"dim", int64_t(d)}}, "all_gather"));
      }
      for (size_t d = 0; d < to.dims.size(); ++d) {
        const DimSharding &want = to.dims[d];
        if (want.axis == a && cur->type.sharding.dims[d].axis == kNoAxis) {
          ir::Attrs attrs{{"mesh_axis", axis}, {"dim", int64_t(d)}};
          if (want.rotation)
            attrs.set("rotation", want.rotation);
          VITC_TRY(step(OpKind::AllSlice, std::move(attrs), "all_slice"));
        }
      }
    }
    if (!(cur->type == r->type))
      return makeError(r->loc, "internal error: reshard of '%{}' to {} lowered to {}",
                       r->operand(0)->name, typeString(r->type, m.mesh),
                       typeString(cur->type, m.mesh));
    return cur;
  }
};

} // namespace

std::unique_ptr<Pass> createInsertCollectives() { return std::make_unique<InsertCollectives>(); }

} // namespace vitc::passes
