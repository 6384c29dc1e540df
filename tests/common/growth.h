// Checking that work grows about linearly with input size, for the complexity tests.
//
// Time is a noisy witness on a shared 2-core CI machine running ctest -j: the tests measured up to
// 10.5x for four times the input while the work was linear (hash maps leaving the caches, malloc
// consolidating, a neighbour test hogging a core). So the sizes differ by eight, not four: linear
// work takes 8x, quadratic 64x, and the bound 8^1.5 ~ 22.6x sits halfway between them in log
// terms. Noise of 2.8x either way decides nothing, and a quadratic part that is a quarter of the
// large run's time still fails (at a factor of four it had to be half).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace vitc::test {

inline constexpr int64_t kGrowthFactor = 8;

struct Growth {
  int64_t n = 0, factor = kGrowthFactor;
  double small = 1e30, large = 1e30; // seconds, the best of the tries

  // Between linear (factor) and quadratic (factor squared), in log terms.
  double bound() const { return std::pow(static_cast<double>(factor), 1.5); }
  bool linear() const { return large < bound() * small; }
  std::string str(const char *unit) const {
    return fmt::format("{} {}: {:.3f} s, {} {}: {:.3f} s ({:.1f}x; linear would be {}x, the bound "
                       "is {:.1f}x)",
                       n, unit, small, n * factor, unit, large, large / small, factor, bound());
  }
};

// Times `seconds(n)` and `seconds(factor * n)`, taking turns, the best of `tries` each, so that
// a busy moment of the machine does not decide. `seconds` returns the time it measured itself, so
// that building its input is not counted. Both sizes should be past the caches (50k ops or more
// of IR): below that, time per op still grows several times while the data leaves L2 and L3.
template <typename SecondsOf>
Growth measureGrowth(int64_t n, SecondsOf seconds, int64_t factor = kGrowthFactor,
                     int tries = 3) {
  Growth g;
  g.n = n;
  g.factor = factor;
  for (int i = 0; i < tries; ++i) {
    g.small = std::min(g.small, seconds(n));
    g.large = std::min(g.large, seconds(factor * n));
  }
  return g;
}

} // namespace vitc::test
