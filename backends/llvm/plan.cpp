// Lowering a module to a plan of kernel calls.
#include "backends/llvm/plan.h"

#include <cassert>
#include <map>
#include <unordered_map>
#include <unordered_set>

namespace vitc::llvmbe {
namespace {

using ir::Op;
using ir::OpKind;

Shape rowMajorStrides(const Shape &shape) {
  Shape strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;)
    strides[d - 1] = strides[d] * shape[d];
  return strides;
}

// Drops dimensions of size 1 and merges neighbours that every operand walks contiguously, so
// kernels loop over as few and as long dimensions as possible.
void collapse(Shape &shape, std::vector<Shape *> strides) {
  Shape outShape;
  std::vector<Shape> out(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1)
      continue;
    bool merge = !outShape.empty();
    for (size_t i = 0; merge && i < strides.size(); ++i)
      merge = out[i].back() == (*strides[i])[d] * shape[d];
    if (merge) {
      outShape.back() *= shape[d];
      for (size_t i = 0; i < strides.size(); ++i)
        out[i].back() = (*strides[i])[d];
      continue;
    }
    outShape.push_back(shape[d]);
    for (size_t i = 0; i < strides.size(); ++i)
      out[i].push_back((*strides[i])[d]);
  }
  if (outShape.empty()) { // a single element
    outShape.push_back(1);
    for (auto &s : out)
      s.push_back(1);
  }
  shape = outShape;
  for (size_t i = 0; i < strides.size(); ++i)
    *strides[i] = out[i];
}

// The strides with which an operand of shape `in` is read for each element of an output of shape
// `out` under NumPy broadcasting (shapes aligned on the right, size-1 dimensions stretched).
Shape broadcastStrides(const Shape &in, const Shape &out) {
  Shape contiguous = rowMajorStrides(in);
  Shape strides(out.size(), 0);
  size_t lead = out.size() - in.size();
  for (size_t d = lead; d < out.size(); ++d) {
    size_t id = d - lead;
    strides[d] = in[id] == 1 && out[d] != 1 ? 0 : contiguous[id];
  }
  return strides;
}

CopyDesc makeCopy(Shape shape, Shape src, int64_t srcOffset, Shape dst, int64_t dstOffset,
                  int64_t vw) {
  collapse(shape, {&src, &dst});
  CopyDesc c;
  c.shape = shape;
  c.srcStrides = src;
  c.dstStrides = dst;
  c.srcOffset = srcOffset;
  c.dstOffset = dstOffset;
  c.vectorWidth = vw;
  return c;
}

CopyDesc contiguousCopy(int64_t n, int64_t vw) { return makeCopy({n}, {1}, 0, {1}, 0, vw); }

EltOp eltOpOf(OpKind kind) {
  switch (kind) {
  case OpKind::Add:
    return EltOp::Add;
  case OpKind::Mul:
    return EltOp::Mul;
  case OpKind::Scale:
    return EltOp::Scale;
  case OpKind::Gelu:
    return EltOp::Gelu;
  case OpKind::Sub:
    return EltOp::Sub;
  case OpKind::Div:
    return EltOp::Div;
  case OpKind::Maximum:
    return EltOp::Maximum;
  case OpKind::Sqrt:
    return EltOp::Sqrt;
  case OpKind::Sigmoid:
    return EltOp::Sigmoid;
  case OpKind::GeluGrad:
    return EltOp::GeluGrad;
  case OpKind::Erf:
    return EltOp::Erf;
  case OpKind::Tanh:
    return EltOp::Tanh;
  default:
    assert(false && "not an elementwise op of the llvm backend");
    return EltOp::Add;
  }
}

class Planner {
public:
  Planner(const ir::Module &m, const TileConfig &tiles) : m_(m), tiles_(tiles) {}

