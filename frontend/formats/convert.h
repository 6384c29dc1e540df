// Element types found in tensor files, and their conversion to float32.
//
// safetensors and NumPy files store numbers of many kinds; vitc computes in float32. This file
// holds the one place that decodes a run of stored elements (half, bfloat16, float, double and
// integers of 1 to 8 bytes, either byte order) into floats. Loads go through `memcpy`, so the
// source needs no alignment. Integers wider than 24 bits and doubles round to the nearest float;
// `convertToInt64` decodes integers exactly, for data such as class labels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "support/bfloat16.h"

namespace vitc::formats {

enum class ElementKind { Float, BFloat, SignedInt, UnsignedInt };

struct ElementType {
  ElementKind kind = ElementKind::Float;
  int bytes = 4; // Float: 2, 4 or 8; BFloat: 2; integers: 1, 2, 4 or 8
  bool bigEndian = false;
};

// IEEE 754 binary16 to float32, exactly: subnormals, infinities and NaN payloads included.
float halfToFloat(uint16_t bits);
// bfloat16 to float32, exactly: support/bfloat16.h's vitc::bfloat16ToFloat.
using vitc::bfloat16ToFloat;

// Decodes `count` elements of `type` starting at `src` into `dst`. `src` holds
// `count * type.bytes` bytes.
void convertToFloat(ElementType type, const uint8_t *src, size_t count, float *dst);

// Decodes `count` integers of `type` (SignedInt or UnsignedInt) starting at `src` into `dst`,
// exactly; unsigned 8-byte values above INT64_MAX become INT64_MAX.
void convertToInt64(ElementType type, const uint8_t *src, size_t count, int64_t *dst);

} // namespace vitc::formats
