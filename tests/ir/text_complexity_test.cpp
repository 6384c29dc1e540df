// Reading IR text in time about linear in its length: a long chain of ops must not make the parser
// or the verifier quadratic (an untrusted file could otherwise hold the compiler for hours).
#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ir/text.h"
#include "ir/verifier.h"
#include "tests/common/ir_chain.h"
#include "tests/common/sanitizers.h"

namespace vitc {
namespace {

// Seconds to parse and verify `text`, the best of `tries`.
double parseSeconds(const std::string &text, int tries) {
  double best = 1e30;
  for (int i = 0; i < tries; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto m = ir::parseModule(text, "chain.ir");
    EXPECT_TRUE(m) << m.error().str();
    if (m) {
      EXPECT_TRUE(ir::verify(**m).empty());
    }
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

TEST(TextComplexity, AChainFourTimesLongerTakesLessThanEightTimesTheTime) {
  int64_t n = test::kAddressSanitizer ? 25000 : 250000; // and four times that: a million ops
  std::string smallText = test::geluChainIr(n), largeText = test::geluChainIr(4 * n);
  // Taking turns, the best of three each, so that a busy moment of the machine does not decide.
  double small = 1e30, large = 1e30;
  for (int i = 0; i < 3; ++i) {
    small = std::min(small, parseSeconds(smallText, 1));
    large = std::min(large, parseSeconds(largeText, 1));
  }
  RecordProperty("seconds", fmt::format("{:.3f} {:.3f}", small, large));
  EXPECT_LT(large, 8 * small) << n << " ops: " << small << " s, " << 4 * n << " ops: " << large
                              << " s";
}

} // namespace
} // namespace vitc
