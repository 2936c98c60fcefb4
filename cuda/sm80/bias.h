// bias.h: the additive bias, fused into the score tile: x = scale * q.k + bias.
// The bias may be float16, bfloat16 or float32 (a runtime property: one uniform switch per
// tile), any strides with stride 0 on broadcast dimensions, no alignment guarantee (so it
// is read element by element; neighbouring lanes share 32-byte sectors).
#pragma once

#include "flashattn.h"
#include "sm80/kernel_params.h"
#include "sm80/tile.h"

namespace fa {
namespace sm80 {

template <typename B>
__device__ __forceinline__ float load_bias(const B* p) {
  if constexpr (std::is_same_v<B, float>) {
    return __ldg(p);
  } else if constexpr (std::is_same_v<B, __half>) {
    return __half2float(__ldg(p));
  } else {
    return __bfloat162float(__ldg(p));
  }
}

// Two neighbouring elements in one load (the caller checked the alignment).
template <typename B>
__device__ __forceinline__ float2 load_bias2(const B* p) {
  if constexpr (std::is_same_v<B, float>) {
    return __ldg(reinterpret_cast<const float2*>(p));
  } else if constexpr (std::is_same_v<B, __half>) {
    return __half22float2(__ldg(reinterpret_cast<const __half2*>(p)));
  } else {
    return __bfloat1622float2(__ldg(reinterpret_cast<const __nv_bfloat162*>(p)));
  }
}

template <typename B, int MS, int NS>
__device__ __forceinline__ void add_bias_typed(float (&s)[MS][NS][4], const B* base, int64_t sr,
                                               int row0, int col0, int sq, int sk, float scale,
                                               bool pairs, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int si = 0; si < MS; ++si) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + si * 16 + g + r * 8;
      const bool row_ok = row < sq;
      const B* rp = base + int64_t(row_ok ? row : 0) * sr + col0 + 2 * t;
      const int limit = row_ok ? sk - col0 - 2 * t : 0;
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const int c = n * 8;  // this lane's columns c and c + 1 (relative to rp)
        float2 bv;
        if (pairs && c + 1 < limit) {
          bv = load_bias2(rp + c);
        } else {
          bv.x = c < limit ? load_bias(rp + c) : 0.0f;
          bv.y = c + 1 < limit ? load_bias(rp + c + 1) : 0.0f;
        }
        s[si][n][2 * r] = fmaf(s[si][n][2 * r], scale, bv.x);
        s[si][n][2 * r + 1] = fmaf(s[si][n][2 * r + 1], scale, bv.y);
      }
    }
  }
}

// s = s * scale + bias[b, h, row, col] for a warp tile (first row `row0`, first column
// `col0`, local to the sequence); out-of-range elements get bias 0 (they are masked).
template <int MS, int NS>
__device__ __forceinline__ void add_bias(float (&s)[MS][NS][4], const BiasView& bias, int b,
                                         int h, int row0, int col0, int sq, int sk, float scale,
                                         int lane) {
  const int64_t off = int64_t(b) * bias.sb + int64_t(h) * bias.sh;
  switch (bias.dtype) {
    case FA_FLOAT32:
      add_bias_typed(s, static_cast<const float*>(bias.ptr) + off, bias.sr, row0, col0, sq, sk,
                     scale, bias.pairs, lane);
      break;
    case FA_BFLOAT16:
      add_bias_typed(s, static_cast<const __nv_bfloat16*>(bias.ptr) + off, bias.sr, row0, col0,
                     sq, sk, scale,
                     bias.pairs, lane);
      break;
    default:
      add_bias_typed(s, static_cast<const __half*>(bias.ptr) + off, bias.sr, row0, col0, sq, sk,
                     scale, bias.pairs, lane);
      break;
  }
}

}  // namespace sm80
}  // namespace fa
