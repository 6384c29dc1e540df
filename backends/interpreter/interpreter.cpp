// Op-by-op evaluation of a module on one device.
#include "backends/interpreter/interpreter.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "backends/interpreter/kernels.h"
#include "ir/signature.h"
#include "runtime/tracer.h"

namespace vitc::interp {
namespace {

using ir::Op;
using ir::OpKind;

// A collective in flight: its request, the buffers it uses and how to finish the result.
// Members are destroyed in reverse order: the request goes first, so a collective abandoned by an
// error never writes into buffers that were already freed.
struct Pending {
  Tensor send;
  Tensor recv;
  std::function<Tensor(const Tensor &recv)> finish;
  std::unique_ptr<runtime::Request> request;
};

class Interpreter : public runtime::DeviceProgram {
public:
  Interpreter(std::shared_ptr<const ir::Module> m, int64_t device)
      : m_(std::move(m)), device_(device) {}

  // Computes what depends on the parameters alone; called again, it replaces what it computed.
  Status prepare(std::vector<Tensor> params) {
    prepared_.clear();
    transposed_.clear();
    order_.clear();
    lastUse_.clear();
    memory_.weightBytes = 0;
    std::vector<Op *> paramOps = m_->params();
    if (params.size() != paramOps.size())
      return makeError(Loc{}, "{} parameter tensors for {} parameters", params.size(),
                       paramOps.size());
    std::unordered_set<const Op *> weightOnly = ir::loadTimeOps(*m_);
    std::unordered_map<const Op *, Tensor> values;
    for (size_t i = 0; i < paramOps.size(); ++i) {
      Shape local = paramOps[i]->type.localShape(m_->mesh);
      if (params[i].shape() != local)
        return makeError(Loc{}, "parameter '{}' has shape {}, expected {}",
                         paramOps[i]->attrs.getStr("name"), shapeString(params[i].shape()),
                         shapeString(local));
      values[paramOps[i]] = std::move(params[i]);
    }
    for (const auto &op : m_->ops()) {
      if (!weightOnly.count(op.get()) || op->is(OpKind::Param))
        continue;
      values[op.get()] = compute(*op, values);
    }
    // Keep only what the forward pass reads.
    for (const auto &op : m_->ops())
      for (const Op *operand : op->operands)
        if (weightOnly.count(operand) && !weightOnly.count(op.get()))
          prepared_[operand] = values.at(operand);
    for (const auto &[op, t] : prepared_)
      memory_.weightBytes += t.numel() * static_cast<int64_t>(sizeof(float));
    // Weight matrices read transposed are transposed once here, not at every matmul (a ring of
    // k matmul steps would otherwise transpose the weight k times). Not counted as memory: a
    // compiled backend packs its weights in place of the originals.
    for (const auto &op : m_->ops())
      if ((op->is(OpKind::MatMul) || op->is(OpKind::FusedLinear)) &&
          op->attrs.getBool("transpose_b") && prepared_.count(op->operand(1)) &&
          op->operand(1)->rank() == 2 && !transposed_.count(op->operand(1)))
        transposed_[op->operand(1)] = transpose(prepared_.at(op->operand(1)), {1, 0});
    for (const auto &op : m_->ops())
      if (!weightOnly.count(op.get()))
        order_.push_back(op.get());
    for (size_t i = 0; i < order_.size(); ++i)
      for (const Op *operand : order_[i]->operands)
        lastUse_[operand] = i;
    return Status::ok();
  }

  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs,
                                    runtime::Communicator &comm) override {
    std::vector<Op *> inputOps = m_->inputs();
    if (inputs.size() != inputOps.size())
      return makeError(Loc{}, "{} inputs given, the program takes {}", inputs.size(),
                       inputOps.size());
    std::unordered_map<const Op *, Tensor> values = prepared_;
    for (size_t i = 0; i < inputs.size(); ++i) {
      Shape local = inputOps[i]->type.localShape(m_->mesh);
      if (inputs[i].shape() != local)
        return makeError(Loc{}, "input '{}' has shape {}, expected {}",
                         inputOps[i]->attrs.getStr("name"), shapeString(inputs[i].shape()),
                         shapeString(local));
      values[inputOps[i]] = inputs[i];
    }
    std::unordered_map<const Op *, Pending> pending;
    std::vector<Tensor> outputs;
    int64_t peak = 0;
    for (size_t i = 0; i < order_.size(); ++i) {
      const Op &op = *order_[i];
      if (op.is(OpKind::Input))
        continue;
      if (op.is(OpKind::Output)) {
        for (const Op *o : op.operands)
          outputs.push_back(values.at(o));
        break;
      }
      runtime::Tracer *tracer = comm.tracer();
      auto t0 = tracer ? runtime::Tracer::now() : runtime::Tracer::TimePoint{};
      if (op.info().has(ir::kCollective)) {
        VITC_TRY(collective(op, values, pending, comm));
      } else if (op.is(OpKind::AllSlice) || op.is(OpKind::RingConcat)) {
        values[&op] =
            placeBlocks(op, values, comm.coordinate(m_->mesh.axisIndex(op.meshAxisName())));
      } else {
        values[&op] = compute(op, values);
      }
      // Collectives trace themselves (communicator); everything else is compute.
      if (tracer && !op.info().has(ir::kCollective))
        tracer->span(comm.device(), runtime::kComputeTrack, op.name, t0, runtime::Tracer::now(),
                     {{"op", std::string(op.keyword())}});
      // The peak is while an op's result and its last-used operands are both held.
      peak = std::max(peak, liveBytes(values, pending));
      for (const Op *operand : op.operands)
        if (lastUse_[operand] == i && !prepared_.count(operand))
          values.erase(operand);
    }
    memory_.activationPeakBytes = peak;
    return outputs;
  }

