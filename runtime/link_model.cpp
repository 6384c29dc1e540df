// Link model parsing and collective timing.
#include "runtime/link_model.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <vector>

namespace vitc::runtime {

std::string_view collectiveName(CollectiveKind kind) {
  switch (kind) {
  case CollectiveKind::AllGather:
    return "all_gather";
  case CollectiveKind::ReduceScatter:
    return "reduce_scatter";
  case CollectiveKind::AllReduce:
    return "all_reduce";
  case CollectiveKind::Permute:
    return "collective_permute";
  }
  return "?";
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

std::optional<double> parseNumber(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

bool isIdentifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_'))
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

} // namespace

Expected<LinkModel> LinkModel::parse(std::string_view spec, const Loc &loc) {
  constexpr std::string_view kForm = "GBps[,latency_us] or axis=GBps[,latency_us],...";
  if (trim(spec).empty())
    return makeError(loc, "empty link spec (expected {})", kForm);
  LinkModel model;
  // Each entry is a bandwidth, optionally named, then optionally a latency.
  std::string axis; // the axis of the entry being read; "" for the default
  Link *current = nullptr;
  bool latencyRead = false;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string_view::npos)
      comma = spec.size();
    std::string_view token = trim(spec.substr(start, comma - start));
    start = comma + 1;
    size_t eq = token.find('=');
    if (eq == std::string_view::npos && current && !latencyRead) {
      std::optional<double> latency = parseNumber(token);
      if (!latency)
        return makeError(loc, "link spec '{}': '{}' is not a latency in microseconds", spec, token);
      if (*latency < 0)
        return makeError(loc, "link spec '{}': latency must not be negative, got {}", spec, token);
      current->latencyUs = *latency;
      latencyRead = true;
      continue;
    }
    std::string_view bandwidth = token;
    axis.clear();
    if (eq != std::string_view::npos) {
      std::string_view name = trim(token.substr(0, eq));
      if (!isIdentifier(name))
        return makeError(loc, "link spec '{}': '{}' is not an axis name", spec, name);
      axis = std::string(name);
      bandwidth = trim(token.substr(eq + 1));
    } else if (current) {
      return makeError(loc, "link spec '{}': unexpected '{}' (expected {})", spec, token, kForm);
    }
    std::optional<double> gbps = parseNumber(bandwidth);
    if (!gbps)
      return makeError(loc, "link spec '{}': '{}' is not a bandwidth in GB/s", spec, bandwidth);
    if (*gbps <= 0)
      return makeError(loc, "link spec '{}': bandwidth must be positive, got {}", spec, bandwidth);
    if (axis.empty()) {
      model.default_ = Link{*gbps, 0};
      current = &*model.default_;
    } else {
      if (model.axes_.count(axis))
        return makeError(loc, "link spec '{}': axis '{}' is given twice", spec, axis);
      current = &(model.axes_[axis] = Link{*gbps, 0});
    }
    latencyRead = false;
  }
  return model;
}

const Link *LinkModel::link(std::string_view axis) const {
  auto it = axes_.find(axis);
  if (it != axes_.end())
    return &it->second;
  return default_ ? &*default_ : nullptr;
}

Status LinkModel::check(const Mesh &mesh, const Loc &loc) const {
  for (const auto &[name, link] : axes_)
    if (mesh.axisIndex(name) < 0) {
      std::string known;
      for (const MeshAxis &a : mesh.axes)
        known += (known.empty() ? "" : ", ") + a.name;
      return makeError(loc, "the link model names axis '{}', but the mesh has only {}", name,
                       known.empty() ? "no axes" : known);
    }
  return Status::ok();
}

std::chrono::nanoseconds LinkModel::duration(CollectiveKind kind, std::string_view axis, int64_t k,
                                             int64_t count) const {
  const Link *l = link(axis);
  if (!l || k <= 1)
    return std::chrono::nanoseconds(0);
  double bytes = static_cast<double>(count) * 4.0;
  double steps = 0, stepBytes = bytes;
  switch (kind) {
  case CollectiveKind::AllGather:
  case CollectiveKind::ReduceScatter:
    steps = static_cast<double>(k - 1);
    break;
  case CollectiveKind::AllReduce:
    steps = 2.0 * static_cast<double>(k - 1);
    stepBytes = bytes / static_cast<double>(k);
    break;
  case CollectiveKind::Permute:
    steps = 1;
    break;
  }
  double ns = steps * (l->latencyUs * 1e3 + stepBytes / l->gbps);
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(ns)));
}

std::string LinkModel::str() const {
  auto one = [](const Link &l) {
    std::string s = fmt::format("{}GB/s", l.gbps);
    if (l.latencyUs > 0)
      s += fmt::format("+{}us", l.latencyUs);
    return s;
  };
  std::string out;
  if (default_)
    out = one(*default_);
  for (const auto &[name, l] : axes_)
    out += (out.empty() ? "" : ", ") + name + "=" + one(l);
  return out.empty() ? "none" : out;
}

} // namespace vitc::runtime
