// float_convert.h: exact float16 / bfloat16 <-> float32 conversions for the CPU backend.
// Widening is exact; narrowing rounds to nearest, ties to even (as the GPU's cvt.rn),
// overflows to infinity and keeps NaN a (quiet) NaN.
#pragma once

#include <cstdint>
#include <cstring>

#include "flashattn.h"

namespace fa {

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline float float16_to_float(uint16_t half) {
  const uint32_t sign = uint32_t(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float32.
    const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t float_to_float16(float value) {
  const uint32_t bits = float_bits(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((magnitude >> 13) & 0x1ffu));
  if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a float16 subnormal in units of 2^-24; 2^-25 and below round to zero.
    if (magnitude <= 0x33000000u) return sign;
    const uint32_t exponent = magnitude >> 23;
    const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t result = significand >> shift;
    const uint32_t remainder = significand & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return uint16_t(sign | result);
  }
  // Normal: rebias the exponent (127 -> 15) and round away the low 13 mantissa bits; a carry
  // into the exponent is the correct rounding.
  uint32_t result = (magnitude - 0x38000000u) >> 13;
  const uint32_t remainder = magnitude & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u))) ++result;
  return uint16_t(sign | result);
}

inline float bfloat16_to_float(uint16_t value) { return bits_float(uint32_t(value) << 16); }

inline uint16_t float_to_bfloat16(float value) {
  const uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);  // quiet NaN
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// n elements of a float16/bfloat16 row to float32.
inline void load_row(const uint16_t* source, int32_t dtype, int64_t n, float* destination) {
  if (dtype == FA_BFLOAT16) {
    for (int64_t index = 0; index < n; ++index) destination[index] = bfloat16_to_float(source[index]);
  } else {
    for (int64_t index = 0; index < n; ++index) destination[index] = float16_to_float(source[index]);
  }
}

// n float32 values to a float16/bfloat16 row, round to nearest even.
inline void store_row(const float* source, int32_t dtype, int64_t n, uint16_t* destination) {
  if (dtype == FA_BFLOAT16) {
    for (int64_t index = 0; index < n; ++index) destination[index] = float_to_bfloat16(source[index]);
  } else {
    for (int64_t index = 0; index < n; ++index) destination[index] = float_to_float16(source[index]);
  }
}

// n elements of any floating dtype (float16, bfloat16, float32) at element offset `offset`
// of `base` to float32.
inline void load_any_row(const void* base, int32_t dtype, int64_t offset, int64_t n,
                         float* destination) {
  if (dtype == FA_FLOAT32) {
    std::memcpy(destination, static_cast<const float*>(base) + offset, size_t(n) * sizeof(float));
  } else {
    load_row(static_cast<const uint16_t*>(base) + offset, dtype, n, destination);
  }
}

inline void store_any_row(const float* source, int32_t dtype, int64_t n, void* base,
                          int64_t offset) {
  if (dtype == FA_FLOAT32) {
    std::memcpy(static_cast<float*>(base) + offset, source, size_t(n) * sizeof(float));
  } else {
    store_row(source, dtype, n, static_cast<uint16_t*>(base) + offset);
  }
}

}  // namespace fa
