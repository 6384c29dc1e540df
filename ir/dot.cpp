// Graphviz output.
#include "ir/dot.h"

#include <unordered_map>

#include "ir/text.h"

namespace vitc::ir {
namespace {

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out;
}

} // namespace

std::string printDot(const Module &m) {
  std::string s = fmt::format("digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, "
                              "fontname=\"monospace\", fontsize=10];\n",
                              escape(m.name));
  std::unordered_map<const Op *, size_t> id;
  for (size_t i = 0; i < m.ops().size(); ++i) {
    const Op &op = *m.ops()[i];
    id[&op] = i;
    std::string label = op.hasResult() ? fmt::format("%{}\\n{}\\n{}", escape(op.name), op.keyword(),
                                                     escape(typeString(op.type, m.mesh)))
                                       : std::string(op.keyword());
    std::string style;
    if (op.is(OpKind::Param))
      style = ", shape=ellipse, style=filled, fillcolor=\"#e8e8e8\"";
    else if (op.info().has(kCollective))
      style = ", style=filled, fillcolor=\"#ffd8a8\"";
    else if (op.is(OpKind::Input) || op.is(OpKind::Output))
      style = ", style=filled, fillcolor=\"#c8f0c8\"";
    s += fmt::format("  n{} [label=\"{}\"{}];\n", i, label, style);
  }
  for (size_t i = 0; i < m.ops().size(); ++i)
    for (const Op *operand : m.ops()[i]->operands)
      s += fmt::format("  n{} -> n{};\n", id.at(operand), i);
  s += "}\n";
  return s;
}

} // namespace vitc::ir
