// Helpers for the training data tests: IDX files, gzip, and .npz archives of any dtype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "frontend/formats/npy.h"
#include "frontend/formats/zip_writer.h"
#include "tests/frontend/formats/format_test_util.h"

namespace vitc::train::testing_util {

using namespace formats::testing_util;

// An IDX file of unsigned bytes: the magic for `dims.size()` dimensions, the sizes, the bytes.
inline std::string idxBytes(const std::vector<uint32_t> &dims, const std::string &data) {
  std::string out = be<uint32_t>({0x0800u | static_cast<uint32_t>(dims.size())});
  for (uint32_t d : dims)
    out += be<uint32_t>({d});
  return out + data;
}

// `bytes` as one gzip member, compressed by zlib.
inline std::string gzipped(const std::string &bytes) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&z, bytes.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef *>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A .npy image of a C-ordered array of `shape` whose dtype is `descr` (3 characters, e.g. "|u1").
inline std::string npyOf(const Shape &shape, const std::string &descr, const std::string &data) {
  std::string header = formats::npyHeader(shape);
  return header.replace(header.find("<f4"), 3, descr) + data;
}

// Writes an .npz archive of the given members (`name` without `.npy`, and its .npy image).
inline void writeNpzOf(const std::string &path,
                       const std::vector<std::pair<std::string, std::string>> &arrays) {
  auto zip = formats::ZipWriter::create(path);
  ASSERT_TRUE(zip) << zip.error().str();
  for (const auto &[name, npy] : arrays)
    ASSERT_TRUE(zip->add(name + ".npy", {npy}));
  ASSERT_TRUE(zip->commit());
}

// The bytes 0, 1, ..., n-1 (mod 256).
inline std::string countingBytes(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<char>(i % 256);
  return out;
}

} // namespace vitc::train::testing_util