  Expected<Plan> plan() {
    const ir::Mesh &mesh = m_.mesh;
    // Slices attention reads in place, where plan-memory made them views (at their operand's
    // offset; a module planned otherwise copies them).
    for (const Op *view : ir::attentionViews(m_)) {
      const ir::AttrValue *at = view->attrs.find("offset");
      const ir::AttrValue *from = view->operand(0)->attrs.find("offset");
      if ((at == nullptr) == (from == nullptr) && (!at || *at == *from))
        views_.insert(view);
    }
    // bf16 values are matmul and attention inputs: converts (and reshapes and attention's views
    // of them) that only matmuls, attention, converts and reshapes read.
    for (const auto &op : m_.ops()) {
      bool bf16Result = op->hasResult() && op->type.dtype != ir::DType::F32;
      bool movesBf16 =
          op->is(OpKind::Convert) || op->is(OpKind::Reshape) || isAttentionView(op.get());
      if (bf16Result && !movesBf16)
        return makeError(op->loc, "%{}: the llvm backend computes f32 only, got {}", op->name,
                         ir::dtypeName(op->type.dtype));
      if (movesBf16 || op->is(OpKind::MatMul) || op->is(OpKind::FusedLinear) ||
          op->is(OpKind::Attention))
        continue;
      for (const Op *o : op->operands)
        if (o->type.dtype != ir::DType::F32)
          return makeError(op->loc,
                           "'{}' reads {} %{}: the llvm backend reads bf16 only in matmuls and "
                           "attention",
                           op->keyword(), ir::dtypeName(o->type.dtype), o->name);
    }
    plan_.mesh = mesh;
    if (const ir::AttrValue *ws = m_.attrs.find("workspace_bytes"))
      plan_.workspaceBytes = std::get<int64_t>(*ws);
    plan_.ops = static_cast<int64_t>(m_.size());

    std::unordered_set<const Op *> weightOnly = ir::loadTimeOps(m_);
    // Weight-only values the forward pass (or the outputs) read, and everything they need.
    std::unordered_set<const Op *> readByRun;
    for (const auto &op : m_.ops())
      if (!weightOnly.count(op.get()))
        for (const Op *operand : op->operands)
          if (weightOnly.count(operand))
            readByRun.insert(operand);
    std::unordered_set<const Op *> neededAtLoad = readByRun;
    for (auto it = m_.ops().rbegin(); it != m_.ops().rend(); ++it)
      if (neededAtLoad.count(it->get()))
        for (const Op *operand : (*it)->operands)
          neededAtLoad.insert(operand);

    // Where every value lives.
    int64_t paramIndex = 0, inputIndex = 0;
    for (const auto &ptr : m_.ops()) {
      const Op *op = ptr.get();
      if (op->is(OpKind::Param)) {
        plan_.params.push_back({op->attrs.getStr("name"), op->type.localShape(mesh)});
        plan_.paramAfterLoad.push_back(false);
        where_[op] = {Storage::Param, paramIndex++, 0};
      } else if (op->is(OpKind::Input)) {
        plan_.inputs.push_back({op->attrs.getStr("name"), op->type.localShape(mesh)});
        where_[op] = {Storage::Input, inputIndex++, 0};
      } else if (!op->hasResult()) {
        continue;
      } else if (op->is(OpKind::Reshape)) {
        if (auto it = where_.find(op->operand(0)); it != where_.end())
          where_[op] = it->second;
      } else if (isAttentionView(op)) {
        where_[op] = shifted(where_.at(op->operand(0)),
                             op->attrs.getInt("start") * dtypeBytes(op->type.dtype));
      } else if (weightOnly.count(op)) {
        if (neededAtLoad.count(op))
          where_[op] = newConst(op->type.localBytes(mesh));
      } else {
        const ir::AttrValue *offset = op->attrs.find("offset");
        if (!offset)
          return makeError(op->loc, "%{} has no place in the workspace: run plan-memory last",
                           op->name);
        where_[op] = {Storage::Workspace, 0, std::get<int64_t>(*offset)};
      }
    }

    for (const auto &ptr : m_.ops()) {
      const Op &op = *ptr;
      if (!weightOnly.count(&op) || !neededAtLoad.count(&op))
        continue;
      if (op.is(OpKind::Param) || op.is(OpKind::Reshape))
        continue;
      VITC_TRY(lower(op, /*atLoad=*/true));
    }
    for (const auto &ptr : m_.ops()) {
      const Op &op = *ptr;
      if (weightOnly.count(&op) || op.is(OpKind::Input) || op.is(OpKind::Reshape) ||
          isAttentionView(&op))
        continue;
      if (op.is(OpKind::Output)) {
        for (const Op *o : op.operands) {
          plan_.outputs.push_back(where_.at(o));
          plan_.outputShapes.push_back(o->type.localShape(mesh));
          markRead(where_.at(o));
        }
        continue;
      }
      if (op.info().has(ir::kCollective)) {
        VITC_TRY(lowerCollective(op));
        continue;
      }
      VITC_TRY(lower(op, /*atLoad=*/false));
    }
    plan_.calls = static_cast<int64_t>(plan_.load.size());
    for (const Step &s : plan_.run)
      plan_.calls += s.isKernel;
    return std::move(plan_);
  }

private:
  BufferRef newConst(int64_t bytes) {
    plan_.constBytes.push_back(bytes);
    plan_.constAfterLoad.push_back(false);
    return {Storage::Const, static_cast<int64_t>(plan_.constBytes.size() - 1), 0};
  }

