// IRBuilder helpers: kernel signature, loops, masked vectors, vector math.
#include "backends/llvm/ir_emitter.h"

#include <cassert>
#include <cmath>

#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/Module.h>

namespace vitc::llvmbe {

using llvm::BasicBlock;
using llvm::PHINode;

Emitter::Emitter(llvm::Module &module, const CodegenTarget &t)
    : ctx(module.getContext()), mod(module), b(module.getContext()), target(t), vw(t.vectorWidth) {
  f32 = b.getFloatTy();
  i1 = b.getInt1Ty();
  i32 = b.getInt32Ty();
  i64 = b.getInt64Ty();
  ptr = b.getPtrTy();
  vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(vw));
  halves = llvm::FixedVectorType::get(b.getInt16Ty(), static_cast<unsigned>(vw));
}

void Emitter::setKernelAttributes(llvm::Function *f) {
  f->addFnAttr(llvm::Attribute::NoUnwind);
  if (!target.cpu.empty())
    f->addFnAttr("target-cpu", target.cpu);
  if (!target.features.empty())
    f->addFnAttr("target-features", target.features);
  // Without these LLVM keeps explicit <16 x float> vectors out of zmm registers and vectorizes
  // loops to ymm (see shared/notes/toolchain.md).
  std::string bits = std::to_string(vw * 32);
  f->addFnAttr("min-legal-vector-width", bits);
  f->addFnAttr("prefer-vector-width", bits);
  // Divisions of finite values (finiteDiv) become a reciprocal estimate and one Newton step
  // (vrcp14ps: about 1e-7 relative error) instead of a slow vdivps; LLVM 19 does so only for an
  // fdiv marked both arcp and ninf.
  f->addFnAttr("reciprocal-estimates", "vec-divf:1");
}

Emitter::Value *Emitter::finiteDiv(Value *x, Value *y) {
  Value *q = b.CreateFDiv(x, y);
  auto *div = llvm::cast<llvm::Instruction>(q);
  div->setHasAllowReciprocal(true);
  div->setHasNoInfs(true);
  div->setHasAllowContract(true); // the Newton step in two FMAs
  return q;
}

llvm::Function *Emitter::beginKernel(const std::string &name) {
  auto *type = llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, i64, ptr}, false);
  llvm::Function *f = llvm::Function::Create(type, llvm::GlobalValue::ExternalLinkage, name, mod);
  setKernelAttributes(f);
  for (unsigned i : {0u, 3u}) {
    f->addParamAttr(i, llvm::Attribute::NoCapture);
    f->addParamAttr(i, llvm::Attribute::NoUndef);
  }
  f->addParamAttr(3, llvm::Attribute::NoAlias);
  auto it = f->arg_begin();
  args = &*it++;
  begin = &*it++;
  end = &*it++;
  scratch = &*it;
  args->setName("args");
  begin->setName("begin");
  end->setName("end");
  scratch->setName("scratch");
  b.SetInsertPoint(BasicBlock::Create(ctx, "entry", f));
  return f;
}

llvm::Function *Emitter::beginHelper(const std::string &name, llvm::Type *result,
                                     const std::vector<llvm::Type *> &params) {
  auto *type = llvm::FunctionType::get(result, params, false);
  llvm::Function *f = llvm::Function::Create(type, llvm::GlobalValue::InternalLinkage, name, mod);
  setKernelAttributes(f);
  b.SetInsertPoint(BasicBlock::Create(ctx, "entry", f));
  return f;
}

llvm::Function *Emitter::helper(const std::string &name, llvm::Type *result,
                                const std::vector<llvm::Type *> &params,
                                const std::function<void(llvm::Function *)> &build) {
  if (auto it = helpers_.find(name); it != helpers_.end())
    return it->second;
  llvm::IRBuilderBase::InsertPointGuard guard(b);
  llvm::Function *f = beginHelper(name, result, params);
  helpers_[name] = f;
  build(f);
  return f;
}

