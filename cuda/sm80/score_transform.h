// score_transform.h: common/score.h's score on a warp's tile of raw q.k accumulators, up to
// the masks, for the kernels' natural form (KernelParams::natural_scores: bias, softcap or
// ALiBi on):
//   x = scale q.k, or softcap * tanh(q.k * scale / softcap)
//   x = x + bias          (bias.h; the scale or cap is applied in the bias's pass)
//   x = x - slope |i + Sk - Sq - j|
// Without natural scores the kernels skip this and the softmax folds the scale into its
// exp2 multiplier.
//
// Accumulator layout (common/ptx.h): element s[si][n][2r + e] of lane (g = lane / 4,
// t = lane % 4) is row row0 + 16 si + 8 r + g, key col0 + 8 n + 2 t + e.
#pragma once

#include <cuda_fp16.h>

#include "common/kernel_params.h"
#include "common/score.h"
#include "sm80/bias.h"
#include "sm80/tile.h"

namespace fa {
namespace sm80 {

// The forward's softcap: softcap * tanh(x * tanh_scale) (tanh_scale = scale / softcap), by
// element pairs, so a bias pass can apply it (bias.h's `pre`).
struct Softcap {
  float tanh_scale, softcap;

  template <int MS, int NS>
  __device__ __forceinline__ void operator()(float (&s)[MS][NS][4], int si, int n, int r) const {
    s[si][n][2 * r] = capped_score(s[si][n][2 * r], tanh_scale, softcap);
    s[si][n][2 * r + 1] = capped_score(s[si][n][2 * r + 1], tanh_scale, softcap);
  }
};

// The backward's softcap: caps like Softcap and keeps each element's tanh derivative
// 1 - t^2 (t = tanh value), which turns dS (the gradient of the capped score, what dbias
// sums) into the gradient of scale q.k for dQ and dK. The derivatives are kept as fp16
// pairs, half the registers of fp32 at the kernels' 255 cap: the dS they multiply is rounded
// to 16 bits right after, and tanh.approx's own error (2^-11) exceeds fp16's rounding of
// 1 - t^2 in [0, 1].
template <int MS, int NS>
struct SoftcapGrad {
  float tanh_scale, softcap;
  uint32_t d[MS][NS][2];  // half2 of (1 - t^2) for elements 2r, 2r + 1

  __device__ __forceinline__ void operator()(float (&s)[MS][NS][4], int si, int n, int r) {
    const float t0 = fast_tanh(s[si][n][2 * r] * tanh_scale);
    const float t1 = fast_tanh(s[si][n][2 * r + 1] * tanh_scale);
    s[si][n][2 * r] = softcap * t0;
    s[si][n][2 * r + 1] = softcap * t1;
    const __half2 h = __floats2half2_rn(fmaf(-t0, t0, 1.0f), fmaf(-t1, t1, 1.0f));
    d[si][n][r] = *reinterpret_cast<const uint32_t*>(&h);
  }

  // ds *= 1 - t^2, element by element.
  __device__ __forceinline__ void apply(float (&ds)[MS][NS][4]) const {
#pragma unroll
    for (int si = 0; si < MS; ++si)
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&d[si][n][r]));
          ds[si][n][2 * r] *= f.x;
          ds[si][n][2 * r + 1] *= f.y;
        }
  }
};

// The backward's softcap where nothing else needs dS before the derivative (no dbias) and
// dS is P (dP - D) (no dropout): the derivative goes straight into dP - D, both at hand when
// the scores are capped, so nothing is kept (SoftcapGrad's registers make the d128 64 x 128
// main kernel spill 144 bytes on sm_80, this 12). The caller then takes D as 0.
template <int MS, int NS>
struct SoftcapFold {
  float tanh_scale, softcap;
  float (&dp)[MS][NS][4];      // dP, becomes (dP - D) (1 - t^2)
  const float (&dsum)[MS][2];  // D of the slab rows

  __device__ __forceinline__ void operator()(float (&s)[MS][NS][4], int si, int n, int r) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float t = fast_tanh(s[si][n][2 * r + e] * tanh_scale);
      s[si][n][2 * r + e] = softcap * t;
      dp[si][n][2 * r + e] = (dp[si][n][2 * r + e] - dsum[si][r]) * fmaf(-t, t, 1.0f);
    }
  }
};

// Applies a pair transform (bias.h's ScaleBy, Softcap, SoftcapGrad, SoftcapFold) to a tile.
template <int MS, int NS, class Pre>
__device__ __forceinline__ void transform_all(float (&s)[MS][NS][4], Pre& pre) {
#pragma unroll
  for (int si = 0; si < MS; ++si)
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int r = 0; r < 2; ++r) pre(s, si, n, r);
}

// s += ALiBi(row, key) for a warp tile whose first row is `row0` and first key `col0`
// (local to the sequence of lengths sq, sk).
template <int MS, int NS>
__device__ __forceinline__ void add_alibi(float (&s)[MS][NS][4], float slope, int row0,
                                          int col0, int sq, int sk, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int si = 0; si < MS; ++si)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + si * 16 + g + r * 8;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = col0 + n * 8 + 2 * t + e;
          s[si][n][2 * r + e] += alibi_term(slope, i, j, sq, sk);
        }
    }
}

// The transform itself, for p.natural_scores (the caller checks it). `softcap`: whether
// p.softcap > 0; `cap`: Softcap, SoftcapGrad or SoftcapFold; `add_bias(s, pre)`: the
// kernel's bias.h call (staged or direct), s = pre(s) + bias; `slope`: this (batch, head)'s
// ALiBi slope, used when p.alibi_slopes is set. The scale or the cap rides on the bias pass
// where there is a bias: one pass over the tile, a bias alone costing one FFMA per element
// as before, and no bias values live next to a whole tile of capped scores (a separate cap
// pass cost the forward d128 kernel 200 bytes of spills, the backward's 84).
template <int MS, int NS, class Cap, class AddBias>
__device__ __forceinline__ void score_transform(float (&s)[MS][NS][4], const KernelParams& p,
                                                bool softcap, Cap& cap, AddBias&& add_bias,
                                                float slope, int row0, int col0, int sq, int sk,
                                                int lane) {
  if (p.has_bias) {
    if (softcap) {
      add_bias(s, cap);
    } else {
      add_bias(s, ScaleBy{p.scale});
    }
  } else if (softcap) {
    transform_all(s, cap);
  } else {
    ScaleBy scale{p.scale};
    transform_all(s, scale);
  }
  if (p.alibi_slopes != nullptr) add_alibi(s, slope, row0, col0, sq, sk, lane);
}

}  // namespace sm80
}  // namespace fa
