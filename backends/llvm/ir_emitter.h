// IRBuilder helpers shared by the kernel generators (internal to backends/llvm).
//
// An Emitter builds one kernel function at a time: the standard signature and attributes,
// argument loads, counted loops with carried values, masked vector loads and stores for the
// ragged ends of rows (masks are constants: every shape is static), and vector math (exp, erf,
// GELU) accurate to a few float ulps.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <llvm/IR/IRBuilder.h>

#include "backends/llvm/codegen.h"

namespace vitc::llvmbe {

class Emitter {
public:
  using Value = llvm::Value;
  using Values = std::vector<Value *>;

  Emitter(llvm::Module &module, const CodegenTarget &target);

  llvm::LLVMContext &ctx;
  llvm::Module &mod;
  llvm::IRBuilder<> b;
  const CodegenTarget target;
  const int64_t vw; // floats per vector
  llvm::Type *f32, *i1, *i32, *i64, *ptr;
  llvm::FixedVectorType *vec;
  llvm::FixedVectorType *halves; // vw bf16 values as 16-bit integers

  // Starts `void name(ptr args, i64 begin, i64 end, ptr scratch)`; sets the four members below.
  llvm::Function *beginKernel(const std::string &name);
  // Starts an internal helper function with the kernel attributes.
  llvm::Function *beginHelper(const std::string &name, llvm::Type *result,
                              const std::vector<llvm::Type *> &params);
  // An internal function made once per module: `build` runs (with the builder at the new
  // function's entry, restored afterwards) only the first time `name` is asked for.
  llvm::Function *helper(const std::string &name, llvm::Type *result,
                         const std::vector<llvm::Type *> &params,
                         const std::function<void(llvm::Function *)> &build);
  void setKernelAttributes(llvm::Function *f);
  Value *args = nullptr, *begin = nullptr, *end = nullptr, *scratch = nullptr;
  Value *arg(int64_t i); // args[i], a float pointer

  Value *c64(int64_t v) { return b.getInt64(static_cast<uint64_t>(v)); }
  Value *cf(float v) { return llvm::ConstantFP::get(f32, v); }
  Value *vf(float v) { return llvm::ConstantFP::get(vec, v); }
  Value *splat(Value *scalar) { return b.CreateVectorSplat(static_cast<unsigned>(vw), scalar); }
  // &base[index] for a float pointer.
  Value *at(Value *base, Value *index) { return b.CreateGEP(f32, base, index); }
  Value *at(Value *base, int64_t index) { return index == 0 ? base : at(base, c64(index)); }

  // for (i = lo; i < hi; i += step) body(i), carrying values from one iteration to the next;
  // returns the carried values after the loop.
  Values loop(Value *lo, Value *hi, int64_t step, Values init,
              const std::function<Values(Value *i, const Values &carried)> &body);
  void loop(Value *lo, Value *hi, int64_t step, const std::function<void(Value *i)> &body);
  void loop(int64_t lo, int64_t hi, int64_t step, const std::function<void(Value *i)> &body) {
    loop(c64(lo), c64(hi), step, body);
  }
  // The work-item loop of a kernel: for (w = begin; w < end; ++w).
  void forEachWorkItem(const std::function<void(Value *w)> &body) { loop(begin, end, 1, body); }
  // Walks [0, n) in vectors: `body(j, lanes, carried)` for full vectors in a loop, then once for
  // the ragged tail (lanes < vw).
  Values chunks(int64_t n, Values init,
                const std::function<Values(Value *j, int64_t lanes, const Values &carried)> &body);
  void chunks(int64_t n, const std::function<void(Value *j, int64_t lanes)> &body);

  void ifThen(Value *cond, const std::function<void()> &then);
  Values ifElse(Value *cond, const std::function<Values()> &then,
                const std::function<Values()> &otherwise);

  // Vector loads and stores of `lanes` floats; lanes < vw are masked (lanes beyond read as
  // `fill`, or zero).
  llvm::Constant *mask(int64_t lanes);
  Value *load(Value *p, int64_t lanes = -1, Value *fill = nullptr);
  void store(Value *v, Value *p, int64_t lanes = -1);
  // Lanes i*stride apart (gathered), masked to `lanes`.
  Value *gather(Value *p, int64_t stride, int64_t lanes = -1);
  void scatter(Value *v, Value *p, int64_t stride, int64_t lanes = -1);
  Value *loadScalar(Value *p) { return b.CreateAlignedLoad(f32, p, llvm::MaybeAlign(4)); }
  void storeScalar(Value *v, Value *p) { b.CreateAlignedStore(v, p, llvm::MaybeAlign(4)); }

