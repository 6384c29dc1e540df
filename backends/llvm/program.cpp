// The JIT's device program: buffers bound once, kernels called in plan order, collectives through
// the communicator.
#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/llvm/compiler.h"
#include "backends/llvm/worker_pool.h"
#include "ir/signature.h"
#include "runtime/blocks.h"
#include "runtime/tracer.h"

namespace vitc::llvmbe {
namespace {

using Clock = std::chrono::steady_clock;

// 64-byte aligned, zeroed memory.
class AlignedBuffer {
public:
  AlignedBuffer() = default;
  // At least `bytes`, or "out of memory allocating 7.2 GiB for <what>".
  static Expected<AlignedBuffer> allocate(int64_t bytes, const std::string &what) {
    size_t size = static_cast<size_t>(std::max<int64_t>(64, roundUp(bytes, 64)));
    AlignedBuffer b;
    b.data_.reset(static_cast<char *>(std::aligned_alloc(64, size)));
    if (!b.data_)
      return makeError(Loc{}, "out of memory allocating {} for {}",
                       byteSize(static_cast<int64_t>(size)), what);
    std::memset(b.data_.get(), 0, size);
    return b;
  }
  char *data() const { return data_.get(); }
  void reset() { data_.reset(); }

private:
  struct Free {
    void operator()(char *p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
};

// What every device of a module shares: the plan and the machine code.
struct CompiledModule {
  Plan plan;
  std::unique_ptr<JitKernels> kernels;
  int threads = 1; // what the matmul blocks were sized for
};

class JitProgram : public runtime::DeviceProgram {
public:
  JitProgram(std::shared_ptr<const CompiledModule> compiled, int64_t device)
      : c_(std::move(compiled)), plan_(c_->plan), device_(device) {}

  // Checks the parameters' count and block shapes against the plan.
  Status checkParams(const std::vector<Tensor> &params) const {
    if (params.size() != plan_.params.size())
      return makeError(Loc{}, "{} parameter tensors for {} parameters", params.size(),
                       plan_.params.size());
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].shape() != plan_.params[i].shape)
        return makeError(Loc{}, "parameter '{}' has shape {}, expected {}", plan_.params[i].name,
                         shapeString(params[i].shape()), shapeString(plan_.params[i].shape));
    return Status::ok();
  }

  // Binds the parameters and allocates what the program keeps whatever they are (threads, scratch,
  // staging and the workspace).
  Status load(std::vector<Tensor> params) {
    VITC_TRY(checkParams(params));
    if (const char *p = std::getenv("VITC_LLVM_PROFILE"); p && *p && std::string(p) != "0")
      profile_ = std::make_unique<std::vector<Profile>>(plan_.kernels.size());
    std::string ofDevice = fmt::format(" of device {}", device_);
    for (int64_t bytes : plan_.stagingBytes) {
      VITC_ASSIGN(AlignedBuffer b,
                  AlignedBuffer::allocate(bytes, "the collective buffers" + ofDevice));
      staging_.push_back(std::move(b));
    }
    pool_ = std::make_unique<WorkerPool>(c_->threads);
    for (int t = 0; t < pool_->size(); ++t) {
      VITC_ASSIGN(AlignedBuffer b,
                  AlignedBuffer::allocate(plan_.scratchBytes, "kernel scratch" + ofDevice));
      scratch_.push_back(std::move(b));
    }
    // The workspace comes after the load calls, so that loading holds little more than the
    // parameters.
    VITC_TRY(bindParams(std::move(params)));
    VITC_ASSIGN(workspace_,
                AlignedBuffer::allocate(plan_.workspaceBytes, "the activations" + ofDevice));
    pending_.resize(static_cast<size_t>(plan_.numSlots));
    memory_.activationPeakBytes = plan_.workspaceBytes;
    for (int64_t bytes : plan_.stagingBytes)
      memory_.activationPeakBytes += bytes;
    return Status::ok();
  }

