// Helpers for the tensor file format tests: a fresh folder per test, raw bytes, error matching.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/error.h"
#include "support/tensor.h"

namespace vitc::formats::testing_util {

// A folder of its own for the running test, emptied first.
inline std::string testDir() {
  const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("vitc_formats_") + info->test_suite_name() + "_" + info->name();
  for (char &c : name)
    if (c == '/')
      c = '_';
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Little-endian bytes of each value.
template <typename T> std::string le(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
  }
  return out;
}

// Big-endian bytes of each value.
template <typename T> std::string be(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    for (size_t i = sizeof(T); i-- > 0;)
      out += b[i];
  }
  return out;
}

inline Tensor tensorOf(Shape shape, const std::vector<float> &values) {
  Tensor t = Tensor::zeros(std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  for (size_t i = 0; i < values.size(); ++i)
    t.mutableData()[i] = values[i];
  return t;
}

inline std::vector<float> valuesOf(const Tensor &t) {
  return std::vector<float>(t.data(), t.data() + t.numel());
}

// Bitwise equality, so that NaN payloads and the sign of zero count.
inline std::vector<uint32_t> bitsOf(const std::vector<float> &values) {
  std::vector<uint32_t> bits;
  for (float v : values)
    bits.push_back(std::bit_cast<uint32_t>(v));
  return bits;
}

// `result` (an Expected or a Status) failed with an error located in `file` whose message contains
// `text`.
template <typename Result>
::testing::AssertionResult failsWith(const Result &result, const std::string &file,
                                     const std::string &text) {
  if (result)
    return ::testing::AssertionFailure()
           << "succeeded; expected an error containing \"" << text << "\"";
  std::string message = result.error().str();
  std::string prefix = file + ": error: ";
  if (message.rfind(prefix, 0) != 0)
    return ::testing::AssertionFailure()
           << "error \"" << message << "\" does not start with \"" << prefix << "\"";
  if (message.find(text) == std::string::npos)
    return ::testing::AssertionFailure()
           << "error \"" << message << "\" does not contain \"" << text << "\"";
  return ::testing::AssertionSuccess() << message;
}

// The names in `dir`, to check that a failed write left nothing behind.
inline std::vector<std::string> filesIn(const std::string &dir) {
  std::vector<std::string> names;
  for (const auto &e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

} // namespace vitc::formats::testing_util
