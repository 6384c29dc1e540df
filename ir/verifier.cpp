// Verification of modules.
#include "ir/verifier.h"

#include <unordered_map>
#include <unordered_set>

#include "ir/text.h"

namespace vitc::ir {
namespace {

Error opError(const Op &op, const std::string &message) {
  std::string who = op.hasResult() ? fmt::format("'%{}' ({})", op.name, op.keyword())
                                   : fmt::format("'{}'", op.keyword());
  return Error(op.loc, fmt::format("{}: {}", who, message));
}

void checkAttrs(const Op &op, Diagnostics &diags) {
  const OpInfo &info = op.info();
  for (const AttrSpec &spec : info.attrs) {
    const AttrValue *v = op.attrs.find(spec.name);
    if (!v) {
      if (!spec.optional)
        diags.add(opError(op, fmt::format("missing attribute '{}'", spec.name)));
      continue;
    }
    if (attrKind(*v) != spec.kind)
      diags.add(opError(op, fmt::format("attribute '{}' must be a {}, not a {}", spec.name,
                                        attrKindName(spec.kind), attrKindName(attrKind(*v)))));
  }
  for (const auto &[name, value] : op.attrs.entries()) {
    // plan-memory places every value it allocates: `offset` is allowed on any op with a result.
    if (name == "offset" && op.hasResult()) {
      if (attrKind(value) != AttrKind::Int || std::get<int64_t>(value) < 0)
        diags.add(opError(op, "attribute 'offset' must be a non-negative int"));
      continue;
    }
    bool known = false;
    for (const AttrSpec &spec : info.attrs)
      known |= spec.name == name;
    if (!known)
      diags.add(opError(op, fmt::format("unknown attribute '{}'", name)));
  }
}

bool attrsValid(const Op &op) {
  for (const AttrSpec &spec : op.info().attrs) {
    const AttrValue *v = op.attrs.find(spec.name);
    if ((!v && !spec.optional) || (v && attrKind(*v) != spec.kind))
      return false;
  }
  return true;
}

} // namespace

std::optional<std::string> checkType(const TensorType &t, const Mesh &mesh) {
  if (t.sharding.dims.size() != t.shape.size())
    return fmt::format("sharding has {} dimensions for a rank-{} type", t.sharding.dims.size(),
                       t.shape.size());
  int64_t bytes = dtypeBytes(t.dtype);
  for (size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] <= 0)
      return fmt::format("dimension {} has size {}", d, t.shape[d]);
    // Element counts and byte sizes are computed everywhere without checks: they must fit.
    if (__builtin_mul_overflow(bytes, t.shape[d], &bytes))
      return fmt::format("shape {} is too large: its byte size does not fit in 64 bits",
                         shapeString(t.shape));
    const DimSharding &ds = t.sharding.dims[d];
    if (ds.axis == kNoAxis)
      continue;
    if (ds.axis < 0 || ds.axis >= static_cast<int>(mesh.axes.size()))
      return fmt::format("dimension {} names mesh axis #{}, which does not exist", d, ds.axis);
    int64_t k = mesh.axisSize(ds.axis);
    if (t.shape[d] % k != 0)
      return fmt::format("dimension {} of size {} cannot be split {} ways over '{}'", d, t.shape[d],
                         k, mesh.axes[ds.axis].name);
    if (ds.rotation < 0 || ds.rotation >= k)
      return fmt::format("dimension {} has rotation {} outside [0, {})", d, ds.rotation, k);
  }
  if ((t.sharding.partial | t.sharding.manual) >> mesh.axes.size())
    return std::string("partial or manual names a mesh axis that does not exist");
  if (t.sharding.partialOverlapsDims())
    return std::string("a mesh axis both splits a dimension and is owed a sum");
  if (t.sharding.partial & t.sharding.manual)
    return std::string("a value cannot be both partial and manual over one axis");
  return std::nullopt;
}

Expected<TensorType> inferType(const Op &op, const Mesh &mesh) {
  Expected<TensorType> t = op.info().rule(op, mesh);
  if (!t)
    return opError(op, t.error().message());
  return t;
}

Diagnostics verify(const Module &m) {
  Diagnostics diags;
  std::unordered_map<const Op *, size_t> position;
  std::unordered_set<std::string> names, weightNames;
  UserMap users = m.users();
  for (size_t i = 0; i < m.ops().size(); ++i)
    position[m.ops()[i].get()] = i;

  bool sawOutput = false;
  for (size_t i = 0; i < m.ops().size(); ++i) {
    const Op &op = *m.ops()[i];
    const OpInfo &info = op.info();
    if (sawOutput)
      diags.add(opError(op, "op after 'output': output must be the last op"));
    if (op.is(OpKind::Output))
      sawOutput = true;

    int n = static_cast<int>(op.operands.size());
    if (n < info.minOperands || (info.maxOperands >= 0 && n > info.maxOperands)) {
      diags.add(opError(
          op, info.maxOperands == info.minOperands
                  ? fmt::format("takes {} operand(s), got {}", info.minOperands, n)
                  : fmt::format("takes at least {} operand(s), got {}", info.minOperands, n)));
      continue;
    }
    bool operandsOk = true;
    for (const Op *operand : op.operands) {
      auto it = position.find(operand);
      if (it == position.end() || it->second >= i || !operand->hasResult()) {
        diags.add(
            opError(op, fmt::format("operand '%{}' is not defined before its use", operand->name)));
        operandsOk = false;
      }
    }
    bool typeOk = true; // shape rules may read the declared type, so only a valid one
    if (op.hasResult()) {
      if (!names.insert(op.name).second)
        diags.add(opError(op, "value name is used twice"));
      if (auto problem = checkType(op.type, m.mesh)) {
        diags.add(opError(op, *problem));
        typeOk = false;
      }
    }
    if (op.is(OpKind::Input) || op.is(OpKind::Param)) {
      const AttrValue *name = op.attrs.find("name");
      if (name && attrKind(*name) == AttrKind::Str &&
          !weightNames.insert(std::get<std::string>(*name)).second)
        diags.add(opError(op, fmt::format("{} name \"{}\" is used twice", op.keyword(),
                                          std::get<std::string>(*name))));
    }
    checkAttrs(op, diags);
    if (info.has(kAsyncStart)) {
      auto it = users.find(&op);
      size_t count = it == users.end() ? 0 : it->second.size();
      if (count != 1 || it->second[0]->kind != asyncDoneKind(syncCollectiveKind(op.kind)))
        diags.add(
            opError(op, fmt::format("must be used by exactly one {}",
                                    opInfo(asyncDoneKind(syncCollectiveKind(op.kind))).keyword)));
    }
    if (!operandsOk || !attrsValid(op) || !op.hasResult() || !typeOk)
      continue;
    bool operandTypesOk = true;
    for (const Op *operand : op.operands)
      operandTypesOk &= !checkType(operand->type, m.mesh).has_value();
    if (!operandTypesOk)
      continue;
    Expected<TensorType> inferred = inferType(op, m.mesh);
    if (!inferred) {
      diags.add(inferred.error());
      continue;
    }
    if (!(*inferred == op.type))
      diags.add(
          opError(op, fmt::format("result type is {} but its operands give {}",
                                  typeString(op.type, m.mesh), typeString(*inferred, m.mesh))));
  }
  if (!sawOutput)
    diags.add(Error("module has no 'output' op"));
  return diags;
}

} // namespace vitc::ir
