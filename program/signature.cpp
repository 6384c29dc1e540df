// Signatures of compiled programs.
#include "program/signature.h"

#include <algorithm>

#include <fmt/format.h>

namespace vitc {

const TensorSpec *Signature::param(const std::string &name) const {
  for (const TensorSpec &p : params)
    if (p.name == name)
      return &p;
  return nullptr;
}

std::string Signature::str() const {
  std::string out = fmt::format("mesh    {}\n", mesh.str());
  size_t width = 0; // of the longest name, so that the types line up
  for (const auto *specs : {&params, &inputs, &outputs})
    for (const TensorSpec &s : *specs)
      width = std::max(width, s.name.size());
  auto list = [&](const char *kind, const std::vector<TensorSpec> &specs) {
    for (const TensorSpec &s : specs)
      out += fmt::format("{:<7} {:<{}}  {}\n", kind, s.name, width, s.typeString(mesh));
  };
  list("param", params);
  list("input", inputs);
  list("output", outputs);
  return out;
}

} // namespace vitc
