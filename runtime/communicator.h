// The collectives a device can call: the one interface between compiled programs and runtimes.
//
// Every collective works over the devices that share this device's coordinates on every mesh
// axis but `axis` (its "group", k devices, ordered by their coordinate along `axis`). All devices
// of a group call the same collectives in the same order, as SPMD programs do. Calls return at once
// with a Request; buffers must stay alive and unmodified until `wait()` returns. Sums add the
// contributions in coordinate order, so results do not depend on timing.
//
// After `wait()` returns, whatever it returns, the runtime no longer touches the buffers; a Request
// destroyed without a wait leaves the collective as if it had been waited for (or abandons it, so
// that the other devices get an error instead of waiting for this one).
#pragma once

#include <cstdint>
#include <memory>

#include "program/mesh.h"
#include "support/error.h"

namespace vitc::runtime {

class Tracer;

class Request {
public:
  virtual ~Request() = default;
  // Blocks until the collective is complete on this device.
  virtual Status wait() = 0;
};

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int64_t device() const = 0;
  virtual const Mesh &mesh() const = 0;

  // recv[c*count, (c+1)*count) = what the device at coordinate c sent.
  virtual std::unique_ptr<Request> allGather(int axis, const float *send, int64_t count,
                                             float *recv) = 0;
  // recv[0, count) = sum over the group of send[c*count, (c+1)*count), c this device's coordinate.
  virtual std::unique_ptr<Request> reduceScatter(int axis, const float *send, int64_t count,
                                                 float *recv) = 0;
  // recv[0, count) = sum over the group of send[0, count).
  virtual std::unique_ptr<Request> allReduce(int axis, const float *send, int64_t count,
                                             float *recv) = 0;
  // Sends to the device at coordinate (c + shift) mod k; recv gets what (c - shift) mod k sent.
  virtual std::unique_ptr<Request> permute(int axis, int64_t shift, const float *send,
                                           int64_t count, float *recv) = 0;

  // Where programs record their compute spans (`tracer->span(device(), kComputeTrack, ...)`);
  // null when the run is not traced.
  virtual Tracer *tracer() const { return nullptr; }

  int64_t coordinate(int axis) const { return mesh().coordinate(device(), axis); }
};

} // namespace vitc::runtime