  Status setParams(std::vector<Tensor> params) override {
    VITC_TRY(checkParams(params));
    return bindParams(std::move(params));
  }

  // Runs the load calls on `params` (checked), into constants kept from an earlier binding where
  // the forward pass reads them and into new ones otherwise.
  Status bindParams(std::vector<Tensor> params) {
    std::string ofDevice = fmt::format(" of device {}", device_);
    params_ = std::move(params);
    consts_.resize(plan_.constBytes.size());
    // Constants come to life at the first load call that writes them and, unless the forward
    // pass reads them (packed weights replace the weights themselves), go after the last that
    // reads them: loading holds little more than the parameters.
    std::vector<size_t> lastUse(consts_.size(), 0), paramLastUse(params_.size(), 0);
    for (size_t i = 0; i < plan_.load.size(); ++i)
      for (const BufferRef &ref : plan_.load[i].args) {
        if (ref.storage == Storage::Const)
          lastUse[static_cast<size_t>(ref.index)] = i;
        if (ref.storage == Storage::Param)
          paramLastUse[static_cast<size_t>(ref.index)] = i;
      }
    for (size_t i = 0; i < plan_.load.size(); ++i) {
      const KernelCall &call = plan_.load[i];
      const BufferRef &out = call.args[0];
      if (out.storage == Storage::Const && !consts_[static_cast<size_t>(out.index)].data()) {
        VITC_ASSIGN(consts_[static_cast<size_t>(out.index)],
                    AlignedBuffer::allocate(plan_.constBytes[static_cast<size_t>(out.index)],
                                            "the packed weights" + ofDevice));
      }
      invoke(call, nullptr);
      for (const BufferRef &ref : call.args) {
        auto at = static_cast<size_t>(ref.index);
        if (ref.storage == Storage::Const && lastUse[at] == i && !plan_.constAfterLoad[at])
          consts_[at].reset();
        if (ref.storage == Storage::Param && paramLastUse[at] == i && !plan_.paramAfterLoad[at])
          params_[at] = Tensor();
      }
    }
    for (size_t i = 0; i < params_.size(); ++i)
      if (!plan_.paramAfterLoad[i])
        params_[i] = Tensor();
    // A constant the forward pass reads but no load call writes (none today) would be zeros.
    for (size_t i = 0; i < consts_.size(); ++i)
      if (plan_.constAfterLoad[i] && !consts_[i].data()) {
        VITC_ASSIGN(consts_[i],
                    AlignedBuffer::allocate(plan_.constBytes[i], "the packed weights" + ofDevice));
      }
    // What this program holds: the weights in the form the forward pass reads them (packed
    // panels, padded to whole panels); the workspace and staging buffers are counted at load.
    memory_.weightBytes = 0;
    for (size_t i = 0; i < params_.size(); ++i)
      if (plan_.paramAfterLoad[i])
        memory_.weightBytes += params_[i].numel() * static_cast<int64_t>(sizeof(float));
    for (size_t i = 0; i < consts_.size(); ++i)
      if (plan_.constAfterLoad[i])
        memory_.weightBytes += plan_.constBytes[i];
    return Status::ok();
  }

  Memory memory() const override { return memory_; }

  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs,
                                    runtime::Communicator &comm) override {
    return runKernels(inputs, comm, plan_.outputs.size());
  }

  Expected<std::vector<Tensor>> runStep(const std::vector<Tensor> &inputs,
                                        runtime::Communicator &comm, size_t firstUpdate) override {
    return runKernels(inputs, comm, firstUpdate);
  }