  Memory memory() const override { return memory_; }

  Status setParams(std::vector<Tensor> params) override { return prepare(std::move(params)); }

private:
  // Bytes of activation storage alive now (views of one buffer count once; inputs count, as
  // they do in the plan's workspace accounting; received buffers of collectives in flight count).
  int64_t liveBytes(const std::unordered_map<const Op *, Tensor> &values,
                    const std::unordered_map<const Op *, Pending> &pending) const {
    std::unordered_set<const float *> seen;
    int64_t bytes = 0;
    for (const auto &[op, t] : values) {
      if (prepared_.count(op) || op->is(OpKind::Input) || !seen.insert(t.data()).second)
        continue;
      bytes += t.numel() * static_cast<int64_t>(sizeof(float));
    }
    for (const auto &[op, p] : pending)
      if (seen.insert(p.recv.data()).second)
        bytes += p.recv.numel() * static_cast<int64_t>(sizeof(float));
    return bytes;
  }

  const Tensor &arg(const std::unordered_map<const Op *, Tensor> &values, const Op &op,
                    size_t i) const {
    return values.at(op.operand(i));
  }

  // operand 0 times operand 1, using the weight transposed at load when there is one.
  Tensor product(const Op &op, const std::unordered_map<const Op *, Tensor> &values) const {
    bool transposeB = op.attrs.getBool("transpose_b");
    if (auto it = transposed_.find(op.operand(1)); transposeB && it != transposed_.end())
      return matmul(arg(values, op, 0), it->second, false);
    return matmul(arg(values, op, 0), arg(values, op, 1), transposeB);
  }

