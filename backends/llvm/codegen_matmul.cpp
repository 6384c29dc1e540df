// Matmul, weight packing and attention kernels, all built on one register-tile micro-kernel.
//
// The micro-kernel ("tile") keeps rows x vecs accumulators of one vector each (by default 8 x 3
// zmm for AVX-512, 6 x 2 ymm for AVX2) and, for each step of the depth, loads `vecs` vectors of a
// packed B panel and broadcasts one A element per row into `vecs` FMAs. After the depth loop it
// adds C's previous value (later depth blocks), applies the epilogue (bias, GELU, residual, or a
// per-row scale for attention) and stores, masking the last vector of a ragged edge. Tiles are
// internal functions made once per module for each distinct shape, so kernels of equal strides
// share them.
//
// The matmul kernel follows BLIS: B is packed into panels of nr columns ([panel][k][nr], zero
// padded), at load for weights or per batch into scratch otherwise; a work item is a block of
// about mc rows and nc columns of one batch's C; for each depth block of at most kc every (column
// panel, row panel) pair runs a tile, reading A where it is (or, when too many rows of a tile
// would share an L1 set, from a copy of the block's rows at an odd cache-line stride). The A
// block and the C block stay in L2; with kc as deep as a ViT's width (the AVX-512 default) C stays
// in registers for the whole product and the B panel streams from L2, which only works because
// the row tiles of a panel prefetch the next panel into L2 between them, a slice each, a line
// every few steps: prefetching a whole panel per tile (as before) left too many misses in flight
// and stalled (143 -> 160 GFLOP/s at M = 197).
#include <algorithm>
#include <cassert>
#include <limits>

#include <llvm/IR/IntrinsicsX86.h>

#include "backends/llvm/ir_emitter.h"

namespace vitc::llvmbe {
namespace {

using Value = llvm::Value;
using Values = std::vector<Value *>;

// Vectors that go through a tile's epilogue together (GELU step by step across them; groups of 4
// to 24 measured the same).
constexpr size_t kGeluGroup = 8;

// How a tile multiplies: f32 FMAs, or (MatmulDesc::bf16) one step per pair of the depth, either
// with vdpbf16ps or, on CPUs without AVX512-BF16, as two f32 FMAs on the widened pair; or, on CPUs
// with AMX, with tdpbf16ps on tiles of 16 pairs (the pairs left over with vdpbf16ps).
enum class Product : uint8_t { F32, Bf16Dot, Bf16Widened, Amx };

// AMX tiles: rows of 64 bytes (16 words: 16 pairs of A's depth, or 16 columns of a B panel's
// pairs), and eight tile registers, which hold one A tile, up to three B tiles and their three
// C tiles.
constexpr int64_t kAmxPairs = 16;
constexpr int64_t kAmxMaxRows = 16;
constexpr int64_t kAmxMaxVecs = 3;

struct TileShape {
  Product product = Product::F32;
  int64_t rows = 0;           // accumulator rows
  int64_t vecs = 0;           // accumulator vectors per row
  int64_t lastLanes = 0;      // valid lanes of the last vector
  int64_t aRow = 0, aCol = 1; // A(i, k) = a[i * aRow + k * aCol]
  int64_t bStride = 0;        // B(k, :) = b[k * bStride ...]
  int64_t ldc = 0;            // C(i, :) = c[i * ldc ...]; the residual likewise
  bool bias = false, gelu = false, geluApprox = false, residual = false, rowScale = false;
  // Prefetch (into L2) one cache line of the B panel that later tile calls will read every
  // `prefetchEvery` steps of the depth (a power of two; 0: none), from `next` on.
  int64_t prefetchEvery = 0;

