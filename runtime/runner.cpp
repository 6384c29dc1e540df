// Running an executable over its mesh, on threads or on MPI processes.
#include "runtime/runner.h"

#include <cassert>
#include <cmath>
#include <cstring>

#include "runtime/blocks.h"
#include "runtime/thread_mesh.h"

namespace vitc::runtime {
namespace {

// "1 process", "2 processes".
std::string count(int64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : noun.ends_with('s') ? "es" : "s");
}

// Each tensor's block on `device`.
std::vector<Tensor> blocksOf(const std::vector<Tensor> &global,
                             const std::vector<TensorSpec> &specs, const Mesh &mesh,
                             int64_t device) {
  std::vector<Tensor> local;
  for (size_t i = 0; i < global.size(); ++i)
    local.push_back(blockOf(global[i], specs[i], mesh, device));
  return local;
}

// Checks that a device's program returned one block of the right shape per output.
Status checkOutputs(const Signature &sig, const std::vector<Tensor> &outs) {
  if (outs.size() != sig.outputs.size())
    return makeError(Loc{}, "the program returned {}, the signature has {}",
                     count(static_cast<int64_t>(outs.size()), "output"), sig.outputs.size());
  for (size_t i = 0; i < outs.size(); ++i) {
    Shape local = sig.outputs[i].localShape(sig.mesh);
    if (outs[i].shape() != local)
      return makeError(Loc{}, "output {} has shape {}, expected the block shape {}", i,
                       shapeString(outs[i].shape()), shapeString(local));
  }
  return Status::ok();
}

Status checkTensors(const char *what, const std::vector<TensorSpec> &specs,
                    const std::vector<Tensor> &values) {
  if (values.size() != specs.size())
    return makeError(Loc{}, "{} for a program that takes {}",
                     count(static_cast<int64_t>(values.size()), std::string(what) + " tensor"),
                     specs.size());
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i].shape() != specs[i].shape)
      return makeError(Loc{}, "{} '{}' has shape {}, the program takes {}", what, specs[i].name,
                       shapeString(values[i].shape()), shapeString(specs[i].shape));
  return Status::ok();
}

} // namespace

MeshRunner::~MeshRunner() = default;

Expected<std::unique_ptr<MeshRunner>>
MeshRunner::create(std::shared_ptr<const Executable> executable, const std::vector<Tensor> &params,
                   RunnerOptions options) {
  auto runner = std::unique_ptr<MeshRunner>(new MeshRunner());
  const Signature &sig = executable->signature();
  const Mesh &mesh = sig.mesh;
  VITC_TRY(checkTensors("parameter", sig.params, params));
  VITC_TRY(options.link.check(mesh));
  runner->executable_ = executable;
  runner->options_ = std::move(options);
  const RunnerOptions &opts = runner->options_;
  if (opts.trace)
    runner->tracer_ = std::make_unique<Tracer>();

  if (!opts.processes) {
    ThreadMeshOptions threadOptions;
    threadOptions.link = opts.link;
    threadOptions.timeout = opts.collectiveTimeout;
    threadOptions.tracer = runner->tracer_.get();
    runner->threads_ = std::make_unique<ThreadMesh>(mesh, std::move(threadOptions));
    for (int64_t device = 0; device < mesh.numDevices(); ++device) {
      std::vector<Tensor> blocks = blocksOf(params, sig.params, mesh, device);
      Expected<std::unique_ptr<DeviceProgram>> program = executable->instantiate(device, blocks);
      if (!program)
        return makeError(program.error().loc(), "device {}: {}", device, program.error().message());
      runner->programs_.push_back(program.take());
      runner->paramBlocks_.push_back(std::move(blocks));
    }
    return runner;
  }

  ProcessGroup &group = *opts.processes;
  if (group.size() != mesh.numDevices())
    return makeError(Loc{}, "the mesh ({}) has {} but MPI started {}: run with mpirun -np {}",
                     mesh.str(), count(mesh.numDevices(), "device"), count(group.size(), "process"),
                     mesh.numDevices());
  CollectiveOptions commOptions;
  commOptions.link = opts.link;
  commOptions.timeout = opts.collectiveTimeout;
  commOptions.tracer = runner->tracer_.get();
  VITC_ASSIGN(runner->comm_, group.connect(mesh, commOptions));
  if (runner->tracer_) {
    // Line the processes' clocks up on a common instant.
    VITC_TRY(group.barrier(opts.collectiveTimeout));
    runner->tracer_->setOrigin(Tracer::now());
  }
  int64_t device = group.rank();
  std::vector<Tensor> blocks = blocksOf(params, sig.params, mesh, device);
  Expected<std::unique_ptr<DeviceProgram>> program = executable->instantiate(device, blocks);
  Status built = program ? Status::ok() : Status(program.error());
  VITC_TRY(group.agree(built, opts.collectiveTimeout));
  runner->programs_.push_back(program.take());
  runner->paramBlocks_.push_back(std::move(blocks));
  return runner;
}

