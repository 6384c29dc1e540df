// Span recording and the Chrome trace writer.
#include "runtime/tracer.h"

#include <algorithm>
#include <cassert>
#include <map>

#include <nlohmann/json.hpp>

#include "support/files.h"

namespace vitc::runtime {
namespace {

using nlohmann::json;

// Known tracks first, in this order; others after them by name.
int trackRank(const std::string &track) {
  if (track == kComputeTrack)
    return 0;
  if (track == kCommunicationTrack)
    return 1;
  if (track == kProgramTrack)
    return 2;
  return 3;
}

double micros(Tracer::TimePoint t, Tracer::TimePoint origin) {
  return std::chrono::duration<double, std::micro>(t - origin).count();
}

// Assigns each span of one track a lane such that the spans of a lane either follow each other or
// nest, as Chrome's "X" events must. Spans come sorted by start, longer first on ties.
template <typename SpanT> std::vector<int> assignLanes(const std::vector<const SpanT *> &spans) {
  std::vector<std::vector<Tracer::TimePoint>> open; // per lane, the ends of the enclosing spans
  std::vector<int> lanes;
  for (const SpanT *s : spans) {
    size_t lane = 0;
    for (; lane < open.size(); ++lane) {
      std::vector<Tracer::TimePoint> &stack = open[lane];
      while (!stack.empty() && stack.back() <= s->t0)
        stack.pop_back();
      if (stack.empty() || s->t1 <= stack.back())
        break;
    }
    if (lane == open.size())
      open.emplace_back();
    open[lane].push_back(s->t1);
    lanes.push_back(static_cast<int>(lane));
  }
  return lanes;
}

} // namespace

void Tracer::setOrigin(TimePoint origin) {
  std::lock_guard<std::mutex> lock(mu_);
  origin_ = origin;
}

void Tracer::span(int64_t device, std::string_view track, std::string name, TimePoint t0,
                  TimePoint t1, TraceArgs args) {
  assert(t0 <= t1 && "a span that ends before it starts");
  std::lock_guard<std::mutex> lock(mu_);
  spans_.push_back(Span{device, std::string(track), std::move(name), t0, t1, std::move(args)});
}

size_t Tracer::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return spans_.size();
}

std::string Tracer::eventsJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  // Group by device, then track.
  std::map<int64_t, std::map<std::pair<int, std::string>, std::vector<const Span *>>> byDevice;
  for (const Span &s : spans_)
    byDevice[s.device][{trackRank(s.track), s.track}].push_back(&s);
  json events = json::array();
  for (auto &[device, tracks] : byDevice) {
    events.push_back({{"name", "process_name"},
                      {"ph", "M"},
                      {"pid", device},
                      {"args", {{"name", fmt::format("device {}", device)}}}});
    events.push_back({{"name", "process_sort_index"},
                      {"ph", "M"},
                      {"pid", device},
                      {"args", {{"sort_index", device}}}});
    int nextTid = 1;
    for (auto &[key, spans] : tracks) {
      const std::string &track = key.second;
      std::stable_sort(spans.begin(), spans.end(), [](const Span *a, const Span *b) {
        return a->t0 != b->t0 ? a->t0 < b->t0 : a->t1 > b->t1;
      });
      std::vector<int> lanes = assignLanes(spans);
      int laneCount = lanes.empty() ? 0 : *std::max_element(lanes.begin(), lanes.end()) + 1;
      int firstTid = nextTid;
      nextTid += laneCount;
      for (int lane = 0; lane < laneCount; ++lane) {
        std::string name = lane == 0 ? track : fmt::format("{} #{}", track, lane + 1);
        events.push_back({{"name", "thread_name"},
                          {"ph", "M"},
                          {"pid", device},
                          {"tid", firstTid + lane},
                          {"args", {{"name", name}}}});
        events.push_back({{"name", "thread_sort_index"},
                          {"ph", "M"},
                          {"pid", device},
                          {"tid", firstTid + lane},
                          {"args", {{"sort_index", firstTid + lane}}}});
      }
      for (size_t i = 0; i < spans.size(); ++i) {
        const Span &s = *spans[i];
        json args = json::object();
        for (const auto &[k, v] : s.args)
          args[k] = v;
        events.push_back({{"name", s.name},
                          {"cat", s.track},
                          {"ph", "X"},
                          {"pid", device},
                          {"tid", firstTid + lanes[i]},
                          {"ts", micros(s.t0, origin_)},
                          {"dur", micros(s.t1, s.t0)},
                          {"args", args}});
      }
    }
  }
  return events.dump();
}

Status Tracer::write(const std::string &path) const { return writeMerged(path, {eventsJson()}); }

Status Tracer::writeMerged(const std::string &path, const std::vector<std::string> &eventArrays) {
  // One event per line: small enough to diff, and readable by every trace viewer.
  std::string out = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [";
  bool first = true;
  for (const std::string &text : eventArrays) {
    json events = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!events.is_array())
      return makeError(Loc::inFile(path), "trace events from a process are not a json array");
    for (const json &e : events) {
      out += first ? "\n" : ",\n";
      out += e.dump();
      first = false;
    }
  }
  out += "\n]}\n";
  return writeFileAtomically(path, out);
}

} // namespace vitc::runtime
