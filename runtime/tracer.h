// Recording what each device did and when, for a Chrome/Perfetto trace (`--trace=FILE`).
//
// A `Tracer` collects spans: a device, a track ("compute", "communication", ...), a name, and a
// start and end time on the steady clock. Communicators record every collective from the moment a
// device started it to the moment it completed on that device; programs record their compute
// (reachable as `comm.tracer()`, null when tracing is off). The trace file has one process per
// device (pid = device id, named "device N") and one thread per track; spans of one track that
// overlap without nesting (two collectives in flight at once) go to extra lanes of that track, so
// every lane nests properly. Recording is thread-safe and cheap: a lock and a vector push.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/error.h"

namespace vitc::runtime {

// Track names the runtime uses; programs may add their own.
inline constexpr std::string_view kComputeTrack = "compute";
inline constexpr std::string_view kCommunicationTrack = "communication";
inline constexpr std::string_view kProgramTrack = "program";

// Extra key/value pairs shown with a span ("bytes" = "4096").
using TraceArgs = std::vector<std::pair<std::string, std::string>>;

class Tracer {
public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // Times in the file count from `origin` (by default, when the tracer was made).
  explicit Tracer(TimePoint origin = Clock::now()) : origin_(origin) {}
  static TimePoint now() { return Clock::now(); }
  TimePoint origin() const { return origin_; }
  // Moves the origin (the MPI runtime aligns the ranks' origins after a barrier).
  void setOrigin(TimePoint origin);

  // Records one complete span. `t1` before `t0` is a bug.
  void span(int64_t device, std::string_view track, std::string name, TimePoint t0, TimePoint t1,
            TraceArgs args = {});
  size_t size() const;

  // This tracer's events as a JSON array (spans and the process/thread names), times in
  // microseconds from the origin.
  std::string eventsJson() const;
  // Writes `{"traceEvents": [...]}` through an AtomicFile.
  Status write(const std::string &path) const;
  // Writes the events of several `eventsJson()` arrays (from several processes) as one trace.
  static Status writeMerged(const std::string &path, const std::vector<std::string> &eventArrays);

private:
  struct Span {
    int64_t device;
    std::string track;
    std::string name;
    TimePoint t0, t1;
    TraceArgs args;
  };
  mutable std::mutex mu_;
  TimePoint origin_;
  std::vector<Span> spans_;
};

// Records a span from construction to destruction when `tracer` is not null.
class ScopedSpan {
public:
  ScopedSpan(Tracer *tracer, int64_t device, std::string_view track, std::string name)
      : tracer_(tracer), device_(device), track_(track), name_(std::move(name)),
        t0_(tracer ? Tracer::now() : Tracer::TimePoint{}) {}
  ~ScopedSpan() {
    if (tracer_)
      tracer_->span(device_, track_, std::move(name_), t0_, Tracer::now());
  }
  ScopedSpan(const ScopedSpan &) = delete;
  ScopedSpan &operator=(const ScopedSpan &) = delete;

private:
  Tracer *tracer_;
  int64_t device_;
  std::string track_;
  std::string name_;
  Tracer::TimePoint t0_;
};

} // namespace vitc::runtime