Status MeshRunner::setParams(const std::vector<Tensor> &params) {
  const Signature &sig = executable_->signature();
  VITC_TRY(checkTensors("parameter", sig.params, params));
  if (poisoned_)
    return makeError(Loc{}, "an earlier run on this mesh failed; its processes cannot run again");
  auto setDevice = [&](int64_t device, size_t slot) -> Status {
    std::vector<Tensor> blocks = blocksOf(params, sig.params, sig.mesh, device);
    Status s = programs_[slot]->setParams(blocks);
    if (!s)
      return makeError(s.error().loc(), "device {}: {}", device, s.error().message());
    paramBlocks_[slot] = std::move(blocks);
    return Status::ok();
  };
  if (!options_.processes) {
    for (size_t device = 0; device < programs_.size(); ++device)
      VITC_TRY(setDevice(static_cast<int64_t>(device), device));
    return Status::ok();
  }
  // Every process learns whether every device took its parameters, so none runs with old ones.
  ProcessGroup &group = *options_.processes;
  Status set = setDevice(group.rank(), 0);
  return group.agree(set, options_.collectiveTimeout);
}

Expected<MeshRunner::StepResult> MeshRunner::step(const std::vector<Tensor> &inputs,
                                                  size_t firstUpdate) {
  const Signature &sig = executable_->signature();
  if (firstUpdate + sig.params.size() != sig.outputs.size())
    return makeError(Loc{},
                     "a training step outputs the params' next values last: {} outputs "
                     "from #{} for {} params",
                     sig.outputs.size(), firstUpdate, sig.params.size());
  for (size_t i = 0; i < sig.params.size(); ++i) {
    const TensorSpec &p = sig.params[i], &next = sig.outputs[firstUpdate + i];
    if (next.shape != p.shape || !(next.sharding == p.sharding))
      return makeError(Loc{}, "the next value of '{}' is {}, unlike the param ({})", p.name,
                       next.typeString(sig.mesh), p.typeString(sig.mesh));
  }
  VITC_TRY(checkTensors("input", sig.inputs, inputs));
  if (poisoned_)
    return makeError(Loc{}, "an earlier run on this mesh failed; its processes cannot run again");
  VITC_ASSIGN(std::vector<std::vector<Tensor>> blocks, runDevices(inputs, firstUpdate));
  // The first output with a NaN or an infinity on any device, agreed by every process.
  auto firstNonFinite = [&](const std::vector<Tensor> &outs) -> int64_t {
    for (size_t i = 0; i < outs.size(); ++i)
      for (int64_t j = 0; j < outs[i].numel(); ++j)
        if (!std::isfinite(outs[i].data()[j]))
          return static_cast<int64_t>(i);
    return static_cast<int64_t>(outs.size());
  };
  int64_t bad = static_cast<int64_t>(sig.outputs.size());
  for (const std::vector<Tensor> &outs : blocks)
    bad = std::min(bad, firstNonFinite(outs));
  if (options_.processes) {
    Expected<int64_t> agreed = options_.processes->minimum(bad, options_.collectiveTimeout);
    if (!agreed) {
      poisoned_ = true;
      return agreed.error();
    }
    bad = *agreed;
  }
  StepResult result;
  std::vector<std::vector<Tensor>> kept(blocks.size());
  for (size_t d = 0; d < blocks.size(); ++d)
    kept[d].assign(blocks[d].begin(), blocks[d].begin() + static_cast<std::ptrdiff_t>(firstUpdate));
  std::vector<TensorSpec> keptSpecs(sig.outputs.begin(),
                                    sig.outputs.begin() + static_cast<std::ptrdiff_t>(firstUpdate));
  VITC_ASSIGN(result.outputs, assembleAll(kept, keptSpecs));
  if (bad < static_cast<int64_t>(sig.outputs.size())) {
    result.nonFinite = static_cast<size_t>(bad);
    return result;
  }
  Status set = Status::ok();
  for (size_t d = 0; d < blocks.size() && set; ++d) {
    std::vector<Tensor> next(blocks[d].begin() + static_cast<std::ptrdiff_t>(firstUpdate),
                             blocks[d].end());
    int64_t device = options_.processes ? options_.processes->rank() : static_cast<int64_t>(d);
    // The runner lets go of the old params first, so that the program may write over them.
    paramBlocks_[d].clear();
    Expected<std::vector<Tensor>> held = programs_[d]->commitStep(next);
    if (!held) {
      poisoned_ = true; // its params are gone with the failed update
      set = makeError(held.error().loc(), "device {}: {}", device, held.error().message());
    } else {
      paramBlocks_[d] = held.take();
    }
  }
  if (options_.processes)
    set = options_.processes->agree(set, options_.collectiveTimeout);
  if (!set)
    return set.error();
  return result;
}

