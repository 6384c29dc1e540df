// Reading IR text in time about linear in its length: a long chain of ops must not make the parser
// or the verifier quadratic (an untrusted file could otherwise hold the compiler for hours).
#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "ir/text.h"
#include "ir/verifier.h"
#include "tests/common/growth.h"
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

TEST(TextComplexity, AChainEightTimesLongerTakesAboutEightTimesTheTime) {
  int64_t n = test::kAddressSanitizer ? 12500 : 125000; // and kGrowthFactor times: a million ops
  std::string smallText = test::geluChainIr(n);
  std::string largeText = test::geluChainIr(test::kGrowthFactor * n);
  test::Growth g = test::measureGrowth(
      n, [&](int64_t ops) { return parseSeconds(ops == n ? smallText : largeText, 1); });
  RecordProperty("seconds", fmt::format("{:.3f} {:.3f}", g.small, g.large));
  EXPECT_TRUE(g.linear()) << g.str("ops");
}

} // namespace
} // namespace vitc