Emitter::Value *Emitter::arg(int64_t i) {
  Value *slot = b.CreateGEP(ptr, args, c64(i));
  auto *p = b.CreateAlignedLoad(ptr, slot, llvm::MaybeAlign(8), "arg" + std::to_string(i));
  return p;
}

Emitter::Values Emitter::loop(Value *lo, Value *hi, int64_t step, Values init,
                              const std::function<Values(Value *, const Values &)> &body) {
  BasicBlock *pre = b.GetInsertBlock();
  llvm::Function *f = pre->getParent();
  BasicBlock *header = BasicBlock::Create(ctx, "loop", f);
  BasicBlock *bodyBlock = BasicBlock::Create(ctx, "body", f);
  BasicBlock *exit = BasicBlock::Create(ctx, "done", f);
  b.CreateBr(header);
  b.SetInsertPoint(header);
  PHINode *i = b.CreatePHI(i64, 2, "i");
  i->addIncoming(lo, pre);
  std::vector<PHINode *> phis;
  Values carried;
  for (Value *v : init) {
    PHINode *phi = b.CreatePHI(v->getType(), 2);
    phi->addIncoming(v, pre);
    phis.push_back(phi);
    carried.push_back(phi);
  }
  b.CreateCondBr(b.CreateICmpSLT(i, hi), bodyBlock, exit);
  b.SetInsertPoint(bodyBlock);
  Values next = body(i, carried);
  assert(next.size() == phis.size() && "loop body returned the wrong number of values");
  Value *iNext = b.CreateAdd(i, c64(step), "i.next", /*HasNUW=*/true, /*HasNSW=*/true);
  BasicBlock *latch = b.GetInsertBlock();
  b.CreateBr(header);
  i->addIncoming(iNext, latch);
  for (size_t k = 0; k < phis.size(); ++k)
    phis[k]->addIncoming(next[k], latch);
  b.SetInsertPoint(exit);
  return carried;
}

void Emitter::loop(Value *lo, Value *hi, int64_t step, const std::function<void(Value *)> &body) {
  loop(lo, hi, step, {}, [&](Value *i, const Values &) {
    body(i);
    return Values{};
  });
}

Emitter::Values
Emitter::chunks(int64_t n, Values init,
                const std::function<Values(Value *, int64_t, const Values &)> &body) {
  int64_t full = n / vw * vw;
  Values carried = init;
  if (full == vw) {
    carried = body(c64(0), vw, carried);
  } else if (full > 0) {
    carried = loop(c64(0), c64(full), vw, carried,
                   [&](Value *j, const Values &c) { return body(j, vw, c); });
  }
  if (n > full)
    carried = body(c64(full), n - full, carried);
  return carried;
}

void Emitter::chunks(int64_t n, const std::function<void(Value *, int64_t)> &body) {
  chunks(n, {}, [&](Value *j, int64_t lanes, const Values &) {
    body(j, lanes);
    return Values{};
  });
}

void Emitter::ifThen(Value *cond, const std::function<void()> &then) {
  llvm::Function *f = b.GetInsertBlock()->getParent();
  BasicBlock *thenBlock = BasicBlock::Create(ctx, "then", f);
  BasicBlock *merge = BasicBlock::Create(ctx, "endif", f);
  b.CreateCondBr(cond, thenBlock, merge);
  b.SetInsertPoint(thenBlock);
  then();
  b.CreateBr(merge);
  b.SetInsertPoint(merge);
}

