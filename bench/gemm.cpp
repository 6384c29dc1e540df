// vitc's matmul kernels against OpenBLAS and oneDNN, single thread, on the ViT-B/16 projection
// shapes (and the fused ones of fuse-parallel-linear): C[M, N] = A[M, K] * W[N, K]^T, W in
// PyTorch's layout. The three libraries take turns on each shape, so that a noisy machine slows
// them alike; the table gives medians, GFLOP/s, the ratio to the best peer and the percentage of
// the FMA limit. Weights are "cold" as in a forward pass: each call reads a different copy, the
// copies together larger than the last-level cache. vitc's weights are packed into panels once,
// as its programs pack them at load; the BLAS calls pack theirs in every call, as they do.
//
//   vitc_gemm_bench [FMA_PEAK_GFLOPS]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

#include <cblas.h>
#include <dnnl.h>

#include "backends/llvm/compiler.h"

using namespace vitc;
using Clock = std::chrono::steady_clock;

namespace {

float *floats(int64_t n, int seed) {
  auto *p =
      static_cast<float *>(std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)));
  for (int64_t i = 0; i < n; ++i)
    p[i] = static_cast<float>(((i + seed) * 7919) % 1000) / 1000.0f - 0.5f;
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main(int argc, char **argv) {
  // oneDNN's OpenMP runtime reads its thread count before main, and OpenBLAS its kernels: Debian's
  // OpenBLAS 0.3.21 does not know Sapphire Rapids and falls back to SSE3 kernels (about 31 GFLOP/s
  // instead of 155 here) unless told the core type. Set both and start again.
  bool again = false;
  if (const char *omp = std::getenv("OMP_NUM_THREADS"); !omp || std::string(omp) != "1") {
    setenv("OMP_NUM_THREADS", "1", 1);
    again = true;
  }
  if (!std::getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) {
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    again = true;
  }
  if (again)
    execv("/proc/self/exe", argv);
  openblas_set_num_threads(1);
  double peak = argc > 1 ? std::atof(argv[1]) : 0;
  // The tiles vitc runs with: measured on this host once and cached, as `vitc run` does.
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
  const llvmbe::TileConfig &t = target->tiles;
  std::printf("single-thread SGEMM, C = A * W^T, cold weights; cpu %s; vitc tiles %ldx%ld, kc %ld; "
              "medians\n",
              target->cpu.c_str(), static_cast<long>(t.mr), static_cast<long>(t.nr),
              static_cast<long>(t.kc));
  std::printf("%5s %5s %5s | %9s %9s %9s | %7s %7s\n", "M", "K", "N", "vitc", "OpenBLAS", "oneDNN",
              "vs best", "% peak");
  bool allAhead = true;
  for (int64_t m : {197, 1576}) {
    for (auto [k, n] : {std::pair<int64_t, int64_t>{768, 2304},
                        {768, 768},
                        {768, 3072},
                        {3072, 768},
                        {768, 5376},
                        {3840, 768}}) {
      auto mm = llvmbe::compileStandaloneMatmul(*target, m, n, k);
      if (!mm) {
        std::fprintf(stderr, "%s\n", mm.error().str().c_str());
        return 1;
      }
      float *a = floats(m * k, 1), *c = floats(m * n, 2), *cRef = floats(m * n, 3);
      float *scratch = floats(llvmbe::scratchBytes(mm->matmul) / 4 + 16, 4);
      int copies = static_cast<int>(std::max<int64_t>(2, 160'000'000 / (n * k * 4)));
      std::vector<float *> w, packed;
      for (int i = 0; i < copies; ++i) {
        w.push_back(floats(n * k, 5 + i));
        packed.push_back(floats(llvmbe::packedFloats(mm->pack), 6));
        mm->packWeights(packed.back(), w.back(), scratch);
      }
      std::vector<double> tv, tb, td;
      int reps = m * n * k > 1'000'000'000 ? 9 : 25;
      for (int r = -1; r < reps; ++r) {
        int i = (r + copies) % copies;
        auto t0 = Clock::now();
        mm->multiply(c, a, packed[static_cast<size_t>(i)], scratch);
        auto t1 = Clock::now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                    static_cast<int>(n), static_cast<int>(k), 1.0f, a, static_cast<int>(k),
                    w[static_cast<size_t>(i)], static_cast<int>(k), 0.0f, cRef,
                    static_cast<int>(n));
        auto t2 = Clock::now();
        dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, w[static_cast<size_t>(i)], k, 0.0f, cRef, n);
        auto t3 = Clock::now();
        if (r < 0)
          continue;
        tv.push_back(std::chrono::duration<double>(t1 - t0).count());
        tb.push_back(std::chrono::duration<double>(t2 - t1).count());
        td.push_back(std::chrono::duration<double>(t3 - t2).count());
      }
      // The products agree (the last call of each used the same weights).
      mm->multiply(c, a, packed[static_cast<size_t>((reps - 1 + copies) % copies)], scratch);
      double err = 0;
      for (int64_t i = 0; i < m * n; ++i)
        err = std::max(err, static_cast<double>(std::fabs(c[i] - cRef[i])));
      double flops = 2.0 * static_cast<double>(m * n * k);
      double gv = flops / median(tv) / 1e9, gb = flops / median(tb) / 1e9,
             gd = flops / median(td) / 1e9;
      double ratio = gv / std::max(gb, gd);
      allAhead &= ratio >= 1.0;
      std::printf("%5ld %5ld %5ld | %9.1f %9.1f %9.1f | %6.2fx %6.1f%%%s\n", static_cast<long>(m),
                  static_cast<long>(k), static_cast<long>(n), gv, gb, gd, ratio,
                  peak > 0 ? 100 * gv / peak : 0.0, err > 1e-2 ? "  MISMATCH" : "");
      std::free(a), std::free(c), std::free(cRef), std::free(scratch);
      for (float *p : w)
        std::free(p);
      for (float *p : packed)
        std::free(p);
    }
  }
  std::printf("(GFLOP/s; 'vs best' is vitc over the faster of OpenBLAS and oneDNN)\n");
  return allAhead ? 0 : 3;
}