  Expected<std::vector<Tensor>> commitStep(const std::vector<Tensor> &next) override {
    VITC_TRY(checkParams(next));
    std::vector<Tensor> params(next.size());
    for (size_t i = 0; i < next.size(); ++i) {
      Tensor &held = params_[i]; // empty where only the load calls read the param
      if (!held.empty() && held.exclusive()) {
        // memmove: a next value may be the param itself, where an update leaves it as it is.
        std::memmove(held.mutableData(), next[i].data(),
                     static_cast<size_t>(held.numel()) * sizeof(float));
        params[i] = held;
        continue;
      }
      VITC_ASSIGN(params[i], Tensor::tryZeros(next[i].shape(),
                                              fmt::format("the parameters of device {}", device_)));
      std::memcpy(params[i].mutableData(), next[i].data(),
                  static_cast<size_t>(next[i].numel()) * sizeof(float));
    }
    VITC_TRY(bindParams(params));
    return params;
  }

private:
  // Runs the program; outputs from `viewsFrom` on are views of where it left them (in the
  // workspace), the others copies.
  Expected<std::vector<Tensor>> runKernels(const std::vector<Tensor> &inputs,
                                           runtime::Communicator &comm, size_t viewsFrom) {
    if (inputs.size() != plan_.inputs.size())
      return makeError(Loc{}, "{} inputs given, the program takes {}", inputs.size(),
                       plan_.inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].shape() != plan_.inputs[i].shape)
        return makeError(Loc{}, "input '{}' has shape {}, expected {}", plan_.inputs[i].name,
                         shapeString(inputs[i].shape()), shapeString(plan_.inputs[i].shape));
    runtime::Tracer *tracer = comm.tracer();
    for (const Step &step : plan_.run) {
      if (!step.isKernel) {
        VITC_TRY(collective(step.collective, inputs, comm)); // collectives trace themselves
        continue;
      }
      if (!tracer) {
        invoke(step.kernel, &inputs);
        continue;
      }
      auto t0 = runtime::Tracer::now();
      invoke(step.kernel, &inputs);
      tracer->span(device_, runtime::kComputeTrack, step.kernel.opName, t0, runtime::Tracer::now(),
                   {{"op", step.kernel.opKind}});
    }
    std::vector<Tensor> outputs;
    for (size_t i = 0; i < plan_.outputs.size(); ++i) {
      if (i >= viewsFrom) {
        // An owner with no control block (shared_ptr's aliasing constructor): the view keeps
        // nothing alive, the program does.
        const float *at = address(plan_.outputs[i], &inputs);
        outputs.push_back(Tensor::borrow(plan_.outputShapes[i], at,
                                         std::shared_ptr<const void>(std::shared_ptr<void>(), at)));
        continue;
      }
      VITC_ASSIGN(Tensor t, Tensor::tryZeros(plan_.outputShapes[i],
                                             fmt::format("the outputs of device {}", device_)));
      std::memcpy(t.mutableData(), address(plan_.outputs[i], &inputs),
                  static_cast<size_t>(t.numel()) * sizeof(float));
      outputs.push_back(std::move(t));
    }
    return outputs;
  }

  float *address(const BufferRef &ref, const std::vector<Tensor> *inputs) const {
    char *base = nullptr;
    switch (ref.storage) {
    case Storage::Workspace:
      base = workspace_.data();
      break;
    case Storage::Param:
      // Kernels never write operands; parameters may be read-only mappings.
      base = reinterpret_cast<char *>(
          const_cast<float *>(params_[static_cast<size_t>(ref.index)].data()));
      break;
    case Storage::Input:
      base = reinterpret_cast<char *>(
          const_cast<float *>((*inputs)[static_cast<size_t>(ref.index)].data()));
      break;
    case Storage::Const:
      base = consts_[static_cast<size_t>(ref.index)].data();
      break;
    case Storage::Staging:
      base = staging_[static_cast<size_t>(ref.index)].data();
      break;
    }
    assert(base && "a buffer the plan refers to is gone");
    return reinterpret_cast<float *>(base + ref.offsetOn(plan_.mesh, device_));
  }

