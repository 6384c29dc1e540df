// The FMA limit of one core: independent chains of vector fused multiply-adds, as wide as the
// CPU has (AVX-512, else AVX2). Prints GFLOP/s; the benchmarks report percentages of it.
#include <chrono>
#include <cstdio>
#include <immintrin.h>

namespace {

constexpr long kIterations = 200'000'000;

// Twelve accumulators in named variables, so they stay in registers.
#define VITC_FMA12(T, fma)                                                                         \
  a0 = fma(a0, x, y), a1 = fma(a1, x, y), a2 = fma(a2, x, y), a3 = fma(a3, x, y),                  \
  a4 = fma(a4, x, y), a5 = fma(a5, x, y), a6 = fma(a6, x, y), a7 = fma(a7, x, y),                  \
  a8 = fma(a8, x, y), a9 = fma(a9, x, y), a10 = fma(a10, x, y), a11 = fma(a11, x, y)

__attribute__((target("avx512f"))) double peak512() {
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
  // Different starting values: equal chains would be merged into one by the compiler.
  __m512 a0 = _mm512_set1_ps(1), a1 = _mm512_set1_ps(2), a2 = _mm512_set1_ps(3),
         a3 = _mm512_set1_ps(4), a4 = _mm512_set1_ps(5), a5 = _mm512_set1_ps(6),
         a6 = _mm512_set1_ps(7), a7 = _mm512_set1_ps(8), a8 = _mm512_set1_ps(9),
         a9 = _mm512_set1_ps(10), a10 = _mm512_set1_ps(11), a11 = _mm512_set1_ps(12);
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    VITC_FMA12(__m512, _mm512_fmadd_ps);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  __m512 acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  float lanes[16], sink = 0;
  for (__m512 &a : acc) {
    _mm512_storeu_ps(lanes, a);
    for (float l : lanes)
      sink += l;
  }
  std::fprintf(stderr, "%s", sink == 12345.0f ? " " : "");
  return 2.0 * 16 * 12 * kIterations / s / 1e9;
}

__attribute__((target("avx2,fma"))) double peak256() {
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
  __m256 a0 = _mm256_set1_ps(1), a1 = _mm256_set1_ps(2), a2 = _mm256_set1_ps(3),
         a3 = _mm256_set1_ps(4), a4 = _mm256_set1_ps(5), a5 = _mm256_set1_ps(6),
         a6 = _mm256_set1_ps(7), a7 = _mm256_set1_ps(8), a8 = _mm256_set1_ps(9),
         a9 = _mm256_set1_ps(10), a10 = _mm256_set1_ps(11), a11 = _mm256_set1_ps(12);
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    VITC_FMA12(__m256, _mm256_fmadd_ps);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  __m256 acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  float lanes[8], sink = 0;
  for (__m256 &a : acc) {
    _mm256_storeu_ps(lanes, a);
    for (float l : lanes)
      sink += l;
  }
  std::fprintf(stderr, "%s", sink == 12345.0f ? " " : "");
  return 2.0 * 8 * 12 * kIterations / s / 1e9;
}

} // namespace

int main() {
  bool avx512 = __builtin_cpu_supports("avx512f");
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    double g = avx512 ? peak512() : peak256();
    best = g > best ? g : best;
  }
  std::printf("{\"isa\": \"%s\", \"gflops\": %.1f}\n", avx512 ? "avx512" : "avx2", best);
  return 0;
}
