// fragments.h: register fragments of the mma.sync accumulator layout (common/ptx.h), which
// is also the per-warp layout of a wgmma accumulator, so sm80 and sm90 share these.
#pragma once

#include "common/ptx.h"

namespace fa {

// ---------------------------------------------------------------------------------------
// Conversions.

// Two floats -> two 16-bit values in one register, `lo` in the low half (round to nearest).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// The two 16-bit values of a register as floats.
template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t bits) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half22float2(*reinterpret_cast<const __half2*>(&bits));
  } else {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
  }
}

// ---------------------------------------------------------------------------------------
// Reductions over the 4 lanes of a quad (the lanes that share an accumulator row).

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// ---------------------------------------------------------------------------------------
// Accumulator tiles.

// The A fragment of k16 step kk built from fp32 accumulators of n8 tiles 2 kk, 2 kk + 1.
template <typename T, int NSRC>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&p)[NSRC][4], int kk) {
  a[0] = pack2<T>(p[2 * kk][0], p[2 * kk][1]);
  a[1] = pack2<T>(p[2 * kk][2], p[2 * kk][3]);
  a[2] = pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]);
  a[3] = pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3]);
}

template <int MS, int NS>
__device__ __forceinline__ void zero(float (&acc)[MS][NS][4]) {
#pragma unroll
  for (int s = 0; s < MS; ++s)
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[s][n][e] = 0.0f;
}

}  // namespace fa