  void invoke(const KernelCall &call, const std::vector<Tensor> *inputs) {
    float *args[16];
    assert(call.args.size() <= 16 && "kernel with too many arguments");
    for (size_t i = 0; i < call.args.size(); ++i)
      args[i] = address(call.args[i], inputs);
    auto fn = c_->kernels->functions[static_cast<size_t>(call.kernel)];
    auto part = [&](int thread, int64_t begin, int64_t end) {
      fn(args, begin, end, reinterpret_cast<float *>(scratch_[static_cast<size_t>(thread)].data()));
    };
    auto run = [&] {
      if (call.serial)
        part(0, 0, call.work);
      else
        pool_->run(call.work, part);
    };
    if (!profile_) {
      run();
      return;
    }
    auto t0 = Clock::now();
    run();
    Profile &p = profile_->at(static_cast<size_t>(call.kernel));
    p.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    ++p.calls;
  }

  // VITC_LLVM_PROFILE=1: time every kernel call and print the totals when the program goes away.
  struct Profile {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::unique_ptr<std::vector<Profile>> profile_;

public:
  ~JitProgram() override {
    if (!profile_)
      return;
    std::vector<size_t> order(profile_->size());
    double total = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      order[i] = i;
      total += (*profile_)[i].seconds;
    }
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return (*profile_)[a].seconds > (*profile_)[b].seconds; });
    std::fprintf(stderr, "device %ld kernel time: %.3f ms in all\n", static_cast<long>(device_),
                 total * 1e3);
    for (size_t i : order)
      if ((*profile_)[i].calls > 0)
        std::fprintf(stderr, "%10.3f ms %6ld calls  %s\n", (*profile_)[i].seconds * 1e3,
                     static_cast<long>((*profile_)[i].calls), plan_.keys[i].c_str());
  }

private:
  Status collective(const CollectiveCall &c, const std::vector<Tensor> &inputs,
                    runtime::Communicator &comm) {
    using Phase = CollectiveCall::Phase;
    if (c.phase == Phase::Done) {
      std::unique_ptr<runtime::Request> &request = pending_[static_cast<size_t>(c.slot)];
      assert(request && "done op without a started collective");
      VITC_TRY(request->wait());
      request.reset();
      finish(c, inputs);
      return Status::ok();
    }
    const float *in = address(c.input, &inputs);
    float *send = address(c.send, &inputs);
    if (c.split) {
      // The k blocks along `dim` back to back, as reduceScatter expects them.
      Shape block = c.blockShape;
      block[static_cast<size_t>(c.dim)] /= c.groupSize;
      int64_t blockSize = numElements(block);
      Shape offset(block.size(), 0);
      for (int64_t j = 0; j < c.groupSize; ++j) {
        offset[static_cast<size_t>(c.dim)] = j * block[static_cast<size_t>(c.dim)];
        runtime::extractBox(in, c.blockShape, offset, send + j * blockSize, block);
      }
    }
    float *recv = address(c.recv, &inputs);
    std::unique_ptr<runtime::Request> request;
    switch (c.kind) {
    case ir::OpKind::AllGather:
      request = comm.allGather(c.axis, send, c.sendCount, recv);
      break;
    case ir::OpKind::ReduceScatter:
      request = comm.reduceScatter(c.axis, send, c.resultCount, recv);
      break;
    case ir::OpKind::AllReduce:
      request = comm.allReduce(c.axis, send, c.sendCount, recv);
      break;
    case ir::OpKind::CollectivePermute:
      request = comm.permute(c.axis, c.shift, send, c.sendCount, recv);
      break;
    default:
      assert(false && "not a collective");
    }
    if (c.phase == Phase::Start) {
      pending_[static_cast<size_t>(c.slot)] = std::move(request);
      return Status::ok();
    }
    VITC_TRY(request->wait());
    finish(c, inputs);
    return Status::ok();
  }

  // Moves a received collective into its result: the gathered blocks into their places, or a copy.
  void finish(const CollectiveCall &c, const std::vector<Tensor> &inputs) {
    const float *recv = address(c.recv, &inputs);
    float *result = address(c.result, &inputs);
    if (c.kind == ir::OpKind::AllGather && c.join) {
      Shape whole = c.blockShape;
      whole[static_cast<size_t>(c.dim)] *= c.groupSize;
      int64_t blockSize = numElements(c.blockShape);
      Shape offset(whole.size(), 0);
      for (int64_t j = 0; j < c.groupSize; ++j) {
        offset[static_cast<size_t>(c.dim)] =
            c.order[static_cast<size_t>(j)] * c.blockShape[static_cast<size_t>(c.dim)];
        runtime::insertBox(result, whole, offset, recv + j * blockSize, c.blockShape);
      }
      return;
    }
    if (recv != result)
      std::memcpy(result, recv, static_cast<size_t>(c.resultCount) * sizeof(float));
  }

  std::shared_ptr<const CompiledModule> c_;
  const Plan &plan_;
  int64_t device_;
  std::vector<Tensor> params_;
  std::vector<AlignedBuffer> consts_, staging_;
  AlignedBuffer workspace_;
  std::vector<AlignedBuffer> scratch_; // one per thread of the pool
  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::unique_ptr<runtime::Request>> pending_;
  Memory memory_;
};

