// bfloat16: the upper half of a float32, and rounding a float32 to it.
//
// A bfloat16 keeps float32's sign and exponent and the top 7 bits of its mantissa, so widening is
// exact (a shift) and narrowing is a rounding of the mantissa. vitc rounds to nearest, ties to
// even, as `vcvtneps2bf16` and PyTorch do; a NaN stays a NaN (made quiet, so that dropping the
// low mantissa bits cannot turn it into an infinity).
#pragma once

#include <bit>
#include <cstdint>

namespace vitc {

inline float bfloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

inline uint16_t floatToBfloat16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry out of
  // the mantissa moves to the exponent, which is the right result (up to infinity).
  uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// x rounded to the nearest bfloat16, as a float.
inline float roundToBfloat16(float x) { return bfloat16ToFloat(floatToBfloat16(x)); }

} // namespace vitc
