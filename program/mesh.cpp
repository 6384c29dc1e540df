// Element types, meshes and shardings.
#include "program/mesh.h"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace vitc {

std::string_view dtypeName(DType t) {
  switch (t) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  }
  return "?";
}

std::optional<DType> parseDType(std::string_view s) {
  if (s == "f32")
    return DType::F32;
  if (s == "bf16")
    return DType::BF16;
  return std::nullopt;
}

int64_t dtypeBytes(DType t) { return t == DType::F32 ? 4 : 2; }

int64_t Mesh::numDevices() const {
  int64_t n = 1;
  for (const MeshAxis &a : axes)
    n *= a.size;
  return n;
}

int Mesh::axisIndex(std::string_view name) const {
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i].name == name)
      return static_cast<int>(i);
  return -1;
}

int64_t Mesh::coordinate(int64_t device, int axis) const {
  int64_t stride = 1;
  for (size_t i = axes.size(); i-- > static_cast<size_t>(axis) + 1;)
    stride *= axes[i].size;
  return (device / stride) % axisSize(axis);
}

int64_t Mesh::withCoordinate(int64_t device, int axis, int64_t coord) const {
  int64_t stride = 1;
  for (size_t i = axes.size(); i-- > static_cast<size_t>(axis) + 1;)
    stride *= axes[i].size;
  return device + (coord - coordinate(device, axis)) * stride;
}

std::string Mesh::str() const {
  std::string out;
  for (const MeshAxis &a : axes) {
    if (!out.empty())
      out += ", ";
    out += fmt::format("{}={}", a.name, a.size);
  }
  return out;
}

Expected<Mesh> parseMesh(std::string_view text, const Loc &loc) {
  // As in IR text: more devices than any machine has; the limit keeps device ids from overflow.
  constexpr int64_t kMaxDevices = int64_t{1} << 24;
  Mesh mesh;
  int64_t devices = 1;
  size_t pos = 0;
  auto skipSpace = [&] {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos])))
      ++pos;
  };
  while (true) {
    skipSpace();
    size_t start = pos;
    while (pos < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_'))
      ++pos;
    std::string name(text.substr(start, pos - start));
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
      return makeError(loc, "bad mesh '{}': expected an axis name like 'data=2,model=4'", text);
    skipSpace();
    if (pos >= text.size() || text[pos] != '=')
      return makeError(loc, "bad mesh '{}': expected '=' after axis '{}'", text, name);
    ++pos;
    skipSpace();
    int64_t size = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), size);
    if (ec != std::errc() || size <= 0)
      return makeError(loc, "bad mesh '{}': axis '{}' needs a positive size", text, name);
    if (size > kMaxDevices / devices)
      return makeError(loc, "bad mesh '{}': more than {} devices", text, kMaxDevices);
    devices *= size;
    pos = static_cast<size_t>(end - text.data());
    if (mesh.axisIndex(name) >= 0)
      return makeError(loc, "bad mesh '{}': axis '{}' appears twice", text, name);
    mesh.axes.push_back({name, size});
    skipSpace();
    if (pos == text.size())
      break;
    if (text[pos] != ',')
      return makeError(loc, "bad mesh '{}': expected ',' between axes", text);
    ++pos;
  }
  if (mesh.axes.size() > 8)
    return makeError(loc, "bad mesh '{}': at most 8 axes", text);
  return mesh;
}

bool Sharding::isReplicated() const {
  if (partial != 0 || manual != 0)
    return false;
  for (const DimSharding &d : dims)
    if (d.axis != kNoAxis)
      return false;
  return true;
}

bool Sharding::partialOverlapsDims() const {
  for (const DimSharding &d : dims)
    if (d.axis != kNoAxis && isPartial(d.axis))
      return true;
  return false;
}

Shape Sharding::localShape(const Shape &shape, const Mesh &mesh) const {
  Shape local = shape;
  for (size_t d = 0; d < local.size(); ++d) {
    int axis = dimAxis(d);
    if (axis != kNoAxis)
      local[d] /= mesh.axisSize(axis);
  }
  return local;
}

int64_t Sharding::blockIndex(size_t d, const Mesh &mesh, int64_t device) const {
  int axis = dimAxis(d);
  if (axis == kNoAxis)
    return 0;
  int64_t k = mesh.axisSize(axis);
  return (mesh.coordinate(device, axis) + dims[d].rotation % k + k) % k;
}

std::string typeString(DType dtype, const Shape &shape, const Sharding &sharding,
                       const Mesh &mesh) {
  std::string out(dtypeName(dtype));
  out += '[';
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d)
      out += ',';
    out += std::to_string(shape[d]);
    int axis = sharding.dimAxis(d);
    if (axis == kNoAxis)
      continue;
    out += '@';
    out += axis < static_cast<int>(mesh.axes.size()) ? mesh.axes[axis].name
                                                     : fmt::format("axis{}", axis);
    int64_t rot = sharding.dims[d].rotation;
    if (rot != 0)
      out += fmt::format("{:+d}", rot);
  }
  out += ']';
  auto axisList = [&](const char *what, uint32_t bits) {
    if (!bits)
      return;
    out += fmt::format(" {}(", what);
    bool first = true;
    for (size_t a = 0; a < 32; ++a) {
      if (!((bits >> a) & 1u))
        continue;
      if (!first)
        out += ',';
      first = false;
      out += a < mesh.axes.size() ? mesh.axes[a].name : fmt::format("axis{}", a);
    }
    out += ')';
  };
  axisList("partial", sharding.partial);
  axisList("manual", sharding.manual);
  return out;
}

} // namespace vitc