  BufferRef newStaging(int64_t bytes) {
    plan_.stagingBytes.push_back(bytes);
    return {Storage::Staging, static_cast<int64_t>(plan_.stagingBytes.size() - 1), 0};
  }

  void markRead(const BufferRef &ref) {
    if (ref.storage == Storage::Const)
      plan_.constAfterLoad[static_cast<size_t>(ref.index)] = true;
    if (ref.storage == Storage::Param)
      plan_.paramAfterLoad[static_cast<size_t>(ref.index)] = true;
  }

  int kernelIndex(const KernelDesc &desc) {
    std::string key = kernelKey(desc);
    auto [it, inserted] = index_.emplace(key, static_cast<int>(plan_.kernels.size()));
    if (inserted) {
      plan_.kernels.push_back(desc);
      plan_.keys.push_back(key);
    }
    plan_.scratchBytes = std::max(plan_.scratchBytes, scratchBytes(desc));
    return it->second;
  }

  void call(const KernelDesc &desc, std::vector<BufferRef> args, const Op &op, bool atLoad) {
    assert(static_cast<int64_t>(args.size()) == numArgs(desc) && "kernel called with wrong args");
    KernelCall c;
    c.kernel = kernelIndex(desc);
    c.work = workItems(desc);
    c.serial = serialCall(desc, op);
    c.opName = op.name;
    c.opKind = std::string(op.keyword());
    if (!atLoad)
      for (size_t i = 1; i < args.size(); ++i)
        markRead(args[i]);
    c.args = std::move(args);
    if (atLoad) {
      plan_.load.push_back(std::move(c));
      return;
    }
    Step s;
    s.kernel = std::move(c);
    plan_.run.push_back(std::move(s));
  }

  // Memory-bound kernels (not matmul or attention) that read and write less than this run on one
  // thread (ViT-Ti/16's layer norms: 300 KB; on 2 threads about 2% faster, and steadier).
  static constexpr int64_t kSerialBytes = 512 << 10;
  bool serialCall(const KernelDesc &desc, const Op &op) const {
    if (std::holds_alternative<MatmulDesc>(desc) || std::holds_alternative<AttentionDesc>(desc))
      return false;
    int64_t bytes = op.hasResult() ? op.type.localBytes(m_.mesh) : 0;
    for (const Op *o : op.operands)
      bytes += o->type.localBytes(m_.mesh);
    return bytes < kSerialBytes;
  }

  Shape local(const Op *op) const { return op->type.localShape(m_.mesh); }
  BufferRef at(const Op *op) const { return where_.at(op); }
  BufferRef shifted(BufferRef ref, int64_t bytes) const {
    ref.offset += bytes;
    return ref;
  }

