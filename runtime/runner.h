// Runs an executable on every device of its mesh and returns whole outputs.
//
// The runner cuts global parameters and inputs into each device's blocks as the executable's
// signature lays them out, makes each device's program, runs the devices, and assembles the
// outputs. Two runtimes:
// - threads (the default): every device is a thread of this process (runtime/thread_mesh.h); the
//   runner builds every device's program and returns the outputs.
// - processes (MPI, runtime/mpi/mpi_runtime.h): every device is a process, device id = rank; each
//   process builds only its own program, every process passes the same global inputs, and rank 0
//   gathers the output blocks and returns the outputs while the other ranks return an empty list
//   (`isWriter()` says which process should write files).
// If a device fails, `run` fails on every process with the error at the root ("device N: ...")
// and no device hangs. A runner whose run failed under MPI refuses further runs.
#pragma once

#include <chrono>
#include <optional>

#include "runtime/link_model.h"
#include "runtime/process_group.h"
#include "runtime/program.h"
#include "runtime/tracer.h"

namespace vitc::runtime {

class ThreadMesh;

struct RunnerOptions {
  // Set (from `initMpi`) to run one device per process; unset runs every device as a thread.
  std::shared_ptr<ProcessGroup> processes;
  LinkModel link;                                      // emulated interconnect; empty: none
  std::chrono::milliseconds collectiveTimeout{60'000}; // a collective missing devices fails then
  bool trace = false;                                  // record spans for `writeTrace`
};

class MeshRunner {
public:
  // `params` are the global parameter values, in the order of the signature's params
  // (frontend/formats/bind.h binds them by name). Under MPI this is collective and every process
  // passes the same values.
  static Expected<std::unique_ptr<MeshRunner>> create(std::shared_ptr<const Executable> executable,
                                                      const std::vector<Tensor> &params,
                                                      RunnerOptions options = {});
  ~MeshRunner();

  // `inputs` are the global input values, in the order of the signature's inputs. Returns the
  // global outputs, or an empty list on processes that are not the writer. Collective under MPI.
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs);
  // Replaces the global parameters (in the order of the signature's params, as `create` takes
  // them): each device's program gets its blocks. A training loop calls it between steps.
  // Collective under MPI: every process passes the same values and sets its own device's.
  Status setParams(const std::vector<Tensor> &params);

  // A training step: runs an executable whose outputs from `firstUpdate` on are the next values
  // of its params, in their order, each laid out as its param (the sharding passes keep them so),
  // and gives each device its own blocks of them as its params for the next step: no parameter
  // leaves its device. If any output holds a NaN or an infinity, nothing is replaced and
  // `nonFinite` says which output (the first). `outputs` are the outputs before `firstUpdate`
  // (the loss), whole, on the writer. Collective under MPI.
  struct StepResult {
    std::vector<Tensor> outputs;
    std::optional<size_t> nonFinite;
  };
  Expected<StepResult> step(const std::vector<Tensor> &inputs, size_t firstUpdate);
  // The global value of every parameter as the devices hold them now, in the signature's order;
  // on processes that are not the writer, empty unless `everywhere`. Collective under MPI.
  Expected<std::vector<Tensor>> params(bool everywhere = false);

  // Whether this process gets the outputs and should write files: always with threads, rank 0
  // under MPI.
  bool isWriter() const;
  // What each device's program holds, by device (under MPI, only this process's device).
  std::vector<DeviceProgram::Memory> memory() const {
    std::vector<DeviceProgram::Memory> out;
    for (const auto &p : programs_)
      if (p)
        out.push_back(p->memory());
    return out;
  }
  // Where to record extra spans; null unless `options.trace`.
  Tracer *tracer() { return tracer_.get(); }
  // Writes every device's spans as a Chrome/Perfetto trace. Collective under MPI: rank 0 writes
  // the file, the other ranks send it their spans.
  Status writeTrace(const std::string &path);

private:
  MeshRunner() = default;
  // Every device's output blocks (under MPI, this process's device's only).
  // Every device's blocks of the outputs; for a training step (`firstUpdate` given), the params'
  // next values are the programs' views of them (DeviceProgram::runStep).
  Expected<std::vector<std::vector<Tensor>>>
  runDevices(const std::vector<Tensor> &inputs, std::optional<size_t> firstUpdate = std::nullopt);
  // The global tensors of `specs` from each device's blocks (`blocks`, by device; under MPI this
  // process's only, gathered on rank 0; the other ranks get an empty list).
  Expected<std::vector<Tensor>> assembleAll(const std::vector<std::vector<Tensor>> &blocks,
                                            const std::vector<TensorSpec> &specs);

  std::shared_ptr<const Executable> executable_;
  RunnerOptions options_;
  std::unique_ptr<Tracer> tracer_;
  std::vector<std::unique_ptr<DeviceProgram>> programs_; // by device; only its own under MPI
  std::vector<std::vector<Tensor>> paramBlocks_;         // each program's parameters, likewise
  std::unique_ptr<ThreadMesh> threads_;
  std::unique_ptr<Communicator> comm_; // this process's device, under MPI
  bool poisoned_ = false;
};

} // namespace vitc::runtime
