// The trivial communicator of a one-device mesh: every group has one member.
#pragma once

#include "runtime/communicator.h"

namespace vitc::runtime {

class SingleDeviceCommunicator : public Communicator {
public:
  explicit SingleDeviceCommunicator(Mesh mesh) : mesh_(std::move(mesh)) {}
  int64_t device() const override { return 0; }
  const Mesh &mesh() const override { return mesh_; }
  std::unique_ptr<Request> allGather(int axis, const float *send, int64_t count,
                                     float *recv) override;
  std::unique_ptr<Request> reduceScatter(int axis, const float *send, int64_t count,
                                         float *recv) override;
  std::unique_ptr<Request> allReduce(int axis, const float *send, int64_t count,
                                     float *recv) override;
  std::unique_ptr<Request> permute(int axis, int64_t shift, const float *send, int64_t count,
                                   float *recv) override;

private:
  Mesh mesh_;
};

} // namespace vitc::runtime
