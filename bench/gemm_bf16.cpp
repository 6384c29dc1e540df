// vitc's bf16 matmul kernels against oneDNN's bf16 matmul primitive, single thread, on the ViT-B/16
// projection shapes (and the fused ones of fuse-parallel-linear): C[M, N] (f32) = A[M, K] (bf16) *
// W[N, K]^T (bf16), f32 accumulation. oneDNN picks AMX, AVX512-BF16 or AVX-512 kernels as the CPU
// has them (as vitc does); its weights are reordered into the layout it asks for once, as vitc's
// are packed into panels once, and each call reads a different copy of them ("cold" weights, the
// copies together larger than the last-level cache). The two take turns on each shape, so that a
// noisy machine slows them alike; the table gives medians, GFLOP/s and vitc over oneDNN.
//
//   vitc_gemm_bf16_bench
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backends/llvm/compiler.h"
#include "support/bfloat16.h"

using namespace vitc;
using Clock = std::chrono::steady_clock;

namespace {

// `n` bf16 values in [-0.5, 0.5), 64-byte aligned.
uint16_t *halves(int64_t n, int seed) {
  auto *p =
      static_cast<uint16_t *>(std::aligned_alloc(64, static_cast<size_t>((n * 2 + 63) / 64 * 64)));
  for (int64_t i = 0; i < n; ++i)
    p[i] = floatToBfloat16(static_cast<float>(((i + seed) * 7919) % 1000) / 1000.0f - 0.5f);
  return p;
}

float *floats(int64_t n) {
  return static_cast<float *>(std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main(int, char **argv) {
  // oneDNN's OpenMP runtime reads its thread count before main: set it and start again.
  if (const char *omp = std::getenv("OMP_NUM_THREADS"); !omp || std::string(omp) != "1") {
    setenv("OMP_NUM_THREADS", "1", 1);
    execv("/proc/self/exe", argv);
  }
  llvmbe::Options options;
  if (const char *home = std::getenv("HOME"); home && *home) {
    auto tiles = llvmbe::tunedTiles(options, std::string(home) + "/.cache/vitc");
    if (tiles)
      options.tiles = *tiles;
  }
  auto target = llvmbe::resolveTarget(options);
  if (!target) {
    std::fprintf(stderr, "%s\n", target.error().str().c_str());
    return 1;
  }
  std::printf("single-thread bf16 matmul (f32 accumulation), C = A * W^T, cold weights; cpu %s; "
              "vitc: %s; medians\n",
              target->cpu.c_str(),
              target->avx512Bf16 ? "vdpbf16ps" : "f32 FMAs on bf16 values (no avx512bf16)");
  std::printf("%5s %5s %5s | %9s %9s | %9s\n", "M", "K", "N", "vitc", "oneDNN", "vitc/oneDNN");
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  bool allAhead = true;
  for (int64_t m : {197, 1576}) {
    for (auto [k, n] : {std::pair<int64_t, int64_t>{768, 2304},
                        {768, 768},
                        {768, 3072},
                        {3072, 768},
                        {768, 5376},
                        {3840, 768}}) {
      auto mm = llvmbe::compileStandaloneMatmul(*target, m, n, k, /*bf16=*/true);
      if (!mm) {
        std::fprintf(stderr, "%s\n", mm.error().str().c_str());
        return 1;
      }
      uint16_t *a = halves(m * k, 1);
      float *c = floats(m * n), *cRef = floats(m * n);
      float *scratch = floats(llvmbe::scratchBytes(mm->matmul) / 4 + 16);
      // oneDNN: weights [K, N] read from W [N, K] (format ba), reordered once per copy.
      dnnl::memory::desc aDesc({m, k}, dt::bf16, tag::ab), cDesc({m, n}, dt::f32, tag::ab);
      dnnl::memory::desc wAny({k, n}, dt::bf16, tag::any), wUser({k, n}, dt::bf16, tag::ba);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(aDesc, wAny, cDesc), engine);
      dnnl::matmul product(pd);
      dnnl::memory aMem(aDesc, engine, a), cMem(cDesc, engine, cRef);
      int copies = static_cast<int>(std::max<int64_t>(2, 160'000'000 / (n * k * 2)));
      std::vector<uint16_t *> w;
      std::vector<float *> packed;
      std::vector<dnnl::memory> reordered;
      for (int i = 0; i < copies; ++i) {
        w.push_back(halves(n * k, 5 + i));
        packed.push_back(floats(llvmbe::packedFloats(mm->pack)));
        mm->packWeights(packed.back(), w.back(), scratch);
        dnnl::memory user(wUser, engine, w.back());
        reordered.emplace_back(pd.weights_desc(), engine);
        dnnl::reorder(user, reordered.back()).execute(stream, user, reordered.back());
      }
      stream.wait();
      std::vector<double> tv, td;
      int reps = m * n * k > 1'000'000'000 ? 9 : 25;
      for (int r = -1; r < reps; ++r) {
        auto i = static_cast<size_t>((r + copies) % copies);
        auto t0 = Clock::now();
        mm->multiply(c, a, packed[i], scratch);
        auto t1 = Clock::now();
        product.execute(
            stream, {{DNNL_ARG_SRC, aMem}, {DNNL_ARG_WEIGHTS, reordered[i]}, {DNNL_ARG_DST, cMem}});
        stream.wait();
        auto t2 = Clock::now();
        if (r < 0)
          continue;
        tv.push_back(std::chrono::duration<double>(t1 - t0).count());
        td.push_back(std::chrono::duration<double>(t2 - t1).count());
      }
      // The last calls used the same weights: the products agree to f32 rounding of the sums.
      double err = 0, scale = 0;
      for (int64_t i = 0; i < m * n; ++i) {
        err = std::max(err, static_cast<double>(std::fabs(c[i] - cRef[i])));
        scale = std::max(scale, static_cast<double>(std::fabs(cRef[i])));
      }
      double flops = 2.0 * static_cast<double>(m * n * k);
      double gv = flops / median(tv) / 1e9, gd = flops / median(td) / 1e9;
      allAhead &= gv >= gd;
      std::printf("%5ld %5ld %5ld | %9.1f %9.1f | %8.2fx%s\n", static_cast<long>(m),
                  static_cast<long>(k), static_cast<long>(n), gv, gd, gv / gd,
                  err > 1e-4 * scale ? "  MISMATCH" : "");
      std::free(a), std::free(c), std::free(cRef), std::free(scratch);
      for (uint16_t *p : w)
        std::free(p);
      for (float *p : packed)
        std::free(p);
    }
  }
  std::printf("(GFLOP/s)\n");
  return allAhead ? 0 : 3;
}
