// Printing modules as text.
#include <cctype>
#include <charconv>

#include "ir/text.h"

namespace vitc::ir {

std::string printAttrValue(const AttrValue &v) {
  switch (attrKind(v)) {
  case AttrKind::Bool:
    return std::get<bool>(v) ? "true" : "false";
  case AttrKind::Int:
    return std::to_string(std::get<int64_t>(v));
  case AttrKind::Float: {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, std::get<double>(v));
    std::string s(buf, end);
    // Keep floats recognizable as floats when they happen to be whole numbers.
    if (s.find_first_of(".eEn") == std::string::npos)
      s += ".0";
    return s;
  }
  case AttrKind::Str: {
    std::string s = "\"";
    for (char c : std::get<std::string>(v)) {
      if (c == '"' || c == '\\')
        s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    return s + "\"";
  }
  case AttrKind::Ints: {
    std::string s = "[";
    const auto &list = std::get<std::vector<int64_t>>(v);
    for (size_t i = 0; i < list.size(); ++i)
      s += (i ? ", " : "") + std::to_string(list[i]);
    return s + "]";
  }
  }
  return "?";
}

std::string valueName(std::string_view name) {
  std::string out(name);
  for (char &c : out)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      c = '_';
  return out;
}

namespace {

std::string printAttrs(const Attrs &attrs) {
  if (attrs.empty())
    return "";
  std::string s = "{";
  bool first = true;
  for (const auto &[name, value] : attrs.entries()) {
    s += first ? "" : ", ";
    first = false;
    s += name + " = " + printAttrValue(value);
  }
  return s + "}";
}

} // namespace

std::string printOp(const Op &op, const Mesh &mesh) {
  std::string s;
  if (op.hasResult())
    s += "%" + op.name + " = ";
  s += op.keyword();
  for (size_t i = 0; i < op.operands.size(); ++i)
    s += (i ? ", %" : " %") + op.operands[i]->name;
  if (!op.attrs.empty())
    s += " " + printAttrs(op.attrs);
  if (op.hasResult())
    s += " : " + typeString(op.type, mesh);
  return s;
}

std::string print(const Module &m) {
  std::string s = "module @" + m.name;
  s += " mesh(";
  for (size_t i = 0; i < m.mesh.axes.size(); ++i)
    s += fmt::format("{}{}={}", i ? ", " : "", m.mesh.axes[i].name, m.mesh.axes[i].size);
  s += ")";
  if (!m.attrs.empty())
    s += " attributes " + printAttrs(m.attrs);
  s += " {\n";
  for (const auto &op : m.ops())
    s += "  " + printOp(*op, m.mesh) + "\n";
  s += "}\n";
  return s;
}

} // namespace vitc::ir