Emitter::Values Emitter::ifElse(Value *cond, const std::function<Values()> &then,
                                const std::function<Values()> &otherwise) {
  llvm::Function *f = b.GetInsertBlock()->getParent();
  BasicBlock *thenBlock = BasicBlock::Create(ctx, "then", f);
  BasicBlock *elseBlock = BasicBlock::Create(ctx, "else", f);
  BasicBlock *merge = BasicBlock::Create(ctx, "endif", f);
  b.CreateCondBr(cond, thenBlock, elseBlock);
  b.SetInsertPoint(thenBlock);
  Values a = then();
  BasicBlock *thenEnd = b.GetInsertBlock();
  b.CreateBr(merge);
  b.SetInsertPoint(elseBlock);
  Values c = otherwise();
  BasicBlock *elseEnd = b.GetInsertBlock();
  b.CreateBr(merge);
  b.SetInsertPoint(merge);
  assert(a.size() == c.size() && "if branches return different numbers of values");
  Values out;
  for (size_t i = 0; i < a.size(); ++i) {
    PHINode *phi = b.CreatePHI(a[i]->getType(), 2);
    phi->addIncoming(a[i], thenEnd);
    phi->addIncoming(c[i], elseEnd);
    out.push_back(phi);
  }
  return out;
}

llvm::Constant *Emitter::mask(int64_t lanes) {
  std::vector<llvm::Constant *> bits;
  for (int64_t i = 0; i < vw; ++i)
    bits.push_back(b.getInt1(i < lanes));
  return llvm::ConstantVector::get(bits);
}

Emitter::Value *Emitter::load(Value *p, int64_t lanes, Value *fill) {
  if (lanes < 0 || lanes >= vw)
    return b.CreateAlignedLoad(vec, p, llvm::MaybeAlign(4));
  if (!fill)
    fill = llvm::Constant::getNullValue(vec);
  return b.CreateMaskedLoad(vec, p, llvm::Align(4), mask(lanes), fill);
}

void Emitter::store(Value *v, Value *p, int64_t lanes) {
  if (lanes < 0 || lanes >= vw) {
    b.CreateAlignedStore(v, p, llvm::MaybeAlign(4));
    return;
  }
  b.CreateMaskedStore(v, p, llvm::Align(4), mask(lanes));
}

// Lane offsets i * stride, as 32-bit indices when they fit (gathers and scatters with 32-bit
// indices handle a whole vector per instruction).
static llvm::Constant *laneOffsets(llvm::IRBuilder<> &b, int64_t vw, int64_t stride) {
  bool narrow = stride * vw < (int64_t{1} << 31);
  std::vector<llvm::Constant *> offsets;
  for (int64_t i = 0; i < vw; ++i)
    offsets.push_back(
        narrow ? static_cast<llvm::Constant *>(b.getInt32(static_cast<uint32_t>(i * stride)))
               : b.getInt64(static_cast<uint64_t>(i * stride)));
  return llvm::ConstantVector::get(offsets);
}

Emitter::Value *Emitter::gather(Value *p, int64_t stride, int64_t lanes) {
  Value *ptrs = b.CreateGEP(f32, p, laneOffsets(b, vw, stride));
  return b.CreateMaskedGather(vec, ptrs, llvm::Align(4), mask(lanes < 0 ? vw : lanes),
                              llvm::Constant::getNullValue(vec));
}

void Emitter::scatter(Value *v, Value *p, int64_t stride, int64_t lanes) {
  Value *ptrs = b.CreateGEP(f32, p, laneOffsets(b, vw, stride));
  b.CreateMaskedScatter(v, ptrs, llvm::Align(4), mask(lanes < 0 ? vw : lanes));
}

Emitter::Value *Emitter::loadHalves(Value *p, int64_t lanes) {
  if (lanes < 0 || lanes >= vw)
    return b.CreateAlignedLoad(halves, p, llvm::Align(2));
  return b.CreateMaskedLoad(halves, p, llvm::Align(2), mask(lanes),
                            llvm::Constant::getNullValue(halves));
}

void Emitter::storeHalves(Value *h, Value *p, int64_t lanes) {
  if (lanes < 0 || lanes >= vw) {
    b.CreateAlignedStore(h, p, llvm::Align(2));
    return;
  }
  b.CreateMaskedStore(h, p, llvm::Align(2), mask(lanes));
}