  // bf16 storage: &base[index] for a bf16 pointer (2-byte elements), vectors of vw of them
  // (lanes < vw masked, zero beyond), the exact f32 values of such a vector, and f32 rounded to
  // bf16 to nearest even (NaN kept, made quiet) as support/bfloat16.h does.
  Value *halfAt(Value *base, Value *index) { return b.CreateGEP(b.getInt16Ty(), base, index); }
  Value *loadHalves(Value *p, int64_t lanes = -1);
  void storeHalves(Value *h, Value *p, int64_t lanes = -1);
  Value *widenHalves(Value *h);
  Value *roundToHalves(Value *x);
  // A vector of vw 32-bit words (typed as floats, as the bf16 tiles read them) holding bf16 pairs:
  // word i is (even[i], odd[i]) (the even element in the low half), or, from `joinHalves`, the 2 vw
  // consecutive values of `low` then `high` two at a time.
  Value *pairHalves(Value *even, Value *odd);
  Value *joinHalves(Value *low, Value *high);

  // The mean of a row of `d` floats and 1 / sqrt(variance + eps), as LayerNorm needs them
  // (two passes: the sum, then the squared deviations); the row's vectors come from
  // `loadRow(j, lanes, fill)` (lanes past the row's end read as `fill`), or from `row`'s floats.
  using RowLoader = std::function<Value *(Value *j, int64_t lanes, Value *fill)>;
  std::pair<Value *, Value *> rowMoments(const RowLoader &loadRow, int64_t d, float eps);
  std::pair<Value *, Value *> rowMoments(Value *row, int64_t d, float eps);

  // The transpose of a vw x vw block held as vw row vectors: result i holds column i.
  std::vector<Value *> transpose(std::vector<Value *> rows);
  Value *fma(Value *a, Value *x, Value *c); // a * x + c, fused where the target can
  Value *sumOf(Value *v);                   // horizontal sum
  Value *maxOf(Value *v);                   // horizontal maximum
  Value *exp(Value *v);
  Value *log(Value *v); // for positive finite v
  Value *erf(Value *v);
  Values erf(const Values &xs, double scale = 1.0); // erf(scale * x) for each x
  // x / y for finite x and y, through a reciprocal estimate refined once (error about 1e-7).
  Value *finiteDiv(Value *x, Value *y);
  Value *gelu(Value *v, bool approximate);
  Values gelu(const Values &xs, bool approximate);
  Value *geluDerivative(Value *v, bool approximate); // d/dx gelu(x)
  Value *sigmoid(Value *v);
  Value *tanh(Value *v);
  Value *sqrt(Value *v);
  Value *min(Value *a, Value *c) { return b.CreateSelect(b.CreateFCmpOLT(c, a), c, a); }
  Value *max(Value *a, Value *c) { return b.CreateSelect(b.CreateFCmpOGT(c, a), c, a); }
  Value *smin(Value *a, Value *c) { return b.CreateSelect(b.CreateICmpSLT(c, a), c, a); }

private:
  std::map<std::string, llvm::Function *> helpers_;
};

// One generator per kernel kind: each emits the kernel `name` for its description.
void emitMatmul(Emitter &e, const MatmulDesc &d, const std::string &name);
void emitPack(Emitter &e, const PackDesc &d, const std::string &name);
void emitAttention(Emitter &e, const AttentionDesc &d, const std::string &name);
void emitEltwise(Emitter &e, const EltwiseDesc &d, const std::string &name);
void emitLayerNorm(Emitter &e, const LayerNormDesc &d, const std::string &name);
void emitSoftmax(Emitter &e, const SoftmaxDesc &d, const std::string &name);
void emitMean(Emitter &e, const MeanDesc &d, const std::string &name);
void emitCopy(Emitter &e, const CopyDesc &d, const std::string &name);
void emitFill(Emitter &e, const FillDesc &d, const std::string &name);
void emitConvert(Emitter &e, const ConvertDesc &d, const std::string &name);
void emitLayerNormGrad(Emitter &e, const LayerNormGradDesc &d, const std::string &name);
void emitSoftmaxGrad(Emitter &e, const SoftmaxGradDesc &d, const std::string &name);
void emitLoss(Emitter &e, const LossDesc &d, const std::string &name);

} // namespace vitc::llvmbe