Expected<std::vector<Tensor>> MeshRunner::params(bool everywhere) {
  if (poisoned_)
    return makeError(Loc{}, "an earlier run on this mesh failed; its processes cannot run again");
  const std::vector<TensorSpec> &specs = executable_->signature().params;
  VITC_ASSIGN(std::vector<Tensor> global, assembleAll(paramBlocks_, specs));
  if (!options_.processes || !everywhere)
    return global;
  // Rank 0 sends the whole tensors to every process, one after the other.
  std::string bytes;
  for (const Tensor &t : global)
    bytes.append(reinterpret_cast<const char *>(t.data()),
                 static_cast<size_t>(t.numel()) * sizeof(float));
  Expected<std::string> all = options_.processes->broadcast(bytes, options_.collectiveTimeout);
  if (!all) {
    poisoned_ = true;
    return all.error();
  }
  global.clear();
  size_t offset = 0;
  for (const TensorSpec &spec : specs) {
    Tensor t = Tensor::zeros(spec.shape);
    size_t size = static_cast<size_t>(t.numel()) * sizeof(float);
    if (offset + size > all->size())
      return makeError(Loc{}, "device 0 sent {} bytes of parameters, fewer than their size",
                       all->size());
    std::memcpy(t.mutableData(), all->data() + offset, size);
    offset += size;
    global.push_back(std::move(t));
  }
  return global;
}

bool MeshRunner::isWriter() const { return !options_.processes || options_.processes->rank() == 0; }

Expected<std::vector<Tensor>> MeshRunner::run(const std::vector<Tensor> &inputs) {
  VITC_TRY(checkTensors("input", executable_->signature().inputs, inputs));
  if (poisoned_)
    return makeError(Loc{}, "an earlier run on this mesh failed; its processes cannot run again");
  VITC_ASSIGN(std::vector<std::vector<Tensor>> blocks, runDevices(inputs));
  return assembleAll(blocks, executable_->signature().outputs);
}