  std::string name() const {
    std::string s = "vitc.tile." + std::to_string(rows) + "x" + std::to_string(vecs) + "." +
                    std::to_string(lastLanes) + ".a" + std::to_string(aRow) + "_" +
                    std::to_string(aCol) + ".b" + std::to_string(bStride) + ".c" +
                    std::to_string(ldc);
    if (bias)
      s += ".bias";
    if (gelu)
      s += geluApprox ? ".gelu_tanh" : ".gelu";
    if (residual)
      s += ".res";
    if (rowScale)
      s += ".rowscale";
    if (prefetchEvery > 0)
      s += ".pf" + std::to_string(prefetchEvery);
    if (product == Product::Bf16Dot)
      s += ".bf16dot";
    if (product == Product::Bf16Widened)
      s += ".bf16wide";
    if (product == Product::Amx)
      s += ".amx";
    return s;
  }
};

// The product of the first depth & ~15 pairs of a tile on AMX: one A tile (the tile's rows, 16
// pairs each, read in place) and per 16 columns one B tile (16 rows of pairs of a panel) and one
// C tile, C += A B with tdpbf16ps. The C tiles are carried through the loop as vectors (LLVM's
// AMX lowering turns the casts back into tile registers) and end in a stack buffer, from which
// they come back as the accumulator vectors the epilogue takes.
Values amxProduct(Emitter &e, const TileShape &t, Value *a, Value *bp, Value *depth) {
  auto &b = e.b;
  assert(t.aCol == 1 && t.rows <= kAmxMaxRows && t.vecs <= kAmxMaxVecs && e.vw == 16 &&
         "not an AMX tile");
  auto *tileVector = llvm::FixedVectorType::get(e.i32, 256);
  auto toVector = [&](Value *tile) {
    return b.CreateIntrinsic(llvm::Intrinsic::x86_cast_tile_to_vector, {tileVector}, {tile});
  };
  auto toTile = [&](Value *v) {
    return b.CreateIntrinsic(llvm::Intrinsic::x86_cast_vector_to_tile, {tileVector}, {v});
  };
  Value *rows = b.getInt16(static_cast<uint16_t>(t.rows)), *rowBytes = b.getInt16(64);
  Value *pairs = b.getInt16(kAmxPairs);
  Values zero;
  for (int64_t v = 0; v < t.vecs; ++v)
    zero.push_back(
        toVector(b.CreateIntrinsic(llvm::Intrinsic::x86_tilezero_internal, {}, {rows, rowBytes})));
  Value *blocked = b.CreateAnd(depth, e.c64(~(kAmxPairs - 1)));
  Values c = e.loop(e.c64(0), blocked, kAmxPairs, zero, [&](Value *k, const Values &in) {
    Value *aTile = b.CreateIntrinsic(llvm::Intrinsic::x86_tileloadd64_internal, {},
                                     {rows, rowBytes, e.at(a, k), e.c64(t.aRow * 4)});
    Values out;
    for (int64_t v = 0; v < t.vecs; ++v) {
      Value *panel = e.at(bp, b.CreateAdd(b.CreateMul(k, e.c64(t.bStride)), e.c64(v * e.vw)));
      Value *bTile = b.CreateIntrinsic(llvm::Intrinsic::x86_tileloadd64_internal, {},
                                       {pairs, rowBytes, panel, e.c64(t.bStride * 4)});
      out.push_back(toVector(b.CreateIntrinsic(
          llvm::Intrinsic::x86_tdpbf16ps_internal, {},
          {rows, rowBytes, rowBytes, toTile(in[static_cast<size_t>(v)]), aTile, bTile})));
    }
    return out;
  });
  int64_t ldc = t.vecs * e.vw;
  auto *buffer = b.CreateAlloca(llvm::ArrayType::get(e.f32, static_cast<uint64_t>(t.rows * ldc)));
  buffer->setAlignment(llvm::Align(64));
  for (int64_t v = 0; v < t.vecs; ++v)
    b.CreateIntrinsic(llvm::Intrinsic::x86_tilestored64_internal, {},
                      {rows, rowBytes, e.at(buffer, v * e.vw), e.c64(ldc * 4),
                       toTile(c[static_cast<size_t>(v)])});
  Values acc;
  for (int64_t i = 0; i < t.rows; ++i)
    for (int64_t v = 0; v < t.vecs; ++v)
      acc.push_back(e.load(e.at(buffer, i * ldc + v * e.vw)));
  return acc;
}

// void tile(ptr a, ptr b, ptr c, ptr extra, ptr residual, ptr next, i64 depth, i1 accumulate)
// `extra` is the bias (at the tile's first column) or the row scales (at its first row); `next`
// the B panel to prefetch.
llvm::Function *tileFunction(Emitter &e, const TileShape &t) {
  return e.helper(
      t.name(), e.b.getVoidTy(), {e.ptr, e.ptr, e.ptr, e.ptr, e.ptr, e.ptr, e.i64, e.i1},
      [&](llvm::Function *f) {
        auto &b = e.b;
        f->addFnAttr(llvm::Attribute::NoInline);
        for (unsigned i = 0; i < 6; ++i)
          f->addParamAttr(i, llvm::Attribute::NoCapture);
        auto it = f->arg_begin();
        Value *a = &*it++, *bp = &*it++, *c = &*it++, *extra = &*it++, *res = &*it++;
        Value *next = &*it++, *depth = &*it++, *accumulate = &*it;
        auto lanesOf = [&](int64_t v) { return v + 1 == t.vecs ? t.lastLanes : e.vw; };
        size_t n = static_cast<size_t>(t.rows * t.vecs);
        Values zero(n, e.vf(0.0f));
        // bf16 pairs: a 32-bit word holds two bf16 of the depth, the even one in the low half.
        auto *pairs = llvm::FixedVectorType::get(b.getBFloatTy(), static_cast<unsigned>(2 * e.vw));
        auto *words = llvm::FixedVectorType::get(e.i32, static_cast<unsigned>(e.vw));
        Value *highHalf = llvm::ConstantInt::get(words, 0xffff0000u);
        // The f32 values of a vector of pairs: the even elements and the odd ones.
        auto widen = [&](Value *v) {
          Value *bits = b.CreateBitCast(v, words);
          return std::make_pair(b.CreateBitCast(b.CreateShl(bits, 16), e.vec),
                                b.CreateBitCast(b.CreateAnd(bits, highHalf), e.vec));
        };
        // One step of the depth: `vecs` vectors of B's row k, one broadcast of A per row (with
        // bf16, row k of B and column k of A hold pairs).
        auto step = [&](Value *k, const Values &in) {
          Values out = in;
          Value *brow = e.at(bp, b.CreateMul(k, e.c64(t.bStride)));
          Values bv;
          for (int64_t v = 0; v < t.vecs; ++v)
            bv.push_back(e.load(e.at(brow, v * e.vw)));
          std::vector<std::pair<Value *, Value *>> bWide;
          if (t.product == Product::Bf16Widened)
            for (Value *v : bv)
              bWide.push_back(widen(v));
          Value *acol = e.at(a, t.aCol == 1 ? k : b.CreateMul(k, e.c64(t.aCol)));
          for (int64_t i = 0; i < t.rows; ++i) {
            Value *s = e.splat(e.loadScalar(e.at(acol, i * t.aRow)));
            std::pair<Value *, Value *> sWide;
            if (t.product == Product::Bf16Widened)
              sWide = widen(s);
            for (int64_t v = 0; v < t.vecs; ++v) {
              size_t at = static_cast<size_t>(i * t.vecs + v);
              Value *x = bv[static_cast<size_t>(v)];
              switch (t.product) {
              case Product::F32:
                out[at] = e.fma(s, x, out[at]);
                break;
              case Product::Bf16Dot:
              case Product::Amx: // the pairs after the last whole tile
                out[at] = b.CreateIntrinsic(
                    llvm::Intrinsic::x86_avx512bf16_dpbf16ps_512, {},
                    {out[at], b.CreateBitCast(s, pairs), b.CreateBitCast(x, pairs)});
                break;
              case Product::Bf16Widened: {
                // In vdpbf16ps's order: the odd products first. Products of bf16 are exact in
                // f32, so only the two additions round.
                const auto &[even, odd] = bWide[static_cast<size_t>(v)];
                out[at] = e.fma(sWide.first, even, e.fma(sWide.second, odd, out[at]));
                break;
              }
              }
            }
          }
          return out;
        };
        Values acc;
        if (t.product == Product::Amx) {
          // Whole tiles of 16 pairs with tdpbf16ps, then the rest with vdpbf16ps.
          acc = amxProduct(e, t, a, bp, depth);
          acc = e.loop(b.CreateAnd(depth, e.c64(~(kAmxPairs - 1))), depth, 1, acc, step);
        } else if (t.prefetchEvery > 0) {
          // `prefetchEvery` steps at a time with one line prefetched, then the steps left over.
          int64_t every = t.prefetchEvery;
          Value *blocked = b.CreateAnd(depth, e.c64(~(every - 1)));
          acc = e.loop(e.c64(0), blocked, every, zero, [&](Value *k0, const Values &in) {
            Value *line = b.CreateMul(b.CreateLShr(k0, e.c64(llvm::Log2_64(every))), e.c64(16));
            b.CreateIntrinsic(llvm::Intrinsic::prefetch, {e.ptr},
                              {e.at(next, line), b.getInt32(0), b.getInt32(2), b.getInt32(1)});
            Values out = in;
            for (int64_t j = 0; j < every; ++j)
              out = step(b.CreateAdd(k0, e.c64(j)), out);
            return out;
          });
          acc = e.loop(blocked, depth, 1, acc, step);
        } else {
          acc = e.loop(e.c64(0), depth, 1, zero, step);
        }
        acc = e.ifElse(
            accumulate,
            [&] {
              Values sum = acc;
              for (int64_t i = 0; i < t.rows; ++i)
                for (int64_t v = 0; v < t.vecs; ++v) {
                  size_t at = static_cast<size_t>(i * t.vecs + v);
                  sum[at] =
                      b.CreateFAdd(sum[at], e.load(e.at(c, i * t.ldc + v * e.vw), lanesOf(v)));
                }
              return sum;
            },
            [&] { return acc; });
        // Epilogue, a few vectors at a time: bias, GELU (the group side by side), residual or
        // row scale, store.
        for (size_t g = 0; g < n; g += kGeluGroup) {
          size_t groupEnd = std::min(n, g + kGeluGroup);
          Values x;
          for (size_t at = g; at < groupEnd; ++at) {
            int64_t v = static_cast<int64_t>(at) % t.vecs;
            x.push_back(t.bias ? b.CreateFAdd(acc[at], e.load(e.at(extra, v * e.vw), lanesOf(v)))
                               : acc[at]);
          }
          if (t.gelu)
            x = e.gelu(x, t.geluApprox);
          for (size_t at = g; at < groupEnd; ++at) {
            int64_t i = static_cast<int64_t>(at) / t.vecs, v = static_cast<int64_t>(at) % t.vecs;
            Value *y = x[at - g];
            int64_t lanes = lanesOf(v);
            if (t.residual)
              y = b.CreateFAdd(y, e.load(e.at(res, i * t.ldc + v * e.vw), lanes));
            if (t.rowScale)
              y = b.CreateFMul(y, e.splat(e.loadScalar(e.at(extra, i))));
            e.store(y, e.at(c, i * t.ldc + v * e.vw), lanes);
          }
        }
        b.CreateRetVoid();
      });
}

void callTile(Emitter &e, const TileShape &t, Value *a, Value *bp, Value *c, Value *extra,
              Value *res, Value *depth, Value *accumulate, Value *next = nullptr) {
  Value *null = llvm::ConstantPointerNull::get(llvm::PointerType::get(e.ctx, 0));
  e.b.CreateCall(tileFunction(e, t), {a, bp, c, extra ? extra : null, res ? res : null,
                                      next ? next : null, depth, accumulate});
}

// Packs one panel (nr columns starting at p * nr) of a k x n B (n x k when transposed) into
// dst[k][nr], zero past column n: void pack(ptr src, ptr dst, i64 panel). With `bf16`, k counts
// pairs of B's depth (PackDesc): a transposed B already holds each column's pairs as 32-bit words
// and packs as f32 does; rows 2kk and 2kk + 1 of one that is not are interleaved.
llvm::Function *packFunction(Emitter &e, int64_t n, int64_t k, bool transposeB, int64_t nr,
                             bool bf16) {
  std::string name = "vitc.pack.n" + std::to_string(n) + ".k" + std::to_string(k) +
                     (transposeB ? ".t" : "") + ".nr" + std::to_string(nr) + (bf16 ? ".bf16" : "");
  return e.helper(name, e.b.getVoidTy(), {e.ptr, e.ptr, e.i64}, [&](llvm::Function *f) {
    auto &b = e.b;
    f->addFnAttr(llvm::Attribute::NoInline);
    auto it = f->arg_begin();
    Value *src = &*it++, *dst = &*it++, *panel = &*it;
    Value *n0 = b.CreateMul(panel, e.c64(nr));
    Value *dstPanel = e.at(dst, b.CreateMul(panel, e.c64(k * nr)));
    // Pairs of `lanes` bf16 columns from the row starting at element `at` and the row below it,
    // as a vector of 32-bit words (the even row's element in the low half).
    auto interleavedRows = [&](Value *at, int64_t lanes) {
      return e.pairHalves(e.loadHalves(e.halfAt(src, at), lanes),
                          e.loadHalves(e.halfAt(src, b.CreateAdd(at, e.c64(n))), lanes));
    };
    // The columns this panel holds are static for every panel but a ragged last one.
    auto emitPanel = [&](int64_t cols) {
      e.loop(0, k, 1, [&](Value *kk) {
        Value *out = e.at(dstPanel, b.CreateMul(kk, e.c64(nr)));
        for (int64_t v = 0; v < nr / e.vw; ++v) {
          int64_t lanes = std::min(e.vw, cols - v * e.vw);
          Value *x = e.vf(0.0f);
          if (lanes > 0) {
            Value *col = b.CreateAdd(n0, e.c64(v * e.vw));
            if (transposeB)
              x = e.gather(e.at(src, b.CreateAdd(b.CreateMul(col, e.c64(k)), kk)), k, lanes);
            else if (bf16)
              x = interleavedRows(b.CreateAdd(b.CreateMul(kk, e.c64(2 * n)), col), lanes);
            else
              x = e.load(e.at(src, b.CreateAdd(b.CreateMul(kk, e.c64(n)), col)), lanes);
          }
          e.store(x, e.at(out, v * e.vw));
        }
      });
    };
    int64_t panels = ceilDiv(n, nr);
    if (n % nr == 0) {
      emitPanel(nr);
    } else if (panels == 1) {
      emitPanel(n % nr);
    } else {
      e.ifElse(
          b.CreateICmpEQ(panel, e.c64(panels - 1)),
          [&] {
            emitPanel(n % nr);
            return Values{};
          },
          [&] {
            emitPanel(nr);
            return Values{};
          });
    }
    b.CreateRetVoid();
  });
}

} // namespace

void emitPack(Emitter &e, const PackDesc &d, const std::string &name) {
  auto &b = e.b;
  e.beginKernel(name);
  Value *dst = e.arg(0), *src = e.arg(1);
  llvm::Function *pack = packFunction(e, d.n, d.k, d.transposeB, d.nr, d.bf16);
  int64_t panels = ceilDiv(d.n, d.nr);
  e.forEachWorkItem([&](Value *w) {
    Value *batch = b.CreateUDiv(w, e.c64(panels));
    Value *panel = b.CreateURem(w, e.c64(panels));
    b.CreateCall(pack, {e.at(src, b.CreateMul(batch, e.c64(d.n * d.k))),
                        e.at(dst, b.CreateMul(batch, e.c64(roundUp(d.n, d.nr) * d.k))), panel});
  });
  b.CreateRetVoid();
}

void emitMatmul(Emitter &e, const MatmulDesc &d, const std::string &name) {
  auto &b = e.b;
  const TileConfig &t = d.tiles;
  assert(t.vectorWidth == e.vw && t.nr % e.vw == 0 && t.mc % t.mr == 0 && t.nc % t.nr == 0 &&
         "bad tile sizes");
  e.beginKernel(name);
  Value *c = e.arg(0), *a = e.arg(1), *bArg = e.arg(2);
  int64_t next = 3;
  Value *bias = d.bias ? e.arg(next++) : nullptr;
  Value *res = d.residual ? e.arg(next++) : nullptr;
  MatmulScratch ms = matmulScratch(d);
  Value *bScratch = e.at(e.scratch, ms.b);
  int64_t mBlocks = ceilDiv(d.m, t.mc), nBlocks = ceilDiv(d.n, t.nc);
  int64_t kb = depthBlock(d.k, t);
  int64_t depthBlocks = ceilDiv(d.k, kb);
  int64_t lastKb = d.k - (depthBlocks - 1) * kb;
  int64_t npad = roundUp(d.n, t.nr);
  // Column panels of a column block; the last block has `lastFull` whole panels and, when n is
  // ragged, one partial panel after them.
  int64_t blockPanels = t.nc / t.nr;
  int64_t lastFull = (d.n - (nBlocks - 1) * t.nc) / t.nr, nRem = d.n % t.nr;
  llvm::Function *pack =
      d.bPacked ? nullptr : packFunction(e, d.n, d.k, d.transposeB, t.nr, d.bf16);
  Product product = !d.bf16               ? Product::F32
                    : e.target.amxBf16    ? Product::Amx
                    : e.target.avx512Bf16 ? Product::Bf16Dot
                                          : Product::Bf16Widened;

  e.forEachWorkItem([&](Value *w) {
    Value *batch = b.CreateUDiv(w, e.c64(mBlocks * nBlocks));
    Value *inBatch = b.CreateURem(w, e.c64(mBlocks * nBlocks));
    Value *rowBlock = b.CreateUDiv(inBatch, e.c64(nBlocks));
    Value *colBlock = b.CreateURem(inBatch, e.c64(nBlocks));
    Value *ic = b.CreateMul(rowBlock, e.c64(t.mc));
    Value *rows = e.smin(e.c64(t.mc), b.CreateSub(e.c64(d.m), ic));
    Value *lastRows = b.CreateICmpEQ(rowBlock, e.c64(mBlocks - 1));
    Value *lastCols = b.CreateICmpEQ(colBlock, e.c64(nBlocks - 1));
    Value *firstPanel = b.CreateMul(colBlock, e.c64(blockPanels));
    Value *fullPanels = nBlocks == 1
                            ? e.c64(lastFull)
                            : b.CreateSelect(lastCols, e.c64(lastFull), e.c64(blockPanels));
    Value *aRows =
        e.at(a, b.CreateAdd(b.CreateMul(batch, e.c64(d.m * d.k)), b.CreateMul(ic, e.c64(d.k))));
    Value *cOffset = b.CreateAdd(b.CreateMul(batch, e.c64(d.m * d.n)), b.CreateMul(ic, e.c64(d.n)));
    Value *cRows = e.at(c, cOffset);
    Value *resRows = res ? e.at(res, cOffset) : nullptr;
    Value *panels = nullptr;
    if (d.bPacked) {
      panels = d.bBatched ? e.at(bArg, b.CreateMul(batch, e.c64(npad * d.k))) : bArg;
    } else {
      Value *src = d.bBatched ? e.at(bArg, b.CreateMul(batch, e.c64(d.k * d.n))) : bArg;
      // Pack this batch's B once: at its first work item, or the first this call sees.
      e.ifThen(b.CreateOr(b.CreateICmpEQ(w, e.begin), b.CreateICmpEQ(inBatch, e.c64(0))), [&] {
        e.loop(0, ceilDiv(d.n, t.nr), 1, [&](Value *p) { b.CreateCall(pack, {src, bScratch, p}); });
      });
      panels = bScratch;
    }

    // One depth block [pc, pc + kc): copy A's rows, then every (column panel, row panel) tile.
    auto depthBlock = [&](Value *pc, int64_t kc, Value *first, bool last) {
      Value *aBlock = e.at(aRows, pc);
      if (!ms.aInPlace) {
        aBlock = e.scratch;
        e.loop(e.c64(0), rows, 1, [&](Value *r) {
          Value *from = e.at(aRows, b.CreateAdd(b.CreateMul(r, e.c64(d.k)), pc));
          Value *to = e.at(aBlock, b.CreateMul(r, e.c64(ms.aStride)));
          e.chunks(kc, [&](Value *j, int64_t lanes) {
            e.store(e.load(e.at(from, j), lanes), e.at(to, j), lanes);
          });
        });
      }
      Value *accumulate = b.CreateNot(first);
      Value *rowPanels = b.CreateUDiv(rows, e.c64(t.mr));
      Value *depth = e.c64(kc);
      auto columnPanel = [&](Value *jr, int64_t vecs, int64_t lastLanes) {
        TileShape shape;
        // Tiles larger than AMX's registers hold use vdpbf16ps (every AMX CPU has it).
        bool amxFits = t.mr <= kAmxMaxRows && vecs <= kAmxMaxVecs;
        shape.product = product == Product::Amx && !amxFits ? Product::Bf16Dot : product;
        shape.rows = t.mr;
        shape.vecs = vecs;
        shape.lastLanes = lastLanes;
        shape.aRow = ms.aStride;
        shape.bStride = t.nr;
        shape.ldc = d.n;
        if (last) {
          shape.bias = d.bias;
          shape.gelu = d.gelu;
          shape.geluApprox = d.geluApprox;
          shape.residual = d.residual;
        }
        // The row tiles share the prefetch of the next panel's kc x nr block: each takes its
        // slice of the lines, a line every few steps, so that few misses are in flight at once.
        int64_t lines = ceilDiv(kc * t.nr, 16), slice = ceilDiv(lines, t.mc / t.mr);
        shape.prefetchEvery = 1;
        while (shape.prefetchEvery < 16 && 2 * shape.prefetchEvery * slice <= kc)
          shape.prefetchEvery *= 2;
        Value *col = b.CreateMul(jr, e.c64(t.nr));
        Value *bPanel = e.at(
            panels, b.CreateAdd(b.CreateMul(jr, e.c64(d.k * t.nr)), b.CreateMul(pc, e.c64(t.nr))));
        // The panel after this one in memory (past the last one prefetches harmlessly: prefetches
        // never fault), at the same depth.
        Value *bNext = e.at(bPanel, d.k * t.nr);
        Value *biasAt = shape.bias ? e.at(bias, col) : nullptr;
        auto rowTile = [&](const TileShape &s, Value *ir) {
          Value *r0 = b.CreateMul(ir, e.c64(t.mr));
          Value *cAt = b.CreateAdd(b.CreateMul(r0, e.c64(d.n)), col);
          callTile(e, s, e.at(aBlock, b.CreateMul(r0, e.c64(ms.aStride))), bPanel, e.at(cRows, cAt),
                   biasAt, s.residual ? e.at(resRows, cAt) : nullptr, depth, accumulate,
                   e.at(bNext, b.CreateMul(ir, e.c64(slice * 16))));
        };
        e.loop(e.c64(0), rowPanels, 1, [&](Value *ir) { rowTile(shape, ir); });
        if (d.m % t.mr != 0) {
          TileShape tail = shape;
          tail.rows = d.m % t.mr;
          e.ifThen(lastRows, [&] { rowTile(tail, rowPanels); });
        }
      };
      e.loop(firstPanel, b.CreateAdd(firstPanel, fullPanels), 1,
             [&](Value *jr) { columnPanel(jr, t.nr / e.vw, e.vw); });
      if (nRem > 0) {
        int64_t vecs = ceilDiv(nRem, e.vw);
        e.ifThen(lastCols, [&] { columnPanel(e.c64(d.n / t.nr), vecs, nRem - (vecs - 1) * e.vw); });
      }
    };
    if (depthBlocks > 1)
      e.loop(e.c64(0), e.c64((depthBlocks - 1) * kb), kb,
             [&](Value *pc) { depthBlock(pc, kb, b.CreateICmpEQ(pc, e.c64(0)), false); });
    depthBlock(e.c64((depthBlocks - 1) * kb), lastKb, b.getInt1(depthBlocks == 1), true);
  });
  b.CreateRetVoid();
}

void emitAttention(Emitter &e, const AttentionDesc &d, const std::string &name) {
  auto &b = e.b;
  const TileConfig &t = d.tiles;
  e.beginKernel(name);
  Value *out = e.arg(0), *q = e.arg(1), *k = e.arg(2), *v = e.arg(3);
  Value *qScale = nullptr, *qBias = nullptr, *kScale = nullptr, *kBias = nullptr;
  if (d.qkNorm) {
    int64_t next = 4;
    qScale = e.arg(next++);
    qBias = d.normBias ? e.arg(next++) : nullptr;
    kScale = e.arg(next++);
    kBias = d.normBias ? e.arg(next++) : nullptr;
  }
  // With bf16 both products take pairs (AMX tiles are left to the matmuls: a head's 64 features
  // are only two tiles deep).
  Product product = !d.bf16               ? Product::F32
                    : e.target.avx512Bf16 ? Product::Bf16Dot
                                          : Product::Bf16Widened;
  // The depths of the two products in 32-bit words: a head's features and the keys, or pairs of
  // them with bf16 (the last pair of an odd tk is padded with a zero key).
  int64_t features = d.bf16 ? d.dh / 2 : d.dh, keyDepth = d.bf16 ? ceilDiv(d.tk, 2) : d.tk;
  AttentionScratch as = attentionScratch(d);
  Value *kPanels = e.at(e.scratch, as.kPanels), *vPanels = e.at(e.scratch, as.vPanels);
  Value *qBlock = e.at(e.scratch, as.q), *sBlock = e.at(e.scratch, as.s);
  Value *pBlock = e.at(e.scratch, as.p), *rowScale = e.at(e.scratch, as.rowScale);
  int64_t width = d.heads * d.dh; // row stride of out
  // Row strides of q, k and v in elements (wider when they are views of a fused projection).
  int64_t qRow = d.qRow > 0 ? d.qRow : width, kRow = d.kRow > 0 ? d.kRow : width;
  int64_t vRow = d.vRow > 0 ? d.vRow : width;
  int64_t keyPanels = ceilDiv(d.tk, t.nr);
  Value *zeroHalves = llvm::Constant::getNullValue(e.halves);

  // &x[index] for an element of q, k or v.
  auto element = [&](Value *base, Value *index) {
    return d.bf16 ? e.halfAt(base, index) : e.at(base, index);
  };
  // `lanes` features of a row from feature j on, as f32 (lanes past them read as `fill`).
  auto loadFeatures = [&](Value *row, Value *j, int64_t lanes, Value *fill = nullptr) {
    if (!d.bf16)
      return e.load(e.at(row, j), lanes, fill);
    Value *x = e.widenHalves(e.loadHalves(e.halfAt(row, j), lanes));
    return fill && lanes < e.vw ? b.CreateSelect(e.mask(lanes), x, fill) : x;
  };
  // The LayerNorm of QK-norm (mean and 1 / sqrt(var + eps) of the row), or nothing.
  struct Moments {
    Value *mean = nullptr, *inv = nullptr;
  };
  auto moments = [&](Value *row) {
    Moments m;
    if (!d.qkNorm)
      return m;
    auto [mean, inv] = e.rowMoments(
        [&](Value *j, int64_t lanes, Value *fill) { return loadFeatures(row, j, lanes, fill); },
        d.dh, d.eps);
    m.mean = e.splat(mean);
    m.inv = e.splat(inv);
    return m;
  };
  // Features j.. of a row after QK-norm (with its parameters `scale` and `bias`), when qk_norm.
  auto normalize = [&](Value *x, const Moments &m, Value *scale, Value *bias, Value *j,
                       int64_t lanes) {
    if (!d.qkNorm)
      return x;
    x = b.CreateFMul(b.CreateFMul(b.CreateFSub(x, m.mean), m.inv), e.load(e.at(scale, j), lanes));
    return bias ? b.CreateFAdd(x, e.load(e.at(bias, j), lanes)) : x;
  };
  // One vector of the depth of a product, words w.. (`lanes` of them) of a row whose f32 values
  // `load(j, n)` gives: elements w.. after `f`, or with bf16 the pairs of elements 2w.. after
  // `f`, rounded to bf16.
  using Load = std::function<Value *(Value * j, int64_t lanes)>;
  using Map = std::function<Value *(Value * x, Value * j, int64_t lanes)>;
  auto depthVector = [&](const Load &load, Value *w, int64_t lanes, const Map &f) {
    if (!d.bf16)
      return f(load(w, lanes), w, lanes);
    Value *first = b.CreateMul(w, e.c64(2));
    Values half;
    for (int64_t h = 0; h < 2; ++h) {
      int64_t n = std::min(e.vw, 2 * lanes - h * e.vw);
      Value *j = b.CreateAdd(first, e.c64(h * e.vw));
      half.push_back(n > 0 ? e.roundToHalves(f(load(j, n), j, n)) : zeroHalves);
    }
    return e.joinHalves(half[0], half[1]);
  };
  auto featuresOf = [&](Value *row) -> Load {
    return [&, row](Value *j, int64_t lanes) { return loadFeatures(row, j, lanes); };
  };

  e.forEachWorkItem([&](Value *w) {
    Value *chunk = b.CreateURem(w, e.c64(d.queryChunks));
    Value *batchHead = b.CreateUDiv(w, e.c64(d.queryChunks));
    Value *batch = b.CreateUDiv(batchHead, e.c64(d.heads));
    Value *head = b.CreateURem(batchHead, e.c64(d.heads));
    Value *headCol = b.CreateMul(head, e.c64(d.dh));
    Value *qHead = element(q, b.CreateAdd(b.CreateMul(batch, e.c64(d.tq * qRow)), headCol));
    Value *kHead = element(k, b.CreateAdd(b.CreateMul(batch, e.c64(d.tk * kRow)), headCol));
    Value *vHead = element(v, b.CreateAdd(b.CreateMul(batch, e.c64(d.tk * vRow)), headCol));
    Value *oHead = e.at(out, b.CreateAdd(b.CreateMul(batch, e.c64(d.tq * width)), headCol));

    // K^T in panels of nr keys: key t's features (or pairs of them) go down column t % nr of
    // panel t / nr. Keys come in blocks of vw (a panel holds whole blocks), and each vw x vw block
    // of (key, word) is transposed in registers, so every store is a whole vector. Keys past tk
    // are zero up to the end of the last panel: they score zero and are never read, but stay free
    // of stale values.
    e.loop(0, keyPanels * t.nr, e.vw, [&](Value *k0) {
      Value *panelBase = e.at(
          kPanels, b.CreateAdd(b.CreateMul(b.CreateUDiv(k0, e.c64(t.nr)), e.c64(features * t.nr)),
                               b.CreateURem(k0, e.c64(t.nr))));
      std::vector<Value *> rowPtr, valid;
      std::vector<Moments> rowMoments;
      for (int64_t r = 0; r < e.vw; ++r) {
        Value *key = b.CreateAdd(k0, e.c64(r));
        valid.push_back(b.CreateICmpULT(key, e.c64(d.tk)));
        // Past tk, read the last key (always there) and zero it below.
        Value *clamped = b.CreateSelect(valid.back(), key, e.c64(d.tk - 1));
        rowPtr.push_back(element(kHead, b.CreateMul(clamped, e.c64(kRow))));
        rowMoments.push_back(moments(rowPtr.back()));
      }
      for (int64_t f0 = 0; f0 < features; f0 += e.vw) {
        int64_t lanes = std::min(e.vw, features - f0);
        std::vector<Value *> rows;
        for (size_t r = 0; r < rowPtr.size(); ++r) {
          Value *x = depthVector(featuresOf(rowPtr[r]), e.c64(f0), lanes,
                                 [&](Value *x, Value *j, int64_t n) {
                                   return normalize(x, rowMoments[r], kScale, kBias, j, n);
                                 });
          rows.push_back(b.CreateSelect(valid[r], x, e.vf(0.0f)));
        }
        std::vector<Value *> cols = e.transpose(rows);
        for (int64_t f = 0; f < lanes; ++f)
          e.store(cols[static_cast<size_t>(f)], e.at(panelBase, (f0 + f) * t.nr));
      }
    });
    // V in panels of nr features: [panel][t][nr], zero past dh; with bf16, word [kk][j] of a
    // panel is the pair of keys 2kk and 2kk + 1 of its feature j (zero past tk).
    auto storeValues = [&](Value *kk, const std::function<Value *(int64_t col, int64_t)> &load) {
      for (int64_t p = 0; p < ceilDiv(d.dh, t.nr); ++p)
        for (int64_t u = 0; u < t.nr / e.vw; ++u) {
          int64_t col = p * t.nr + u * e.vw;
          int64_t lanes = std::min(e.vw, d.dh - col);
          Value *x = lanes > 0 ? load(col, lanes) : e.vf(0.0f);
          e.store(x, e.at(vPanels, b.CreateAdd(e.c64(p * keyDepth * t.nr + u * e.vw),
                                               b.CreateMul(kk, e.c64(t.nr)))));
        }
    };
    if (!d.bf16) {
      e.loop(0, d.tk, 1, [&](Value *key) {
        Value *row = e.at(vHead, b.CreateMul(key, e.c64(vRow)));
        storeValues(key, [&](int64_t col, int64_t lanes) { return e.load(e.at(row, col), lanes); });
      });
    } else {
      auto pairOfKeys = [&](Value *kk, bool lastOfOdd) {
        Value *even = element(vHead, b.CreateMul(kk, e.c64(2 * vRow)));
        storeValues(kk, [&](int64_t col, int64_t lanes) {
          Value *odd =
              lastOfOdd ? zeroHalves : e.loadHalves(e.halfAt(even, e.c64(vRow + col)), lanes);
          return e.pairHalves(e.loadHalves(e.halfAt(even, e.c64(col)), lanes), odd);
        });
      };
      e.loop(0, d.tk / 2, 1, [&](Value *kk) { pairOfKeys(kk, false); });
      if (d.tk % 2 != 0)
        pairOfKeys(e.c64(d.tk / 2), true);
    }

    // One block of `rows` queries starting at q0.
    auto queryBlock = [&](Value *q0, int64_t rows) {
      for (int64_t i = 0; i < rows; ++i) {
        Value *row = element(qHead, b.CreateMul(b.CreateAdd(q0, e.c64(i)), e.c64(qRow)));
        Moments m = moments(row);
        e.chunks(features, [&](Value *j, int64_t lanes) {
          Value *x = depthVector(featuresOf(row), j, lanes, [&](Value *x, Value *f, int64_t n) {
            return b.CreateFMul(normalize(x, m, qScale, qBias, f, n), e.vf(d.scale));
          });
          e.store(x, e.at(qBlock, b.CreateAdd(j, e.c64(i * as.qStride))), lanes);
        });
      }
      TileShape scores;
      scores.product = product;
      scores.rows = rows;
      scores.vecs = t.nr / e.vw;
      scores.lastLanes = e.vw;
      scores.aRow = as.qStride;
      scores.bStride = t.nr;
      scores.ldc = as.sStride;
      auto scorePanel = [&](const TileShape &shape, Value *p) {
        callTile(e, shape, qBlock, e.at(kPanels, b.CreateMul(p, e.c64(features * t.nr))),
                 e.at(sBlock, b.CreateMul(p, e.c64(t.nr))), nullptr, nullptr, e.c64(features),
                 b.getFalse());
      };
      e.loop(0, d.tk / t.nr, 1, [&](Value *p) { scorePanel(scores, p); });
      if (int64_t rest = d.tk % t.nr; rest > 0) {
        // The last keys: only the vectors that hold some (197 keys are 4 x 48 and 5 more).
        TileShape tail = scores;
        tail.vecs = ceilDiv(rest, e.vw);
        scorePanel(tail, e.c64(d.tk / t.nr));
      }
      // Softmax numerators in place; 1 / sum per row for the epilogue.
      Value *minusInf = e.vf(-std::numeric_limits<float>::infinity());
      // The block's rows go side by side, so that their reductions overlap.
      Values rowAt;
      for (int64_t i = 0; i < rows; ++i)
        rowAt.push_back(e.at(sBlock, i * as.sStride));
      size_t nRows = rowAt.size();
      Values mx =
          e.chunks(d.tk, Values(nRows, minusInf), [&](Value *j, int64_t lanes, const Values &acc) {
            Values out;
            for (size_t i = 0; i < nRows; ++i)
              out.push_back(e.max(acc[i], e.load(e.at(rowAt[i], j), lanes, minusInf)));
            return out;
          });
      for (Value *&m : mx)
        m = e.splat(e.maxOf(m));
      Values sum = e.chunks(d.tk, Values(nRows, e.vf(0.0f)),
                            [&](Value *j, int64_t lanes, const Values &acc) {
                              Values out;
                              for (size_t i = 0; i < nRows; ++i) {
                                Value *at = e.at(rowAt[i], j);
                                Value *p = e.exp(b.CreateFSub(e.load(at, lanes), mx[i]));
                                e.store(p, at, lanes);
                                if (lanes < e.vw)
                                  p = b.CreateSelect(e.mask(lanes), p, e.vf(0.0f));
                                out.push_back(b.CreateFAdd(acc[i], p));
                              }
                              return out;
                            });
      for (size_t i = 0; i < nRows; ++i)
        e.storeScalar(b.CreateFDiv(e.cf(1.0f), e.sumOf(sum[i])),
                      e.at(rowScale, static_cast<int64_t>(i)));
      // With bf16, the numerators (the sums above are of the f32 ones) rounded into pairs of
      // keys; an odd tk's last pair takes a zero (the score block's rows are longer than tk).
      Value *pv = sBlock;
      int64_t pvRow = as.sStride;
      if (d.bf16) {
        for (size_t i = 0; i < nRows; ++i) {
          if (d.tk % 2 != 0)
            e.storeScalar(e.cf(0.0f), e.at(rowAt[i], d.tk));
          Value *pRow = e.at(pBlock, static_cast<int64_t>(i) * as.pStride);
          e.chunks(keyDepth, [&](Value *j, int64_t lanes) {
            Value *x =
                depthVector([&](Value *key, int64_t n) { return e.load(e.at(rowAt[i], key), n); },
                            j, lanes, [](Value *x, Value *, int64_t) { return x; });
            e.store(x, e.at(pRow, j), lanes);
          });
        }
        pv = pBlock;
        pvRow = as.pStride;
      }
      // O = P V / sum, written straight into the head's columns of the output.
      Value *oRows = e.at(oHead, b.CreateMul(q0, e.c64(width)));
      for (int64_t p = 0; p < ceilDiv(d.dh, t.nr); ++p) {
        int64_t cols = std::min(t.nr, d.dh - p * t.nr);
        TileShape pvTile;
        pvTile.product = product;
        pvTile.rows = rows;
        pvTile.vecs = ceilDiv(cols, e.vw);
        pvTile.lastLanes = cols - (pvTile.vecs - 1) * e.vw;
        pvTile.aRow = pvRow;
        pvTile.bStride = t.nr;
        pvTile.ldc = width;
        pvTile.rowScale = true;
        callTile(e, pvTile, pv, e.at(vPanels, p * keyDepth * t.nr), e.at(oRows, p * t.nr), rowScale,
                 nullptr, e.c64(keyDepth), b.getFalse());
      }
    };
    // This work item's queries: whole row tiles of its chunk, then (in the last chunk) the rest.
    int64_t chunkRows = attentionChunkRows(d);
    int64_t lastStart = (d.queryChunks - 1) * chunkRows;
    int64_t lastFull = (d.tq - lastStart) / t.mr * t.mr;
    assert(lastStart < d.tq && "a chunk of no queries");
    Value *first = b.CreateMul(chunk, e.c64(chunkRows));
    Value *isLast = b.CreateICmpEQ(chunk, e.c64(d.queryChunks - 1));
    Value *full = b.CreateSelect(isLast, e.c64(lastFull), e.c64(chunkRows));
    e.loop(first, b.CreateAdd(first, full), t.mr, [&](Value *q0) { queryBlock(q0, t.mr); });
    if (int64_t rest = d.tq - lastStart - lastFull; rest > 0)
      e.ifThen(isLast, [&] { queryBlock(e.c64(lastStart + lastFull), rest); });
  });
  b.CreateRetVoid();
}

} // namespace vitc::llvmbe
