// Decoding stored elements into float32.
#include "frontend/formats/convert.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

namespace vitc::formats {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the tensor file readers assume a little-endian host");

// std::byteswap is C++23.
inline uint8_t swapBytes(uint8_t v) { return v; }
inline uint16_t swapBytes(uint16_t v) { return __builtin_bswap16(v); }
inline uint32_t swapBytes(uint32_t v) { return __builtin_bswap32(v); }
inline uint64_t swapBytes(uint64_t v) { return __builtin_bswap64(v); }

template <typename T> T load(const uint8_t *p, bool bigEndian) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return bigEndian ? swapBytes(v) : v;
}

// One loop per stored type keeps the per-element work to a load, a swap and a convert.
template <typename Stored, typename Out, typename Decode>
void decodeAll(const uint8_t *src, size_t count, bool bigEndian, Out *dst, Decode decode) {
  for (size_t i = 0; i < count; ++i)
    dst[i] = decode(load<Stored>(src + i * sizeof(Stored), bigEndian));
}

template <typename Stored, typename Value, typename Out>
void castAll(const uint8_t *src, size_t count, bool bigEndian, Out *dst) {
  decodeAll<Stored>(src, count, bigEndian, dst,
                    [](Stored s) { return static_cast<Out>(std::bit_cast<Value>(s)); });
}

} // namespace

float halfToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0x1f) {
    // Infinity or NaN; the payload moves to the top of the float32 mantissa.
    out = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    out = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    out = sign; // signed zero
  } else {
    // A subnormal half is a normal float: shift the leading one up to the implicit bit.
    int shift = std::countl_zero(mantissa) - (32 - 11); // places until bit 10 is set
    mantissa = (mantissa << shift) & 0x3ffu;
    uint32_t floatExponent = static_cast<uint32_t>(127 - 15 + 1 - shift);
    out = sign | (floatExponent << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(out);
}

void convertToFloat(ElementType type, const uint8_t *src, size_t count, float *dst) {
  bool big = type.bigEndian;
  switch (type.kind) {
  case ElementKind::BFloat:
    assert(type.bytes == 2 && "bfloat16 is two bytes");
    decodeAll<uint16_t>(src, count, big, dst, bfloat16ToFloat);
    return;
  case ElementKind::Float:
    switch (type.bytes) {
    case 2:
      decodeAll<uint16_t>(src, count, big, dst, halfToFloat);
      return;
    case 4:
      if (!big) {
        std::memcpy(dst, src, count * sizeof(float));
        return;
      }
      castAll<uint32_t, float>(src, count, big, dst);
      return;
    case 8:
      castAll<uint64_t, double>(src, count, big, dst);
      return;
    }
    break;
  case ElementKind::SignedInt:
    switch (type.bytes) {
    case 1:
      castAll<uint8_t, int8_t>(src, count, big, dst);
      return;
    case 2:
      castAll<uint16_t, int16_t>(src, count, big, dst);
      return;
    case 4:
      castAll<uint32_t, int32_t>(src, count, big, dst);
      return;
    case 8:
      castAll<uint64_t, int64_t>(src, count, big, dst);
      return;
    }
    break;
  case ElementKind::UnsignedInt:
    switch (type.bytes) {
    case 1:
      castAll<uint8_t, uint8_t>(src, count, big, dst);
      return;
    case 2:
      castAll<uint16_t, uint16_t>(src, count, big, dst);
      return;
    case 4:
      castAll<uint32_t, uint32_t>(src, count, big, dst);
      return;
    case 8:
      castAll<uint64_t, uint64_t>(src, count, big, dst);
      return;
    }
    break;
  }
  assert(false && "convertToFloat: unsupported element type");
}

void convertToInt64(ElementType type, const uint8_t *src, size_t count, int64_t *dst) {
  bool big = type.bigEndian;
  bool isSigned = type.kind == ElementKind::SignedInt;
  assert((isSigned || type.kind == ElementKind::UnsignedInt) && "convertToInt64: not integers");
  switch (type.bytes) {
  case 1:
    return isSigned ? castAll<uint8_t, int8_t>(src, count, big, dst)
                    : castAll<uint8_t, uint8_t>(src, count, big, dst);
  case 2:
    return isSigned ? castAll<uint16_t, int16_t>(src, count, big, dst)
                    : castAll<uint16_t, uint16_t>(src, count, big, dst);
  case 4:
    return isSigned ? castAll<uint32_t, int32_t>(src, count, big, dst)
                    : castAll<uint32_t, uint32_t>(src, count, big, dst);
  case 8:
    if (isSigned)
      return castAll<uint64_t, int64_t>(src, count, big, dst);
    // The one case whose values int64_t cannot all hold: saturate rather than wrap to negative.
    return decodeAll<uint64_t>(src, count, big, dst, [](uint64_t v) {
      return static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX));
    });
  }
  assert(false && "convertToInt64: unsupported integer width");
}

} // namespace vitc::formats
