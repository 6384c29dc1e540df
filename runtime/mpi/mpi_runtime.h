// The MPI runtime: every device of a mesh is an MPI process (rank = device id).
//
// `initMpi` starts MPI and returns the world as a `ProcessGroup`, which `RunnerOptions::processes`
// takes. Collectives over a mesh axis use one communicator per (axis, group), made with
// `MPI_Comm_split` (color: the group's first device; key: the coordinate along the axis), and
// non-blocking MPI: `MPI_Iallgather`, `MPI_Ireduce_scatter_block`, `MPI_Iallreduce` (MPI_SUM), and
// `MPI_Irecv` + `MPI_Isend` for permutes. Data goes through buffers the runtime owns, so a
// collective abandoned after a failure never writes into memory its caller has freed (one extra
// copy each way). A wait polls its requests (which also drives MPI's progress), a failure notice
// from the other processes, and its timeout, sleeping between polls. The world's own calls
// (`connect`, `agree`, `gather`, `barrier`) are non-blocking MPI polled the same way, so every
// wait for another process ends at the timeout; after one such call was abandoned the process
// makes no further MPI call and does not finalize MPI (runtime/README.md says why).
//
// Sums follow MPI's algorithms, not coordinate order: they are deterministic from run to run for a
// given process count and size, and equal the thread runtime's within rounding. A link model
// delays each collective until its modeled time after this process started it, on top of the real
// transfer. Only this library includes <mpi.h>.
#pragma once

#include <memory>

#include "runtime/process_group.h"

namespace vitc::runtime {

// Initializes MPI (once per process; later calls return the same world while it is alive) and
// returns this process's place in the world. Dropping the last reference finalizes MPI.
Expected<std::shared_ptr<ProcessGroup>> initMpi(int *argc, char ***argv);

} // namespace vitc::runtime
