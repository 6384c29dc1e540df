// IR ops: the kind enum and per-kind facts generated from ops.def, attributes, and the Op node.
//
// Every op defines at most one value (its result), so an `Op*` is also the SSA value it defines.
// Operands point at the ops that define them; the module keeps ops in a valid program order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ir/types.h"
#include "support/error.h"

namespace vitc::ir {

enum class OpKind : uint8_t {
#define VITC_OP(Enum, keyword, minOperands, maxOperands, schema, rule, flags, grad) Enum,
#include "ir/ops.def"
};

enum OpFlags : uint32_t {
  kNoResult = 1u << 0,      // the op defines no value (output)
  kElementwise = 1u << 1,   // result element i depends only on operand elements i (broadcast)
  kDeclaredShape = 1u << 2, // the result shape is written out, not derived (input, reshape, ...)
  kCollective = 1u << 3,    // communicates between devices
  kAsyncStart = 1u << 4,    // begins a collective; its done op completes it
  kAsyncDone = 1u << 5,     // completes the collective its operand started
};

enum class AttrKind : uint8_t { Bool, Int, Float, Str, Ints };

struct AttrSpec {
  std::string_view name;
  AttrKind kind;
  bool optional;
};

class Op;
class Module;
class Builder;
using ShapeRule = Expected<TensorType> (*)(const Op &op, const Mesh &mesh);
// Builds the backward ops of `op` with `b` (its insertion point already set): from `dy`, the
// gradient of the loss with respect to op's result, the gradient with respect to each operand, one
// entry per operand (nullptr where the operand gets none: a label, an index-like operand). The
// results have the operands' types. An op without a rule returns an error saying so.
using GradRule = Expected<std::vector<Op *>> (*)(Builder &b, const Op &op, Op *dy);

struct OpInfo {
  OpKind kind;
  std::string_view keyword;
  int minOperands;
  int maxOperands; // -1: any number
  std::vector<AttrSpec> attrs;
  ShapeRule rule;
  uint32_t flags;
  GradRule grad;

  bool has(OpFlags f) const { return (flags & f) != 0; }
};

const OpInfo &opInfo(OpKind kind);
std::optional<OpKind> opKindFromKeyword(std::string_view keyword);
const std::vector<OpInfo> &allOps();
// For a collective kind (sync, start or done), the synchronous kind it belongs to.
OpKind syncCollectiveKind(OpKind kind);
// The start and done kinds of a synchronous collective.
OpKind asyncStartKind(OpKind sync);
OpKind asyncDoneKind(OpKind sync);

using AttrValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>>;

// Attributes sorted by name, so printing and comparison are deterministic.
class Attrs {
public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, AttrValue>> init);

  void set(std::string name, AttrValue value);
  bool has(std::string_view name) const { return find(name) != nullptr; }
  const AttrValue *find(std::string_view name) const;
  void erase(std::string_view name);

  // Typed getters assert that the attribute exists with that kind; the verifier checks user IR
  // against the schema before anything calls them.
  bool getBool(std::string_view name, bool fallback = false) const;
  int64_t getInt(std::string_view name) const;
  double getFloat(std::string_view name) const;
  const std::string &getStr(std::string_view name) const;
  const std::vector<int64_t> &getInts(std::string_view name) const;

  const std::vector<std::pair<std::string, AttrValue>> &entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  bool operator==(const Attrs &) const = default;

private:
  std::vector<std::pair<std::string, AttrValue>> entries_;
};

AttrKind attrKind(const AttrValue &v);
std::string_view attrKindName(AttrKind k);

class Op {
public:
  OpKind kind;
  std::string name; // the result's name, printed as %name; unique in its module
  std::vector<Op *> operands;
  Attrs attrs;
  TensorType type; // meaningless for ops flagged kNoResult
  Loc loc;         // where the user wrote what this op came from, if known

  const OpInfo &info() const { return opInfo(kind); }
  std::string_view keyword() const { return info().keyword; }
  bool is(OpKind k) const { return kind == k; }
  bool hasResult() const { return !info().has(kNoResult); }
  Op *operand(size_t i) const { return operands[i]; }
  const Shape &shape() const { return type.shape; }
  int64_t rank() const { return static_cast<int64_t>(type.shape.size()); }

  // The mesh axis an op of a collective kind works on.
  std::string_view meshAxisName() const { return attrs.getStr("mesh_axis"); }
};

} // namespace vitc::ir