Expected<std::shared_ptr<const CompiledModule>> compileModule(const ir::Module &m,
                                                              const Options &options) {
  auto t0 = Clock::now();
  CompileReport report;
  VITC_ASSIGN(Target target, resolveTarget(options));
  auto tp = Clock::now();
  VITC_ASSIGN(Plan plan, planModule(m, target.tiles));
  report.planSeconds = std::chrono::duration<double>(Clock::now() - tp).count();
  VITC_ASSIGN(std::unique_ptr<JitKernels> kernels,
              compileJit(plan, target, options.saveObject, report));
  if (target.amxBf16 && hasBf16Matmuls(plan))
    VITC_TRY(requestAmxState());
  report.ops = plan.ops;
  report.kernels = plan.calls;
  report.uniqueKernels = static_cast<int64_t>(plan.kernels.size());
  report.cpu = target.cpu;
  report.vectorWidth = target.vectorWidth;
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (options.onCompiled)
    options.onCompiled(report);
  auto compiled = std::make_shared<CompiledModule>();
  compiled->threads = std::max(1, options.threads);
  compiled->plan = std::move(plan);
  compiled->kernels = std::move(kernels);
  return std::shared_ptr<const CompiledModule>(std::move(compiled));
}

class JitExecutable : public runtime::Executable {
public:
  JitExecutable(std::shared_ptr<const CompiledModule> compiled, Signature signature)
      : compiled_(std::move(compiled)), signature_(std::move(signature)) {}
  const Signature &signature() const override { return signature_; }
  Expected<std::unique_ptr<runtime::DeviceProgram>>
  instantiate(int64_t device, std::vector<Tensor> params) const override {
    auto program = std::make_unique<JitProgram>(compiled_, device);
    VITC_TRY(program->load(std::move(params)));
    return std::unique_ptr<runtime::DeviceProgram>(std::move(program));
  }

private:
  std::shared_ptr<const CompiledModule> compiled_;
  Signature signature_;
};

} // namespace

Expected<std::shared_ptr<const runtime::Executable>> compile(const ir::Module &m,
                                                             const Options &options) {
  VITC_ASSIGN(std::shared_ptr<const CompiledModule> compiled, compileModule(m, options));
  return std::shared_ptr<const runtime::Executable>(
      std::make_shared<JitExecutable>(std::move(compiled), ir::signatureOf(m)));
}

backends::Compiler compiler(Options options) {
  return [options = std::move(options)](std::shared_ptr<const ir::Module> module) {
    return compile(*module, options);
  };
}

} // namespace vitc::llvmbe