  Tensor compute(const Op &op, const std::unordered_map<const Op *, Tensor> &values) const {
    auto in = [&](size_t i) -> const Tensor & { return arg(values, op, i); };
    Shape local = op.type.localShape(m_->mesh);
    switch (op.kind) {
    case OpKind::MatMul:
      return product(op, values);
    case OpKind::Add:
      return add(in(0), in(1));
    case OpKind::Mul:
      return mul(in(0), in(1));
    case OpKind::Scale:
      return scale(in(0), static_cast<float>(op.attrs.getFloat("factor")));
    case OpKind::Gelu:
      return gelu(in(0), op.attrs.getBool("approximate"));
    case OpKind::LayerNorm:
      return layerNorm(in(0), in(1), op.operands.size() > 2 ? in(2) : Tensor(),
                       static_cast<float>(op.attrs.getFloat("eps")));
    case OpKind::Softmax:
      return softmax(in(0));
    case OpKind::Mean:
      return mean(in(0), op.attrs.getInt("axis"));
    case OpKind::Sum:
      return sum(in(0), op.attrs.getInt("axis"));
    case OpKind::Sub:
      return sub(in(0), in(1));
    case OpKind::Div:
      return div(in(0), in(1));
    case OpKind::Maximum:
      return maximum(in(0), in(1));
    case OpKind::Sqrt:
      return interp::sqrt(in(0));
    case OpKind::Sigmoid:
      return sigmoid(in(0));
    case OpKind::Erf:
      return interp::erf(in(0));
    case OpKind::Tanh:
      return interp::tanh(in(0));
    case OpKind::SoftmaxCrossEntropy:
      return softmaxCrossEntropy(in(0), in(1));
    case OpKind::SigmoidCrossEntropy:
      return sigmoidCrossEntropy(in(0), in(1));
    case OpKind::GeluGrad:
      return geluGrad(in(0), in(1), op.attrs.getBool("approximate"));
    case OpKind::LayerNormGrad:
      return layerNormGrad(in(0), in(1), in(2), static_cast<float>(op.attrs.getFloat("eps")));
    case OpKind::SoftmaxGrad:
      return softmaxGrad(in(0), in(1));
    case OpKind::Convert:
      // Widening is exact: a bf16 value already is the float it stands for.
      return op.type.dtype == ir::DType::BF16 ? roundToBfloat16(in(0)) : in(0);
    case OpKind::Reshape:
      return in(0).reshaped(local);
    case OpKind::Transpose:
      return transpose(in(0), op.attrs.getInts("perm"));
    case OpKind::Broadcast:
      return broadcastTo(in(0), local);
    case OpKind::Concat: {
      std::vector<const Tensor *> xs;
      for (size_t i = 0; i < op.operands.size(); ++i)
        xs.push_back(&in(i));
      return concat(xs, op.attrs.getInt("axis"));
    }
    case OpKind::Slice:
      return slice(in(0), op.attrs.getInt("axis"), op.attrs.getInt("start"),
                   op.attrs.getInt("size"));
    case OpKind::Patchify:
      return patchify(in(0), op.attrs.getInt("patch"));
    case OpKind::Reshard:
      assert(false && "reshard must be lowered by insert-collectives before running");
      return Tensor();
    case OpKind::ToManual:
    case OpKind::FromManual:
      return in(0); // only the meaning changes, not what a device holds
    case OpKind::AllSlice:
    case OpKind::RingConcat:
      // Weight-only (computed at load): the device's coordinate comes from its id.
      return placeBlocks(op, values,
                         m_->mesh.coordinate(device_, m_->mesh.axisIndex(op.meshAxisName())));
    case OpKind::Fill: {
      Tensor t = Tensor::zeros(local);
      std::fill(t.mutableData(), t.mutableData() + t.numel(),
                static_cast<float>(op.attrs.getFloat("value")));
      return t;
    }
    case OpKind::FusedLinear: {
      Tensor y = product(op, values);
      size_t next = 2;
      if (op.attrs.getBool("bias"))
        y = add(y, in(next++));
      if (op.attrs.getBool("gelu"))
        y = gelu(y, op.attrs.getBool("gelu_approximate"));
      if (op.attrs.getBool("residual"))
        y = add(y, in(next++));
      return y;
    }
    case OpKind::Attention: {
      bool qkNorm = op.attrs.getBool("qk_norm"), bias = op.attrs.getBool("norm_bias");
      Tensor none;
      const Tensor &qs = qkNorm ? in(3) : none;
      const Tensor &qb = qkNorm && bias ? in(4) : none;
      const Tensor &ks = qkNorm ? in(bias ? 5 : 4) : none;
      const Tensor &kb = qkNorm && bias ? in(6) : none;
      // A device holds whole heads: as many as its share of the features.
      int64_t heads = op.attrs.getInt("heads") * in(0).dim(2) / op.operand(0)->shape()[2];
      return attention(in(0), in(1), in(2), heads, static_cast<float>(op.attrs.getFloat("scale")),
                       qs, qb, ks, kb,
                       qkNorm ? static_cast<float>(op.attrs.getFloat("eps")) : 0.0f);
    }
    default:
      assert(false && "compute() called on an op it does not evaluate");
      return Tensor();
    }
  }

  // all_slice and ring_concat: the blocks of one dimension, placed by the device's coordinate.
  Tensor placeBlocks(const Op &op, const std::unordered_map<const Op *, Tensor> &values,
                     int64_t coord) const {
    int64_t k = m_->mesh.axisSize(m_->mesh.axisIndex(op.meshAxisName()));
    int64_t dim = op.attrs.getInt("dim");
    if (op.is(OpKind::AllSlice)) {
      const Tensor &x = arg(values, op, 0);
      int64_t rotation = op.attrs.has("rotation") ? op.attrs.getInt("rotation") : 0;
      int64_t block = ((coord + rotation) % k + k) % k;
      int64_t size = x.dim(dim) / k;
      return slice(x, dim, block * size, size);
    }
    // Operand s holds block (coord + s) mod k.
    Shape blockShape = arg(values, op, 0).shape();
    Tensor flat = Tensor::zeros({k * numElements(blockShape)});
    std::vector<int64_t> order(static_cast<size_t>(k));
    for (int64_t s = 0; s < k; ++s) {
      const Tensor &b = arg(values, op, static_cast<size_t>(s));
      std::copy(b.data(), b.data() + b.numel(), flat.mutableData() + s * b.numel());
      order[static_cast<size_t>(s)] = (coord + s) % k;
    }
    return joinBlocks(flat.data(), blockShape, dim, order);
  }

