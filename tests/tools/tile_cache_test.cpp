// The tile cache (~/.cache/vitc): a cache with values the code generator cannot use is measured
// again and overwritten, with a warning that names the file, never an error.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "frontend/formats/npy.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

namespace fs = std::filesystem;

// Lines of `text` that hold `word`.
int countLines(const std::string &text, const std::string &word) {
  std::istringstream lines(text);
  int n = 0;
  for (std::string line; std::getline(lines, line);)
    n += line.find(word) != std::string::npos;
  return n;
}

class TileCache : public ::testing::TestWithParam<const char *> {};

TEST_P(TileCache, ABadCacheIsMeasuredAgainAndOverwritten) {
  std::string home = test::makeTempDir("tile-cache");
  ASSERT_TRUE(formats::writeNpy(home + "/x.npy", Tensor::zeros({1, 3, 32, 32})));
  std::vector<std::string> run{
      VITC_BINARY,     "run",      test::sourcePath("examples/parallel-tiny.vit"),
      "--weights",     "random",   "--input",
      home + "/x.npy", "--output", home + "/y.npy"};
  std::vector<std::string> env{"HOME=" + home, "VITC_TILES="};
  auto first = test::runCommand(run, env, 120);
  ASSERT_EQ(first.exit, 0) << first.err;
  // The file the first run measured and wrote, named after this host's CPU.
  std::string cache;
  for (const auto &entry : fs::directory_iterator(home + "/.cache/vitc"))
    cache = entry.path().string();
  ASSERT_FALSE(cache.empty());
  std::string text = GetParam();
  {
    std::ofstream out(cache);
    out << text;
  }
  fs::remove(home + "/y.npy");
  auto second = test::runCommand(run, env, 120);
  EXPECT_EQ(second.exit, 0) << second.err;
  EXPECT_TRUE(fs::exists(home + "/y.npy"));
  EXPECT_NE(second.err.find(cache + ": warning: ignoring the tile cache: "), std::string::npos)
      << second.err;
  EXPECT_EQ(countLines(second.err, "warning"), 1) << second.err;
  // Measured again and written whole: the next run reads it without a word.
  nlohmann::json j = nlohmann::json::parse(test::slurp(cache));
  EXPECT_GE(j.at("mr").get<int64_t>(), 1);
  EXPECT_GE(j.at("nr").get<int64_t>(), 4);
  auto third = test::runCommand(run, env, 120);
  EXPECT_EQ(third.exit, 0) << third.err;
  EXPECT_EQ(countLines(third.err, "warning"), 0) << third.err;
}

const char *const kBadCaches[] = {R"({"mr": 8, "nr": 5, "kc": 768, "mc": 160, "nc": 768})",
                                  R"({"mr": 0, "nr": 16, "kc": 256, "mc": 72, "nc": 1024})",
                                  "not json"};
const char *const kBadCacheNames[] = {"NrNotWholeVectors", "MrZero", "NotJson"};

std::string badCacheName(const ::testing::TestParamInfo<const char *> &info) {
  return kBadCacheNames[info.index];
}

INSTANTIATE_TEST_SUITE_P(Values, TileCache, ::testing::ValuesIn(kBadCaches), badCacheName);

} // namespace
} // namespace vitc