  Status lower(const Op &op, bool atLoad) {
    int64_t vw = tiles_.vectorWidth;
    Shape out = local(&op);
    BufferRef result = at(&op);
    std::vector<BufferRef> operands;
    for (const Op *o : op.operands)
      operands.push_back(at(o));
    auto args = [&](std::initializer_list<BufferRef> refs) { return std::vector<BufferRef>(refs); };

    switch (op.kind) {
    case OpKind::Add:
    case OpKind::Mul:
    case OpKind::Scale:
    case OpKind::Gelu:
    case OpKind::Sub:
    case OpKind::Div:
    case OpKind::Maximum:
    case OpKind::Sqrt:
    case OpKind::Sigmoid:
    case OpKind::Erf:
    case OpKind::Tanh:
    case OpKind::GeluGrad: {
      EltwiseDesc d;
      d.op = eltOpOf(op.kind);
      d.shape = out;
      d.vectorWidth = vw;
      for (const Op *o : op.operands)
        d.strides.push_back(broadcastStrides(local(o), out));
      std::vector<Shape *> strides;
      for (Shape &s : d.strides)
        strides.push_back(&s);
      collapse(d.shape, strides);
      if (op.is(OpKind::Scale))
        d.factor = static_cast<float>(op.attrs.getFloat("factor"));
      if (op.is(OpKind::Gelu) || op.is(OpKind::GeluGrad))
        d.approximate = op.attrs.getBool("approximate");
      std::vector<BufferRef> a{result};
      a.insert(a.end(), operands.begin(), operands.end());
      call(d, a, op, atLoad);
      return Status::ok();
    }
    case OpKind::LayerNorm: {
      LayerNormDesc d;
      d.d = out.back();
      d.rows = numElements(out) / d.d;
      d.bias = op.operands.size() > 2;
      d.eps = static_cast<float>(op.attrs.getFloat("eps"));
      d.vectorWidth = vw;
      std::vector<BufferRef> a{result};
      a.insert(a.end(), operands.begin(), operands.end());
      call(d, a, op, atLoad);
      return Status::ok();
    }
    case OpKind::LayerNormGrad: {
      LayerNormGradDesc d;
      d.d = out.back();
      d.rows = numElements(out) / d.d;
      d.eps = static_cast<float>(op.attrs.getFloat("eps"));
      d.vectorWidth = vw;
      call(d, args({result, operands[0], operands[1], operands[2]}), op, atLoad);
      return Status::ok();
    }
    case OpKind::SoftmaxGrad: {
      SoftmaxGradDesc d;
      d.d = out.back();
      d.rows = numElements(out) / d.d;
      d.vectorWidth = vw;
      call(d, args({result, operands[0], operands[1]}), op, atLoad);
      return Status::ok();
    }
    case OpKind::SoftmaxCrossEntropy:
    case OpKind::SigmoidCrossEntropy: {
      LossDesc d;
      d.rows = numElements(out);
      d.d = local(op.operand(0)).back();
      d.sigmoid = op.is(OpKind::SigmoidCrossEntropy);
      d.vectorWidth = vw;
      call(d, args({result, operands[0], operands[1]}), op, atLoad);
      return Status::ok();
    }
    case OpKind::Softmax: {
      SoftmaxDesc d;
      d.d = out.back();
      d.rows = numElements(out) / d.d;
      d.vectorWidth = vw;
      call(d, args({result, operands[0]}), op, atLoad);
      return Status::ok();
    }
    case OpKind::Mean:
    case OpKind::Sum: {
      Shape in = local(op.operand(0));
      auto axis = static_cast<size_t>(op.attrs.getInt("axis"));
      MeanDesc d;
      d.divide = op.is(OpKind::Mean);
      d.outer = numElements(Shape(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(axis)));
      d.n = in[axis];
      d.inner = numElements(Shape(in.begin() + static_cast<std::ptrdiff_t>(axis) + 1, in.end()));
      d.vectorWidth = vw;
      call(d, args({result, operands[0]}), op, atLoad);
      return Status::ok();
    }
    case OpKind::Fill: {
      FillDesc d;
      d.n = numElements(out);
      d.value = static_cast<float>(op.attrs.getFloat("value"));
      d.vectorWidth = vw;
      call(d, args({result}), op, atLoad);
      return Status::ok();
    }
    case OpKind::Transpose: {
      Shape in = local(op.operand(0));
      Shape inStrides = rowMajorStrides(in);
      const std::vector<int64_t> &perm = op.attrs.getInts("perm");
      Shape src(out.size());
      for (size_t d = 0; d < out.size(); ++d)
        src[d] = inStrides[static_cast<size_t>(perm[d])];
      call(makeCopy(out, src, 0, rowMajorStrides(out), 0, vw), args({result, operands[0]}), op,
           atLoad);
      return Status::ok();
    }
    case OpKind::Broadcast:
      call(makeCopy(out, broadcastStrides(local(op.operand(0)), out), 0, rowMajorStrides(out), 0,
                    vw),
           args({result, operands[0]}), op, atLoad);
      return Status::ok();
    case OpKind::Slice: {
      Shape in = local(op.operand(0));
      Shape inStrides = rowMajorStrides(in);
      auto axis = static_cast<size_t>(op.attrs.getInt("axis"));
      int64_t start = op.attrs.getInt("start");
      // The source pointer is shifted so that equal slices at other starts share one kernel.
      call(makeCopy(out, inStrides, 0, rowMajorStrides(out), 0, vw),
           args({result, shifted(operands[0], start * inStrides[axis] * 4)}), op, atLoad);
      return Status::ok();
    }
    case OpKind::Concat: {
      auto axis = static_cast<size_t>(op.attrs.getInt("axis"));
      Shape outStrides = rowMajorStrides(out);
      int64_t along = 0;
      for (size_t i = 0; i < op.operands.size(); ++i) {
        Shape in = local(op.operand(i));
        // Each operand is copied into its place in the result; the result pointer is shifted so
        // that the copies of equal operands share one kernel.
        call(makeCopy(in, rowMajorStrides(in), 0, outStrides, 0, vw),
             args({shifted(result, along * outStrides[axis] * 4), operands[i]}), op, atLoad);
        along += in[axis];
      }
      return Status::ok();
    }
    case OpKind::Patchify: {
      Shape in = local(op.operand(0));
      int64_t p = op.attrs.getInt("patch");
      int64_t b = in[0], c = in[1], h = in[2], w = in[3], ph = h / p, pw = w / p;
      // Output [b, i, j, c, y, x] (row-major) from input [b, c, i*p + y, j*p + x].
      Shape shape{b, ph, pw, c, p, p};
      Shape src{c * h * w, p * w, p, h * w, w, 1};
      call(makeCopy(shape, src, 0, rowMajorStrides(shape), 0, vw), args({result, operands[0]}), op,
           atLoad);
      return Status::ok();
    }
    case OpKind::ToManual:
    case OpKind::FromManual:
      // Only what the values mean changes; the values move only if plan-memory gave the result
      // a place of its own.
      copyValue(op, op.operand(0), atLoad);
      return Status::ok();
    case OpKind::AllSlice: {
      // This device's block of a dimension every device holds whole.
      Shape in = local(op.operand(0));
      Shape inStrides = rowMajorStrides(in);
      auto dim = static_cast<size_t>(op.attrs.getInt("dim"));
      BufferRef from = operands[0];
      from.axis = m_.mesh.axisIndex(op.meshAxisName());
      from.rotation = op.attrs.has("rotation") ? op.attrs.getInt("rotation") : 0;
      from.blockBytes = out[dim] * inStrides[dim] * 4;
      call(makeCopy(out, inStrides, 0, rowMajorStrides(out), 0, vw), args({result, from}), op,
           atLoad);
      return Status::ok();
    }
    case OpKind::RingConcat: {
      // Operand s holds block (c + s) mod k of the dimension.
      auto dim = static_cast<size_t>(op.attrs.getInt("dim"));
      Shape outStrides = rowMajorStrides(out);
      for (size_t s = 0; s < op.operands.size(); ++s) {
        Shape block = local(op.operand(s));
        BufferRef to = result;
        to.axis = m_.mesh.axisIndex(op.meshAxisName());
        to.rotation = static_cast<int64_t>(s);
        to.blockBytes = block[dim] * outStrides[dim] * 4;
        call(makeCopy(block, rowMajorStrides(block), 0, outStrides, 0, vw), args({to, operands[s]}),
             op, atLoad);
      }
      return Status::ok();
    }
    case OpKind::Convert: {
      ConvertDesc d;
      d.cols = out.empty() ? 1 : out.back();
      d.rows = numElements(out) / d.cols;
      d.toBf16 = op.type.dtype == ir::DType::BF16;
      d.vectorWidth = vw;
      if (op.operand(0)->type.dtype != op.type.dtype) {
        call(d, args({result, operands[0]}), op, atLoad);
        return Status::ok();
      }
      if (!d.toBf16) { // f32 to f32 changes nothing
        copyValue(op, op.operand(0), atLoad);
        return Status::ok();
      }
      return makeError(op.loc, "%{}: the llvm backend cannot convert bf16 to bf16", op.name);
    }
    case OpKind::MatMul:
    case OpKind::FusedLinear:
      return lowerMatmul(op, atLoad);
    case OpKind::Attention:
      return lowerAttention(op, atLoad);
    case OpKind::Reshard:
      return makeError(op.loc, "%{}: reshard must be lowered by insert-collectives first", op.name);
    default:
      return makeError(op.loc, "%{}: the llvm backend cannot run '{}' here", op.name, op.keyword());
    }
  }

