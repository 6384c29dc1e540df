// Element decoding shared by the safetensors and .npy readers: half, bfloat16 and byte order.
#include <bit>
#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "frontend/formats/convert.h"

namespace vitc::formats {
namespace {

// The float32 a half decodes to, worked out from the definition of binary16 rather than by bit
// manipulation: (-1)^s * 2^(e-15) * (1 + m/1024), or 2^-14 * m/1024 for subnormals.
float halfByDefinition(uint16_t bits) {
  int sign = bits >> 15, exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  float magnitude;
  if (exponent == 0x1f)
    magnitude = mantissa ? std::nanf("") : INFINITY;
  else if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  else
    magnitude = std::ldexp(1.0f + mantissa / 1024.0f, exponent - 15);
  return sign ? -magnitude : magnitude;
}

TEST(SafetensorsNpyDecode, EveryHalfDecodesToItsValue) {
  int checked = 0;
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    float got = halfToFloat(static_cast<uint16_t>(bits));
    float want = halfByDefinition(static_cast<uint16_t>(bits));
    if (std::isnan(want)) {
      // NaNs keep their sign and payload, shifted to the top of the float32 mantissa.
      ASSERT_TRUE(std::isnan(got)) << std::hex << bits;
      ASSERT_EQ(std::bit_cast<uint32_t>(got),
                ((bits & 0x8000u) << 16) | 0x7f800000u | ((bits & 0x3ffu) << 13))
          << std::hex << bits;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << std::hex << bits;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 65536);
}

#if defined(__FLT16_MAX__)
TEST(SafetensorsNpyDecode, EveryNonNanHalfMatchesTheCompilersConversion) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    _Float16 h = std::bit_cast<_Float16>(static_cast<uint16_t>(bits));
    float want = static_cast<float>(h);
    if (std::isnan(want))
      continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(halfToFloat(static_cast<uint16_t>(bits))),
              std::bit_cast<uint32_t>(want))
        << std::hex << bits;
  }
}
#endif

TEST(SafetensorsNpyDecode, Bfloat16IsTheTopHalfOfAFloat) {
  for (uint32_t bits : {0x0000u, 0x8000u, 0x3f80u, 0x7f80u, 0xff80u, 0x7fc1u, 0x0001u, 0x4049u})
    EXPECT_EQ(std::bit_cast<uint32_t>(bfloat16ToFloat(static_cast<uint16_t>(bits))), bits << 16);
}

TEST(SafetensorsNpyDecode, UnalignedBigEndianSourceDecodes) {
  // One byte of offset so that the 4-byte loads are unaligned.
  uint8_t bytes[1 + 8] = {0xee, 0x3f, 0xc0, 0x00, 0x00, 0xc1, 0x20, 0x00, 0x00};
  float out[2];
  convertToFloat({ElementKind::Float, 4, true}, bytes + 1, 2, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -10.0f);
  convertToFloat({ElementKind::SignedInt, 2, true}, bytes + 1, 2, out);
  EXPECT_EQ(out[0], static_cast<float>(0x3fc0));
  EXPECT_EQ(out[1], 0.0f);
}

TEST(SafetensorsNpyDecode, IntegersDecodeExactlyToInt64) {
  // 2^53 + 1 has no float or double, and a uint64 above INT64_MAX none in int64_t: it saturates.
  uint8_t bytes[1 + 16];
  int64_t big = (int64_t(1) << 53) + 1;
  std::memcpy(bytes + 1, &big, 8);
  uint64_t huge = UINT64_MAX - 1;
  std::memcpy(bytes + 9, &huge, 8);
  int64_t out[2];
  convertToInt64({ElementKind::SignedInt, 8, false}, bytes + 1, 2, out);
  EXPECT_EQ(out[0], big);
  EXPECT_EQ(out[1], -2);
  convertToInt64({ElementKind::UnsignedInt, 8, false}, bytes + 1, 2, out);
  EXPECT_EQ(out[0], big);
  EXPECT_EQ(out[1], INT64_MAX);
  // Narrow types keep their sign (or lack of one) and byte order.
  uint8_t narrow[4] = {0xff, 0xfe, 0x00, 0x07};
  convertToInt64({ElementKind::SignedInt, 1, false}, narrow, 2, out);
  EXPECT_EQ(out[0], -1);
  EXPECT_EQ(out[1], -2);
  convertToInt64({ElementKind::UnsignedInt, 1, false}, narrow, 2, out);
  EXPECT_EQ(out[0], 255);
  EXPECT_EQ(out[1], 254);
  convertToInt64({ElementKind::SignedInt, 2, true}, narrow, 2, out);
  EXPECT_EQ(out[0], -2);
  EXPECT_EQ(out[1], 7);
  convertToInt64({ElementKind::UnsignedInt, 4, false}, narrow, 1, out);
  EXPECT_EQ(out[0], 0x0700feff);
}

} // namespace
} // namespace vitc::formats