Emitter::Value *Emitter::widenHalves(Value *h) {
  auto *words = llvm::FixedVectorType::get(i32, static_cast<unsigned>(vw));
  return b.CreateBitCast(b.CreateShl(b.CreateZExt(h, words), llvm::ConstantInt::get(words, 16)),
                         vec);
}

Emitter::Value *Emitter::roundToHalves(Value *x) {
  auto *words = llvm::FixedVectorType::get(i32, static_cast<unsigned>(vw));
  auto word = [&](uint32_t v) { return llvm::ConstantInt::get(words, v); };
  // Add 0x7fff and the lowest kept bit, then keep the upper half.
  Value *bits = b.CreateBitCast(x, words);
  Value *lsb = b.CreateAnd(b.CreateLShr(bits, word(16)), word(1));
  Value *rounded = b.CreateLShr(b.CreateAdd(b.CreateAdd(bits, word(0x7fff)), lsb), word(16));
  Value *nan = b.CreateOr(b.CreateLShr(bits, word(16)), word(0x40));
  return b.CreateTrunc(b.CreateSelect(b.CreateFCmpUNO(x, x), nan, rounded), halves);
}

Emitter::Value *Emitter::pairHalves(Value *even, Value *odd) {
  std::vector<int> zip;
  for (int i = 0; i < vw; ++i) {
    zip.push_back(i);
    zip.push_back(static_cast<int>(vw) + i);
  }
  return b.CreateBitCast(b.CreateShuffleVector(even, odd, zip), vec);
}

Emitter::Value *Emitter::joinHalves(Value *low, Value *high) {
  std::vector<int> both;
  for (int i = 0; i < 2 * vw; ++i)
    both.push_back(i);
  return b.CreateBitCast(b.CreateShuffleVector(low, high, both), vec);
}

std::vector<Emitter::Value *> Emitter::transpose(std::vector<Value *> r) {
  // Swap the off-diagonal blocks of size s, for s = vw/2 down to 1: element (i, k) moves to
  // (k, i) after the last stage. Two shuffles per pair of rows per stage.
  int n = static_cast<int>(vw);
  assert(static_cast<int>(r.size()) == n && "transpose takes vw rows of vw lanes");
  for (int s = n / 2; s >= 1; s /= 2) {
    std::vector<int> lo(static_cast<size_t>(n)), hi(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
      lo[static_cast<size_t>(k)] = (k & s) == 0 ? k : n + k - s;
      hi[static_cast<size_t>(k)] = (k & s) == 0 ? k + s : n + k;
    }
    for (int i = 0; i < n; ++i) {
      if (i & s)
        continue;
      Value *a = r[static_cast<size_t>(i)], *c = r[static_cast<size_t>(i + s)];
      r[static_cast<size_t>(i)] = b.CreateShuffleVector(a, c, lo);
      r[static_cast<size_t>(i + s)] = b.CreateShuffleVector(a, c, hi);
    }
  }
  return r;
}

std::pair<Emitter::Value *, Emitter::Value *> Emitter::rowMoments(Value *row, int64_t d,
                                                                  float eps) {
  return rowMoments(
      [&](Value *j, int64_t lanes, Value *fill) { return load(at(row, j), lanes, fill); }, d, eps);
}