  Status collective(const Op &op, std::unordered_map<const Op *, Tensor> &values,
                    std::unordered_map<const Op *, Pending> &pending, runtime::Communicator &comm) {
    if (op.info().has(ir::kAsyncDone)) {
      auto it = pending.find(op.operand(0));
      assert(it != pending.end() && "done op without a started collective");
      VITC_TRY(it->second.request->wait());
      values[&op] = it->second.finish(it->second.recv);
      pending.erase(it);
      return Status::ok();
    }
    Pending p = start(op, arg(values, op, 0), comm);
    if (op.info().has(ir::kAsyncStart)) {
      pending[&op] = std::move(p);
      return Status::ok();
    }
    VITC_TRY(p.request->wait());
    values[&op] = p.finish(p.recv);
    return Status::ok();
  }

  Pending start(const Op &op, const Tensor &x, runtime::Communicator &comm) const {
    const ir::Mesh &mesh = m_->mesh;
    int axis = mesh.axisIndex(op.meshAxisName());
    int64_t k = mesh.axisSize(axis);
    Shape local = op.type.localShape(mesh);
    Pending p;
    switch (ir::syncCollectiveKind(op.kind)) {
    case OpKind::AllGather: {
      int64_t dim = op.attrs.getInt("dim");
      // Device at coordinate c holds block (c + rotation) mod k of the operand.
      int64_t rotation = op.operand(0)->type.sharding.dims[static_cast<size_t>(dim)].rotation;
      std::vector<int64_t> order(static_cast<size_t>(k));
      for (int64_t c = 0; c < k; ++c)
        order[static_cast<size_t>(c)] = (c + rotation) % k;
      Shape block = x.shape();
      p.send = x;
      p.recv = Tensor::zeros({k * x.numel()});
      p.request = comm.allGather(axis, p.send.data(), x.numel(), p.recv.mutableData());
      p.finish = [block, dim, order](const Tensor &recv) {
        return joinBlocks(recv.data(), block, dim, order);
      };
      return p;
    }
    case OpKind::ReduceScatter: {
      int64_t dim = op.attrs.getInt("dim");
      p.send = splitBlocks(x, dim, k);
      p.recv = Tensor::zeros(local);
      p.request = comm.reduceScatter(axis, p.send.data(), p.recv.numel(), p.recv.mutableData());
      p.finish = [](const Tensor &recv) { return recv; };
      return p;
    }
    case OpKind::AllReduce:
      p.send = x;
      p.recv = Tensor::zeros(local);
      p.request = comm.allReduce(axis, p.send.data(), x.numel(), p.recv.mutableData());
      p.finish = [](const Tensor &recv) { return recv; };
      return p;
    case OpKind::CollectivePermute:
      p.send = x;
      p.recv = Tensor::zeros(local);
      p.request = comm.permute(axis, op.attrs.getInt("shift"), p.send.data(), x.numel(),
                               p.recv.mutableData());
      p.finish = [](const Tensor &recv) { return recv; };
      return p;
    default:
      assert(false && "not a collective");
      return p;
    }
  }

  std::shared_ptr<const ir::Module> m_;
  int64_t device_;
  std::unordered_map<const Op *, Tensor> prepared_;
  std::unordered_map<const Op *, Tensor> transposed_; // prepared weights, transposed
  std::vector<const Op *> order_;
  std::unordered_map<const Op *, size_t> lastUse_;
  Memory memory_;
};

} // namespace

namespace {

class InterpreterExecutable : public runtime::Executable {
public:
  explicit InterpreterExecutable(std::shared_ptr<const ir::Module> module)
      : module_(std::move(module)), signature_(ir::signatureOf(*module_)) {}
  const Signature &signature() const override { return signature_; }
  Expected<std::unique_ptr<runtime::DeviceProgram>>
  instantiate(int64_t device, std::vector<Tensor> params) const override {
    auto program = std::make_unique<Interpreter>(module_, device);
    VITC_TRY(program->prepare(std::move(params)));
    return std::unique_ptr<runtime::DeviceProgram>(std::move(program));
  }

private:
  std::shared_ptr<const ir::Module> module_;
  Signature signature_;
};

} // namespace

Expected<std::shared_ptr<const runtime::Executable>>
compile(std::shared_ptr<const ir::Module> module) {
  return std::shared_ptr<const runtime::Executable>(
      std::make_shared<InterpreterExecutable>(std::move(module)));
}

backends::Compiler compiler() { return compile; }

} // namespace vitc::interp
