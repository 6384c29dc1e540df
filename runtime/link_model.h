// An emulated interconnect: per mesh axis, a bandwidth and a latency that collectives pay.
//
// With a link model, a collective over an axis completes no earlier than its modeled time after
// it could start (when the last device of its group joined it): the thread runtime sleeps until
// that deadline instead of burning CPU, so compute placed between an async start and done really
// overlaps the emulated transfer and the overlap can be measured on one machine. Times follow the
// ring algorithms, with `count` the element count a device passes to the Communicator call, 4
// bytes each, and k the group size:
//   all_gather, reduce_scatter:  (k-1) steps of  latency + count*4 / bandwidth
//   all_reduce:                 2(k-1) steps of  latency + count*4 / (k * bandwidth)
//   collective_permute:              1 step  of  latency + count*4 / bandwidth
// A group of one device costs nothing. Axes the model does not name are free.
//
// The CLI form (`--link`) is "GBps[,latency_us]" for every axis, or per axis
// "model=GBps[,latency_us],data=GBps[,latency_us]"; a leading bare entry is the default for the
// axes not named. GB/s are 1e9 bytes per second.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "program/mesh.h"
#include "support/error.h"

namespace vitc::runtime {

// The four collectives of `Communicator`, named as the IR names their ops.
enum class CollectiveKind { AllGather, ReduceScatter, AllReduce, Permute };
std::string_view collectiveName(CollectiveKind kind);

struct Link {
  double gbps = 0;      // GB/s, which is also bytes per nanosecond; positive
  double latencyUs = 0; // per ring step; zero or more
  bool operator==(const Link &) const = default;
};

class LinkModel {
public:
  // The empty model: collectives take only as long as copying their data.
  LinkModel() = default;
  // Parses the CLI form; `loc` is where the spec came from (e.g. the flag).
  static Expected<LinkModel> parse(std::string_view spec, const Loc &loc = Loc{});

  void setDefault(Link link) { default_ = link; }
  void setAxis(const std::string &axis, Link link) { axes_[axis] = link; }
  bool empty() const { return !default_ && axes_.empty(); }
  // The link of the named axis, or null when collectives over it are free.
  const Link *link(std::string_view axis) const;
  // Fails if the model names an axis the mesh lacks.
  Status check(const Mesh &mesh, const Loc &loc = Loc{}) const;

  // How long one collective over `axis` with `k` devices takes (see the file comment).
  std::chrono::nanoseconds duration(CollectiveKind kind, std::string_view axis, int64_t k,
                                    int64_t count) const;
  // "model=10GB/s+5us, data=25GB/s"; "none" when empty.
  std::string str() const;

private:
  std::optional<Link> default_;
  std::map<std::string, Link, std::less<>> axes_;
};

} // namespace vitc::runtime