  // `op`'s value is `from`'s: a copy, unless both have one place (a done op shares its start's).
  void copyValue(const Op &op, const Op *from, bool atLoad) {
    if (at(&op) == at(from))
      return;
    call(contiguousCopy(numElements(local(&op)), tiles_.vectorWidth), {at(&op), at(from)}, op,
         atLoad);
  }

  Status lowerMatmul(const Op &op, bool atLoad) {
    Shape a = local(op.operand(0)), b = local(op.operand(1)), out = local(&op);
    MatmulDesc d;
    d.transposeB = op.attrs.getBool("transpose_b");
    d.k = a.back();
    d.n = out.back();
    d.bBatched = b.size() > 2;
    if (d.bBatched) {
      d.m = a[a.size() - 2];
      d.batch = numElements(Shape(a.begin(), a.end() - 2));
    } else {
      d.m = numElements(Shape(a.begin(), a.end() - 1));
      d.batch = 1;
    }
    if (op.operand(0)->type.dtype == ir::DType::BF16) {
      // bf16 kernels multiply pairs of the depth at a time: k counts the pairs.
      if (d.k % 2 != 0)
        return makeError(op.loc,
                         "%{}: the llvm backend multiplies bf16 over an even depth only, "
                         "got {}",
                         op.name, d.k);
      d.bf16 = true;
      d.k /= 2;
    }
    d.tiles = matmulTiles(d.m, d.n, d.k, tiles_, d.batch, d.bf16);
    if (op.is(OpKind::FusedLinear)) {
      d.bias = op.attrs.getBool("bias");
      d.gelu = op.attrs.getBool("gelu");
      d.geluApprox = op.attrs.getBool("gelu_approximate");
      d.residual = op.attrs.getBool("residual");
    }
    BufferRef bRef = at(op.operand(1));
    if (!atLoad && weightOnlyB(op)) {
      bRef = packed(op, d);
      d.bPacked = true;
      d.transposeB = false;
    }
    std::vector<BufferRef> args{at(&op), at(op.operand(0)), bRef};
    for (size_t i = 2; i < op.operands.size(); ++i)
      args.push_back(at(op.operand(i)));
    if (d.k == 0)
      return makeError(op.loc, "%{}: the llvm backend cannot multiply over an empty dimension",
                       op.name);
    if (d.batch * d.m * d.n == 0)
      return Status::ok();
    call(d, args, op, atLoad);
    return Status::ok();
  }

