// One-device collectives: copies.
#include "runtime/single_device.h"

#include <cassert>
#include <cstring>

namespace vitc::runtime {
namespace {

class DoneRequest : public Request {
public:
  Status wait() override { return Status::ok(); }
};

std::unique_ptr<Request> copy(const Mesh &mesh, int axis, const float *send, int64_t count,
                              float *recv) {
  assert(mesh.axisSize(axis) == 1 && "a one-device communicator on a larger mesh");
  if (send != recv)
    std::memmove(recv, send, static_cast<size_t>(count) * sizeof(float));
  return std::make_unique<DoneRequest>();
}

} // namespace

std::unique_ptr<Request> SingleDeviceCommunicator::allGather(int axis, const float *send,
                                                             int64_t count, float *recv) {
  return copy(mesh_, axis, send, count, recv);
}
std::unique_ptr<Request> SingleDeviceCommunicator::reduceScatter(int axis, const float *send,
                                                                 int64_t count, float *recv) {
  return copy(mesh_, axis, send, count, recv);
}
std::unique_ptr<Request> SingleDeviceCommunicator::allReduce(int axis, const float *send,
                                                             int64_t count, float *recv) {
  return copy(mesh_, axis, send, count, recv);
}
std::unique_ptr<Request> SingleDeviceCommunicator::permute(int axis, int64_t, const float *send,
                                                           int64_t count, float *recv) {
  return copy(mesh_, axis, send, count, recv);
}

} // namespace vitc::runtime
