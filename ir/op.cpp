// The op table turned into OpInfo records, and attributes.
#include "ir/op.h"

#include <algorithm>
#include <cassert>

#include "ir/gradient_rules.h"
#include "ir/shape_rules.h"

namespace vitc::ir {
namespace {

std::vector<AttrSpec> parseSchema(std::string_view schema) {
  std::vector<AttrSpec> specs;
  while (!schema.empty()) {
    size_t comma = schema.find(',');
    std::string_view item = schema.substr(0, comma);
    schema = comma == std::string_view::npos ? std::string_view{} : schema.substr(comma + 1);
    size_t colon = item.find(':');
    assert(colon != std::string_view::npos && "attribute schema entries are name:kind");
    std::string_view name = item.substr(0, colon);
    std::string_view kind = item.substr(colon + 1);
    bool optional = !name.empty() && name.back() == '?';
    if (optional)
      name.remove_suffix(1);
    AttrKind k = kind == "bool"    ? AttrKind::Bool
                 : kind == "int"   ? AttrKind::Int
                 : kind == "float" ? AttrKind::Float
                 : kind == "str"   ? AttrKind::Str
                                   : AttrKind::Ints;
    assert((k != AttrKind::Ints || kind == "ints") && "unknown attribute kind in ops.def");
    specs.push_back({name, k, optional});
  }
  return specs;
}

std::vector<OpInfo> buildTable() {
  std::vector<OpInfo> table;
#define VITC_OP(Enum, keyword, minOperands, maxOperands, schema, rule, flags, grad)                \
  table.push_back(OpInfo{OpKind::Enum, keyword, minOperands, maxOperands, parseSchema(schema),     \
                         &rule, static_cast<uint32_t>(flags), &grad});
#include "ir/ops.def"
  return table;
}

} // namespace

const std::vector<OpInfo> &allOps() {
  static const std::vector<OpInfo> table = buildTable();
  return table;
}

const OpInfo &opInfo(OpKind kind) { return allOps()[static_cast<size_t>(kind)]; }

std::optional<OpKind> opKindFromKeyword(std::string_view keyword) {
  for (const OpInfo &info : allOps())
    if (info.keyword == keyword)
      return info.kind;
  return std::nullopt;
}

OpKind syncCollectiveKind(OpKind kind) {
  assert(opInfo(kind).has(kCollective) && "not a collective");
  if (opInfo(kind).has(kAsyncStart))
    return static_cast<OpKind>(static_cast<int>(kind) - 1);
  if (opInfo(kind).has(kAsyncDone))
    return static_cast<OpKind>(static_cast<int>(kind) - 2);
  return kind;
}

OpKind asyncStartKind(OpKind sync) { return static_cast<OpKind>(static_cast<int>(sync) + 1); }
OpKind asyncDoneKind(OpKind sync) { return static_cast<OpKind>(static_cast<int>(sync) + 2); }

Attrs::Attrs(std::initializer_list<std::pair<std::string, AttrValue>> init) {
  for (const auto &[name, value] : init)
    set(name, value);
}

void Attrs::set(std::string name, AttrValue value) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const auto &e, const std::string &n) { return e.first < n; });
  if (it != entries_.end() && it->first == name) {
    it->second = std::move(value);
    return;
  }
  entries_.insert(it, {std::move(name), std::move(value)});
}

const AttrValue *Attrs::find(std::string_view name) const {
  for (const auto &e : entries_)
    if (e.first == name)
      return &e.second;
  return nullptr;
}

void Attrs::erase(std::string_view name) {
  std::erase_if(entries_, [&](const auto &e) { return e.first == name; });
}

bool Attrs::getBool(std::string_view name, bool fallback) const {
  const AttrValue *v = find(name);
  if (!v)
    return fallback;
  assert(std::holds_alternative<bool>(*v) && "attribute is not a bool");
  return std::get<bool>(*v);
}

int64_t Attrs::getInt(std::string_view name) const {
  const AttrValue *v = find(name);
  assert(v && std::holds_alternative<int64_t>(*v) && "missing int attribute");
  return std::get<int64_t>(*v);
}

double Attrs::getFloat(std::string_view name) const {
  const AttrValue *v = find(name);
  assert(v && std::holds_alternative<double>(*v) && "missing float attribute");
  return std::get<double>(*v);
}

const std::string &Attrs::getStr(std::string_view name) const {
  const AttrValue *v = find(name);
  assert(v && std::holds_alternative<std::string>(*v) && "missing string attribute");
  return std::get<std::string>(*v);
}

const std::vector<int64_t> &Attrs::getInts(std::string_view name) const {
  const AttrValue *v = find(name);
  assert(v && std::holds_alternative<std::vector<int64_t>>(*v) && "missing ints attribute");
  return std::get<std::vector<int64_t>>(*v);
}

AttrKind attrKind(const AttrValue &v) { return static_cast<AttrKind>(v.index()); }

std::string_view attrKindName(AttrKind k) {
  switch (k) {
  case AttrKind::Bool:
    return "bool";
  case AttrKind::Int:
    return "int";
  case AttrKind::Float:
    return "float";
  case AttrKind::Str:
    return "string";
  case AttrKind::Ints:
    return "list of ints";
  }
  return "?";
}

} // namespace vitc::ir