  bool weightOnlyB(const Op &op) const {
    const Op *b = op.operand(1);
    return where_.at(b).storage == Storage::Param || where_.at(b).storage == Storage::Const;
  }

  // The panels of a matmul's weight, packed once at load (shared by matmuls of the same weight).
  BufferRef packed(const Op &op, const MatmulDesc &mm) {
    const Op *w = op.operand(1);
    bool tb = op.attrs.getBool("transpose_b");
    auto key = std::make_pair(w, tb);
    if (auto it = packed_.find(key); it != packed_.end())
      return it->second;
    PackDesc p;
    p.bf16 = mm.bf16;
    p.batch = mm.bBatched ? mm.batch : 1;
    p.n = mm.n;
    p.k = mm.k;
    p.transposeB = tb;
    p.nr = tiles_.nr;
    p.vectorWidth = tiles_.vectorWidth;
    BufferRef ref = newConst(packedFloats(p) * 4);
    call(p, {ref, at(w)}, *w, /*atLoad=*/true);
    packed_[key] = ref;
    return ref;
  }

  Status lowerAttention(const Op &op, bool atLoad) {
    Shape q = local(op.operand(0)), k = local(op.operand(1));
    AttentionDesc d;
    d.batch = q[0];
    d.tq = q[1];
    d.tk = k[1];
    // A device holds whole heads: as many as its share of the features.
    d.heads = op.attrs.getInt("heads") * q[2] / op.operand(0)->shape()[2];
    d.dh = q[2] / d.heads;
    d.scale = static_cast<float>(op.attrs.getFloat("scale"));
    d.qkNorm = op.attrs.getBool("qk_norm");
    d.normBias = d.qkNorm && op.attrs.getBool("norm_bias");
    d.eps = d.qkNorm ? static_cast<float>(op.attrs.getFloat("eps")) : 0.0f;
    if (op.operand(0)->type.dtype == ir::DType::BF16) {
      // bf16 kernels multiply pairs of a head's features at a time.
      if (d.dh % 2 != 0)
        return makeError(op.loc,
                         "%{}: the llvm backend runs bf16 attention on an even head size only, "
                         "got {}",
                         op.name, d.dh);
      d.bf16 = true;
    }
    d.tiles = tiles_;
    d.queryChunks = attentionQueryChunks(d);
    // Rows of q, k and v are `width` elements apart, or their operand's width for views.
    int64_t *strides[] = {&d.qRow, &d.kRow, &d.vRow};
    for (size_t i = 0; i < 3; ++i)
      *strides[i] = isAttentionView(op.operand(i)) ? local(op.operand(i)->operand(0)).back()
                                                   : local(op.operand(i)).back();
    std::vector<BufferRef> args{at(&op)};
    for (const Op *o : op.operands)
      args.push_back(at(o));
    call(d, args, op, atLoad);
    return Status::ok();
  }