std::pair<Emitter::Value *, Emitter::Value *> Emitter::rowMoments(const RowLoader &loadRow,
                                                                  int64_t d, float eps) {
  // The sum over the row of step(x, acc), in 4 accumulators (a ViT row is a chain of 12 or more
  // vectors: one accumulator would wait on each add in turn); lanes past d read as `fill`.
  constexpr int64_t kAccumulators = 4;
  auto rowSum = [&](Value *fill, const std::function<Value *(Value * x, Value * acc)> &step) {
    int64_t block = kAccumulators * vw, blocked = d / block * block;
    Values acc(kAccumulators, vf(0.0f));
    if (blocked > 0)
      acc = loop(c64(0), c64(blocked), block, acc, [&](Value *j, const Values &in) {
        Values out;
        for (int64_t a = 0; a < kAccumulators; ++a)
          out.push_back(
              step(loadRow(b.CreateAdd(j, c64(a * vw)), vw, fill), in[static_cast<size_t>(a)]));
        return out;
      });
    acc[0] = chunks(d - blocked, {acc[0]}, [&](Value *j, int64_t lanes, const Values &in) {
      return Values{step(loadRow(b.CreateAdd(j, c64(blocked)), lanes, fill), in[0])};
    })[0];
    return sumOf(b.CreateFAdd(b.CreateFAdd(acc[0], acc[1]), b.CreateFAdd(acc[2], acc[3])));
  };
  Value *sum = rowSum(nullptr, [&](Value *x, Value *acc) { return b.CreateFAdd(acc, x); });
  Value *mean = b.CreateFMul(sum, cf(1.0f / static_cast<float>(d)));
  Value *meanV = splat(mean);
  // Masked lanes read as the mean, so they add nothing to the squared deviations.
  Value *sq = rowSum(meanV, [&](Value *x, Value *acc) {
    Value *dev = b.CreateFSub(x, meanV);
    return fma(dev, dev, acc);
  });
  Value *var = b.CreateFMul(sq, cf(1.0f / static_cast<float>(d)));
  Value *sd = b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, b.CreateFAdd(var, cf(eps)));
  return {mean, b.CreateFDiv(cf(1.0f), sd)};
}

Emitter::Value *Emitter::fma(Value *a, Value *x, Value *c) {
  return b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {a->getType()}, {a, x, c});
}

Emitter::Value *Emitter::sumOf(Value *v) {
  Value *sum = b.CreateFAddReduce(llvm::ConstantFP::getNegativeZero(f32), v);
  // A tree of shuffles instead of vw dependent adds.
  llvm::cast<llvm::Instruction>(sum)->setHasAllowReassoc(true);
  return sum;
}

Emitter::Value *Emitter::maxOf(Value *v) {
  Value *m = b.CreateFPMaxReduce(v);
  llvm::cast<llvm::Instruction>(m)->setHasNoNaNs(true);
  return m;
}