Expected<std::vector<std::vector<Tensor>>>
MeshRunner::runDevices(const std::vector<Tensor> &inputs, std::optional<size_t> firstUpdate) {
  const Signature &sig = executable_->signature();
  const Mesh &mesh = sig.mesh;
  if (!options_.processes) {
    std::vector<std::vector<Tensor>> blocks(static_cast<size_t>(mesh.numDevices()));
    Tracer *tracer = tracer_.get();
    VITC_TRY(threads_->run([&](int64_t device, Communicator &comm) -> Status {
      ScopedSpan span(tracer, device, kProgramTrack, "run");
      std::vector<Tensor> local = blocksOf(inputs, sig.inputs, mesh, device);
      DeviceProgram &program = *programs_[static_cast<size_t>(device)];
      VITC_ASSIGN(std::vector<Tensor> outs, firstUpdate ? program.runStep(local, comm, *firstUpdate)
                                                        : program.run(local, comm));
      VITC_TRY(checkOutputs(sig, outs));
      blocks[static_cast<size_t>(device)] = std::move(outs);
      return Status::ok();
    }));
    return blocks;
  }
  ProcessGroup &group = *options_.processes;
  int64_t device = group.rank();
  Expected<std::vector<Tensor>> outs = [&]() -> Expected<std::vector<Tensor>> {
    ScopedSpan span(tracer_.get(), device, kProgramTrack, "run");
    std::vector<Tensor> local = blocksOf(inputs, sig.inputs, mesh, device);
    VITC_ASSIGN(std::vector<Tensor> result, firstUpdate
                                                ? programs_[0]->runStep(local, *comm_, *firstUpdate)
                                                : programs_[0]->run(local, *comm_));
    VITC_TRY(checkOutputs(sig, result));
    return result;
  }();
  Status agreed =
      group.agree(outs ? Status::ok() : Status(outs.error()), options_.collectiveTimeout);
  if (!agreed) {
    poisoned_ = true;
    return agreed.error();
  }
  return std::vector<std::vector<Tensor>>{outs.take()};
}

Expected<std::vector<Tensor>>
MeshRunner::assembleAll(const std::vector<std::vector<Tensor>> &blocks,
                        const std::vector<TensorSpec> &specs) {
  const Mesh &mesh = executable_->signature().mesh;
  if (!options_.processes) {
    std::vector<Tensor> global;
    for (size_t i = 0; i < specs.size(); ++i) {
      std::vector<Tensor> perDevice;
      for (const std::vector<Tensor> &b : blocks)
        perDevice.push_back(b[i]);
      global.push_back(assemble(perDevice, specs[i], mesh));
    }
    return global;
  }
  // Every block of this process's device, one after the other; all devices' blocks have the same
  // shapes.
  ProcessGroup &group = *options_.processes;
  std::string bytes;
  for (const Tensor &t : blocks[0])
    bytes.append(reinterpret_cast<const char *>(t.data()),
                 static_cast<size_t>(t.numel()) * sizeof(float));
  Expected<std::vector<std::string>> gathered = group.gather(bytes, options_.collectiveTimeout);
  if (!gathered) {
    poisoned_ = true;
    return gathered.error();
  }
  const std::vector<std::string> &all = *gathered;
  if (group.rank() != 0)
    return std::vector<Tensor>{};
  std::vector<Tensor> global;
  size_t offset = 0;
  for (const TensorSpec &spec : specs) {
    Shape local = spec.localShape(mesh);
    size_t size = static_cast<size_t>(numElements(local)) * sizeof(float);
    std::vector<Tensor> perDevice;
    for (const std::string &b : all) {
      assert(b.size() == bytes.size() && "devices returned blocks of different sizes");
      Tensor t = Tensor::zeros(local);
      std::memcpy(t.mutableData(), b.data() + offset, size);
      perDevice.push_back(std::move(t));
    }
    offset += size;
    global.push_back(assemble(perDevice, spec, mesh));
  }
  return global;
}

Status MeshRunner::writeTrace(const std::string &path) {
  if (!tracer_)
    return makeError(Loc{}, "this run was not traced (set RunnerOptions::trace)");
  if (!options_.processes)
    return tracer_->write(path);
  VITC_ASSIGN(std::vector<std::string> all,
              options_.processes->gather(tracer_->eventsJson(), options_.collectiveTimeout));
  if (options_.processes->rank() != 0)
    return Status::ok();
  return Tracer::writeMerged(path, all);
}

} // namespace vitc::runtime
