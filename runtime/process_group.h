// Processes that each run one device of a mesh: what MeshRunner needs from MPI, without MPI.
//
// The MPI runtime (runtime/mpi/) implements this interface; the runner and everything else
// include only this header, so that only the MPI library itself needs the MPI headers. Every call
// marked "collective" must be made by every process, in the same order.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/communicator.h"
#include "runtime/link_model.h"
#include "runtime/tracer.h"

namespace vitc::runtime {

struct CollectiveOptions {
  LinkModel link;                            // emulated links on top of the real ones
  std::chrono::milliseconds timeout{60'000}; // how long a collective may wait
  Tracer *tracer = nullptr;                  // records every collective when set
};

class ProcessGroup {
public:
  virtual ~ProcessGroup() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;

  // Every collective below waits at most its timeout (`options.timeout` for `connect`) for the
  // other processes, then fails naming the operation, this device and the timeout. A call that
  // timed out is abandoned: from then on the processes no longer agree on errors, every later call
  // fails at once, and `abandoned()` is true.

  // Collective. The communicator of this process's device (device id = rank) on `mesh`, whose
  // device count must equal `size()`.
  virtual Expected<std::unique_ptr<Communicator>> connect(const Mesh &mesh,
                                                          const CollectiveOptions &options) = 0;
  // Collective. Every process passes how its part went; all get ok when every part succeeded,
  // otherwise all get the same error, the one at the root of the failure, as "device N: ...".
  // A failed `local` is announced at once, so that collectives other processes are waiting in
  // fail instead of hanging. On a timeout a failed `local` is returned as this device's error, so
  // that the cause, not the agreement it could not reach, is what the user sees.
  virtual Status agree(const Status &local, std::chrono::milliseconds timeout) = 0;
  // Collective. Rank 0 gets every process's bytes, in rank order; the others get nothing.
  virtual Expected<std::vector<std::string>> gather(std::string_view bytes,
                                                    std::chrono::milliseconds timeout) = 0;
  // Collective. Rank 0's `bytes`, on every process (the others' `bytes` are ignored).
  virtual Expected<std::string> broadcast(std::string_view bytes,
                                          std::chrono::milliseconds timeout) = 0;
  // Collective. The smallest of every process's `value`, on every process.
  virtual Expected<int64_t> minimum(int64_t value, std::chrono::milliseconds timeout) = 0;
  // Collective. Returns once every process has called it.
  virtual Status barrier(std::chrono::milliseconds timeout) = 0;

  // Whether a collective of this process timed out and was abandoned. Each process must then
  // report its own errors (they are no longer agreed), and should exit with a non-zero status: the
  // MPI runtime does not finalize MPI after an abandoned collective (that would wait for the
  // missing process too), and mpirun ends the job when a process exits non-zero.
  virtual bool abandoned() const = 0;
};

} // namespace vitc::runtime