// exp(x) = 2^n * e^r with n = round(x / ln 2) and |r| <= ln(2) / 2: r from a two-constant
// Cody-Waite reduction, e^r from a degree-6 polynomial (Cephes expf), 2^n applied by vscalefps
// with AVX-512 (one instruction) or built in the exponent bits otherwise. Relative error below
// 1e-7 over the clamped range; results below e^-87.3 round to about 1e-38 rather than to zero,
// which no caller can tell from zero.
Emitter::Value *Emitter::exp(Value *x) {
  x = max(x, vf(-87.33654f));
  x = min(x, vf(88.37626f));
  Value *n =
      b.CreateUnaryIntrinsic(llvm::Intrinsic::roundeven, b.CreateFMul(x, vf(1.44269504088896341f)));
  Value *r = fma(n, vf(-0.693359375f), x);
  r = fma(n, vf(2.12194440e-4f), r);
  Value *p = vf(1.9875691500e-4f);
  for (float c :
       {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = fma(p, r, vf(c));
  p = fma(p, b.CreateFMul(r, r), r);
  p = b.CreateFAdd(p, vf(1.0f));
  if (vw == 16) // AVX-512 (see resolveTarget)
    return b.CreateIntrinsic(llvm::Intrinsic::x86_avx512_mask_scalef_ps_512, {},
                             {p, n, vf(0.0f), b.getInt16(0xffff), b.getInt32(4)});
  auto *ivec = llvm::FixedVectorType::get(i32, static_cast<unsigned>(vw));
  Value *e = b.CreateAdd(b.CreateFPToSI(n, ivec), llvm::ConstantInt::get(ivec, 127));
  Value *scale = b.CreateBitCast(b.CreateShl(e, llvm::ConstantInt::get(ivec, 23)), vec);
  return b.CreateFMul(p, scale);
}

// log(x) = e ln 2 + log(m) with x = m 2^e, m in [sqrt(1/2), sqrt(2)): log(m) = log(1 + t) from a
// degree-9 polynomial in t = m - 1 (Cephes logf), e ln 2 in two constants. Relative error about
// 1e-7 for normal positive x; callers pass values of 1 or more (a sum of exponentials whose
// largest is 1, or 1 + exp(-|z|)).
Emitter::Value *Emitter::log(Value *x) {
  auto *ivec = llvm::FixedVectorType::get(i32, static_cast<unsigned>(vw));
  auto ic = [&](int32_t v) { return llvm::ConstantInt::get(ivec, static_cast<uint64_t>(v)); };
  Value *bits = b.CreateBitCast(x, ivec);
  // The exponent e of x as a float, and its mantissa scaled into [0.5, 1).
  Value *e = b.CreateSIToFP(b.CreateSub(b.CreateLShr(bits, ic(23)), ic(126)), vec);
  Value *m = b.CreateBitCast(b.CreateOr(b.CreateAnd(bits, ic(0x007fffff)), ic(0x3f000000)), vec);
  // Below sqrt(1/2), double the mantissa and take one from the exponent.
  Value *small = b.CreateFCmpOLT(m, vf(0.707106781186547524f));
  e = b.CreateSelect(small, b.CreateFSub(e, vf(1.0f)), e);
  Value *t = b.CreateFSub(b.CreateSelect(small, b.CreateFAdd(m, m), m), vf(1.0f));
  Value *p = vf(7.0376836292e-2f);
  for (float c : {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                  -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f})
    p = fma(p, t, vf(c));
  Value *t2 = b.CreateFMul(t, t);
  Value *y = b.CreateFMul(b.CreateFMul(p, t), t2);
  y = fma(e, vf(-2.12194440e-4f), y);
  y = fma(t2, vf(-0.5f), y);
  Value *r = b.CreateFAdd(t, y);
  return fma(e, vf(0.693359375f), r);
}

// erf as an odd rational function on [-4, 4] (outside, erf is +-1 in float): the coefficients of
// Eigen's and XLA's float erf; absolute error about 3e-7. `scale` multiplies x first (GELU's
// 1 / sqrt(2)), folded into the coefficients; the values go through each step together.
Emitter::Values Emitter::erf(const Values &xs, double scale) {
  auto each = [&](const std::function<Value *(size_t)> &f) {
    Values r;
    for (size_t i = 0; i < xs.size(); ++i)
      r.push_back(f(i));
    return r;
  };
  // erf(s x) = s x P(s^2 x^2) / Q(s^2 x^2), with |s x| <= 4.
  float bound = static_cast<float>(4.0 / scale);
  Values x = each([&](size_t i) { return max(min(xs[i], vf(bound)), vf(-bound)); });
  Values x2 = each([&](size_t i) { return b.CreateFMul(x[i], x[i]); });
  // Horner in x^2, highest degree first, with s^(2 (degree - j)) and `factor` folded into c_j.
  auto poly = [&](std::initializer_list<double> coefficients, double factor) {
    std::vector<double> c(coefficients);
    size_t degree = c.size() - 1;
    auto coefficient = [&](size_t j) {
      double power = std::pow(scale * scale, static_cast<double>(degree - j));
      return vf(static_cast<float>(c[j] * power * factor));
    };
    Values p(xs.size(), coefficient(0));
    for (size_t j = 1; j < c.size(); ++j)
      p = each([&](size_t i) { return fma(x2[i], p[i], coefficient(j)); });
    return p;
  };
  Values p = poly({-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                   -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                   -1.60960333262415e-02},
                  scale);
  p = each([&](size_t i) { return b.CreateFMul(x[i], p[i]); });
  Values q = poly({-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                   -7.37332916720468e-03, -1.42647390514189e-02},
                  1.0);
  return each([&](size_t i) { return finiteDiv(p[i], q[i]); }); // x is clamped, q < 0: finite
}

Emitter::Value *Emitter::erf(Value *x) { return erf(Values{x})[0]; }

Emitter::Values Emitter::gelu(const Values &xs, bool approximate) {
  if (approximate) {
    Values r;
    for (Value *x : xs)
      r.push_back(gelu(x, true));
    return r;
  }
  // x * Phi(x) = x/2 * (1 + erf(x / sqrt(2))) = fma(x/2, erf(x / sqrt(2)), x/2)
  Values e = erf(xs, 0.70710678118654752);
  Values r;
  for (size_t i = 0; i < xs.size(); ++i) {
    Value *half = b.CreateFMul(xs[i], vf(0.5f));
    r.push_back(fma(half, e[i], half));
  }
  return r;
}

Emitter::Value *Emitter::gelu(Value *x, bool approximate) {
  if (!approximate)
    return gelu(Values{x}, false)[0];
  // x/2 * (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) * (x + 0.044715 x^3)
  Value *x3 = b.CreateFMul(b.CreateFMul(x, x), x);
  Value *u = b.CreateFMul(fma(x3, vf(0.044715f), x), vf(0.7978845608028654f));
  Value *e = exp(b.CreateFMul(u, vf(-2.0f)));
  return b.CreateFDiv(x, b.CreateFAdd(e, vf(1.0f)));
}

Emitter::Value *Emitter::sigmoid(Value *x) {
  return b.CreateFDiv(vf(1.0f), b.CreateFAdd(exp(b.CreateFNeg(x)), vf(1.0f)));
}

// tanh(x) = 1 - 2 / (exp(2x) + 1): exp overflows to infinity for large x, which gives 1, and
// underflows to 0 for very negative x, which gives -1; near 0 the absolute error is about 1e-7.
Emitter::Value *Emitter::tanh(Value *x) {
  Value *e = exp(b.CreateFMul(x, vf(2.0f)));
  return b.CreateFSub(vf(1.0f), b.CreateFDiv(vf(2.0f), b.CreateFAdd(e, vf(1.0f))));
}

Emitter::Value *Emitter::sqrt(Value *x) { return b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x); }

Emitter::Value *Emitter::geluDerivative(Value *x, bool approximate) {
  if (approximate) {
    // With s = (1 + tanh(u)) / 2 = 1 / (1 + exp(-2u)), u = k (x + 0.044715 x^3), k = sqrt(2/pi):
    // gelu' = s + x/2 (1 - tanh^2 u) u' = s + 2 x s (1 - s) k (1 + 3 * 0.044715 x^2).
    Value *x2 = b.CreateFMul(x, x);
    Value *u = b.CreateFMul(fma(b.CreateFMul(x2, x), vf(0.044715f), x), vf(0.7978845608028654f));
    Value *s = b.CreateFDiv(vf(1.0f), b.CreateFAdd(exp(b.CreateFMul(u, vf(-2.0f))), vf(1.0f)));
    Value *du = b.CreateFMul(fma(x2, vf(3.0f * 0.044715f), vf(1.0f)), vf(0.7978845608028654f));
    Value *ds = b.CreateFMul(b.CreateFMul(s, b.CreateFSub(vf(1.0f), s)), b.CreateFMul(x, du));
    return fma(ds, vf(2.0f), s);
  }
  // Phi(x) + x phi(x) = (1 + erf(x / sqrt(2))) / 2 + x exp(-x^2 / 2) / sqrt(2 pi)
  Value *phi =
      b.CreateFMul(exp(b.CreateFMul(b.CreateFMul(x, x), vf(-0.5f))), vf(0.3989422804014327f));
  Value *cdf = fma(erf(Values{x}, 0.70710678118654752)[0], vf(0.5f), vf(0.5f));
  return fma(x, phi, cdf);
}

} // namespace vitc::llvmbe
