// The thread runtime: every device of a mesh is a thread of this process.
//
// Collectives meet in a mailbox keyed by (axis, group, sequence number): each device's call posts
// its send and receive buffers and returns a Request at once. When the last member of the group
// has posted, helper threads (the "copy engine", standing in for DMA engines) move and sum the
// data for every member, summing in coordinate order, and mark the collective complete; a member's
// `wait()` only sleeps until then. So a device that has started a collective computes while its
// data moves, and a request completes whether or not its device is waiting for it.
//
// With a link model, completion is further held back until the modeled time of the collective has
// passed since the last member joined; collectives over one group's link run one after another on
// it, collectives over different axes or groups in parallel. Waiting sleeps, it never spins.
//
// Failures never hang: `run` marks the mesh failed as soon as one device's body returns an error,
// and collectives still gathering then return errors on every device; a collective that gathers
// longer than the timeout, or that misses a device which already finished, fails naming the
// devices that never arrived. The error `run` returns names the device at the root of it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "runtime/communicator.h"
#include "runtime/link_model.h"
#include "runtime/tracer.h"

namespace vitc::runtime {

struct ThreadMeshOptions {
  LinkModel link;                            // empty: collectives cost only their copies
  std::chrono::milliseconds timeout{60'000}; // how long a collective may wait for members
  Tracer *tracer = nullptr;                  // records every collective when set
  int copyThreads = 0;                       // 0: min(4, hardware threads)
};

class ThreadMesh {
public:
  explicit ThreadMesh(Mesh mesh, ThreadMeshOptions options = {});
  ~ThreadMesh();
  ThreadMesh(const ThreadMesh &) = delete;
  ThreadMesh &operator=(const ThreadMesh &) = delete;

  const Mesh &mesh() const;
  // The communicator of one device. Requests must not outlive the ThreadMesh.
  Communicator &communicator(int64_t device);

  // Runs `body` for every device at once, one thread each, after a `reset()`. Returns the error
  // at the root of a failure as "device N: ...", or ok when every body succeeded.
  using DeviceBody = std::function<Status(int64_t device, Communicator &comm)>;
  Status run(const DeviceBody &body);

  // For callers that run the devices themselves: a device's body failed (collectives still
  // gathering fail on every device), or returned (collectives it never joined fail).
  void fail(int64_t device, const Error &error);
  void finish(int64_t device);
  // Forgets every collective, failure and finished device: sequence numbers start again from
  // zero. Only between runs, with no request alive.
  void reset();

  struct State;

private:
  std::unique_ptr<State> state_;
};

} // namespace vitc::runtime
