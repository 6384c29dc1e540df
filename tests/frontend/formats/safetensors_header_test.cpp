// Reading a safetensors header in time about linear in its size: a header of a million entries
// (a 70 MB header, within the size limit) must not make the repeated-key check quadratic.
#include <algorithm>
#include <chrono>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "frontend/formats/safetensors.h"
#include "tests/common/growth.h"
#include "tests/common/sanitizers.h"

namespace vitc {
namespace {

// A safetensors file of `n` empty tensors; with `repeat`, the last name is the first one again.
std::string writeEntries(const std::string &path, int64_t n, bool repeat = false) {
  std::string header = "{";
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = repeat && i == n - 1 ? 0 : i;
    header += (i ? ",\"t" : "\"t") + std::to_string(id) +
              "\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  }
  header += "}";
  while (header.size() % 8)
    header += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t size = header.size();
  for (int i = 0; i < 8; ++i)
    out.put(static_cast<char>((size >> (8 * i)) & 0xff));
  out << header;
  return path;
}

// Seconds to open the file at `path` of `n` entries.
double openSeconds(const std::string &path, int64_t n) {
  auto start = std::chrono::steady_clock::now();
  auto f = formats::SafetensorsFile::open(path);
  EXPECT_TRUE(f) << f.error().str();
  if (f) {
    EXPECT_EQ(static_cast<int64_t>(f->entries().size()), n);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(SafetensorsHeader, EightTimesTheEntriesTakeAboutEightTimesTheTime) {
  std::string dir = testing::TempDir();
  int64_t n = test::kAddressSanitizer ? 12500 : 125000; // and kGrowthFactor times: a million
  std::string small = writeEntries(dir + "/small.safetensors", n);
  std::string large = writeEntries(dir + "/large.safetensors", test::kGrowthFactor * n);
  test::Growth g = test::measureGrowth(
      n, [&](int64_t entries) { return openSeconds(entries == n ? small : large, entries); });
  RecordProperty("seconds", fmt::format("{:.3f} {:.3f}", g.small, g.large));
  EXPECT_TRUE(g.linear()) << g.str("entries");
}

TEST(SafetensorsHeader, ANameRepeatedFarApartIsStillFound) {
  std::string path = writeEntries(testing::TempDir() + "/repeat.safetensors", 1000, true);
  auto f = formats::SafetensorsFile::open(path);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().str(), path + ": error: 't0' appears twice in the header");
}

} // namespace
} // namespace vitc