  Status lowerCollective(const Op &op) {
    const ir::Mesh &mesh = m_.mesh;
    bool done = op.info().has(ir::kAsyncDone);
    const Op &carrier = done ? *op.operand(0) : op; // the op with the attributes
    int axis = mesh.axisIndex(carrier.meshAxisName());
    if (axis < 0)
      return makeError(op.loc, "%{}: unknown mesh axis '{}'", op.name, carrier.meshAxisName());
    int64_t k = mesh.axisSize(axis);
    OpKind kind = ir::syncCollectiveKind(op.kind);
    if (k == 1) {
      // A group of one: every collective is the identity.
      copyValue(op, op.operand(0), false);
      return Status::ok();
    }
    CollectiveCall c;
    c.kind = kind;
    c.axis = axis;
    c.groupSize = k;
    c.opName = op.name;
    c.phase = done                             ? CollectiveCall::Phase::Done
              : op.info().has(ir::kAsyncStart) ? CollectiveCall::Phase::Start
                                               : CollectiveCall::Phase::Sync;
    if (c.phase == CollectiveCall::Phase::Done) {
      auto it = slots_.find(&carrier);
      assert(it != slots_.end() && "done op without its start");
      c = it->second;
      c.phase = CollectiveCall::Phase::Done;
      c.result = at(&op);
      c.opName = op.name;
      markRead(c.recv);
      pushCollective(c);
      return Status::ok();
    }
    const Op *x = op.operand(0);
    Shape in = local(x), out = local(&op);
    c.input = at(x);
    c.send = c.input;
    c.sendCount = numElements(in);
    c.resultCount = numElements(out);
    c.result = at(&op);
    // A start op's own buffer receives (its done op's result may be the same place); a sync op
    // receives into its result when layouts agree.
    BufferRef recv = at(&op);
    auto leadingOnes = [](const Shape &s, int64_t dim) {
      for (int64_t d = 0; d < dim; ++d)
        if (s[static_cast<size_t>(d)] != 1)
          return false;
      return true;
    };
    switch (kind) {
    case OpKind::AllGather: {
      c.dim = carrier.attrs.getInt("dim");
      int64_t rotation = x->type.sharding.dims[static_cast<size_t>(c.dim)].rotation;
      c.order.resize(static_cast<size_t>(k));
      bool identity = true;
      for (int64_t j = 0; j < k; ++j) {
        c.order[static_cast<size_t>(j)] = ((j + rotation) % k + k) % k;
        identity &= c.order[static_cast<size_t>(j)] == j;
      }
      c.blockShape = in;
      c.join = !(identity && leadingOnes(in, c.dim));
      // Blocks that need rearranging arrive in a staging buffer (a done op may share its start's
      // place, so the result cannot be both what arrived and the rearrangement).
      if (c.join)
        recv = newStaging(numElements(out) * 4);
      break;
    }
    case OpKind::ReduceScatter:
      c.dim = carrier.attrs.getInt("dim");
      c.blockShape = in;
      c.split = !leadingOnes(in, c.dim);
      if (c.split)
        c.send = newStaging(numElements(in) * 4);
      break;
    case OpKind::AllReduce:
      break;
    case OpKind::CollectivePermute:
      c.shift = carrier.attrs.getInt("shift");
      break;
    default:
      return makeError(op.loc, "%{}: not a collective", op.name);
    }
    c.recv = recv;
    markRead(c.input);
    if (c.phase == CollectiveCall::Phase::Start) {
      c.slot = plan_.numSlots++;
      slots_[&op] = c;
    }
    pushCollective(c);
    return Status::ok();
  }

  void pushCollective(const CollectiveCall &c) {
    Step s;
    s.isKernel = false;
    s.collective = c;
    plan_.run.push_back(std::move(s));
  }

  const ir::Module &m_;
  TileConfig tiles_;
  Plan plan_;
  std::unordered_map<const Op *, BufferRef> where_;
  std::unordered_set<const Op *> views_; // slices that attention reads in place
  bool isAttentionView(const Op *op) const { return views_.count(op) > 0; }
  std::map<std::string, int> index_;
  std::map<std::pair<const Op *, bool>, BufferRef> packed_;
  std::unordered_map<const Op *, CollectiveCall> slots_;
};

} // namespace

Expected<Plan> planModule(const ir::Module &m, const TileConfig &tiles) {
  // plan-memory marks the module it planned; without it no value has a place in the workspace.
  if (!m.attrs.has("workspace_bytes"))
    return makeError(Loc{},
                     "module @{} has no memory plan: the llvm backend needs the plan-memory "
                     "pass to run last (it was left out of the pipeline)",
                     m.name);
  return Planner(m, tiles).plan();
}

} // namespace vitc::llvmbe
