// fwd_scores.h: what happens to a consumer warp's score tile between Q K^T and the softmax
// (staged bias, ALiBi, masks; the cap is softmax.h's) and after it (dropout), in the two
// key orders of the sm90 forward.
//
// A consumer warp's S tile is sm80's float[NS][4]: element [n][2r + e] of lane (g, t) is
// query row g + 8r of the warp and tile column ("slot") 8n + 2t + e, which is row
// 8n + 2t + e of the K and V tiles in shared memory. Which key a slot holds depends on how
// the producer loaded K and V:
//   natural  (kernels without dropout): slot s holds key s of the tile;
//   permuted (dropout kernels): slot 8n + i holds key (n % 8) + 64 (n / 8) + 8 i, loaded by
//     TMA boxes of 8 rows 8 keys apart (tma.h, encode_tensor_map_strided). Lane t's 32
//     slots then hold keys 16t + 8e + 64h + j (h = n / 8, j = n % 8): four whole Philox
//     groups of 8 keys (2t + e + 8h), so each lane draws its own mask, with no exchange
//     inside the quad (sm80's dropout transposes 4 x 4 words per call), and P V still pairs
//     each P column with its V row because both use the slot order.
// The bias tile in shared memory is in key order (TMA, 128-byte swizzled boxes of 128
// bytes of keys x BM rows, box c at c * BM * 128): natural slots read it with ldmatrix,
// permuted slots with 16-byte loads of 8 consecutive keys; both are free of bank conflicts
// for 16-bit biases.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/philox.h"
#include "flashattn.h"
#include "common/fragments.h"
#include "common/mask.h"
#include "sm90/softmax.h"

namespace fa {
namespace sm90 {

// Tile-local key held by shared-memory row `slot` of K and V.
template <bool kPermuted>
__host__ __device__ __forceinline__ int slot_key(int slot) {
  if constexpr (kPermuted) {
    const int n = slot >> 3, i = slot & 7;
    return (n & 7) + 64 * (n >> 3) + 8 * i;
  } else {
    return slot;
  }
}

// Key of element [n][2r + e] minus the lane's first key (natural 2t, permuted 16t).
template <bool kPermuted>
__device__ __forceinline__ constexpr int element_key(int n, int e) {
  return kPermuted ? 8 * e + 64 * (n >> 3) + (n & 7) : 8 * n + e;
}

template <bool kPermuted>
__device__ __forceinline__ int lane_key(int lane) {
  return (lane & 3) * (kPermuted ? 16 : 2);
}

// Sets the scores of keys common/mask.h's rule hides from a row (window, causal, key tail)
// to -inf. row0: the warp's first query row, col0: the tile's first key, both local to the
// sequence.
template <bool kPermuted, int NS>
__device__ __forceinline__ void mask_tile(float (&s)[NS][4], int row0, int col0,
                                          const BasicKeyRange<int>& range, int lane) {
  const int g = lane >> 2;
  const int lane_col = col0 + lane_key<kPermuted>(lane);
  // Two passes, one bound each (one live at a time); the second only for a window with a
  // left side. Element key k (relative to the lane's first key) is visible iff
  // begin <= k < end.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int end = range.key_end(row0 + g + 8 * r) - lane_col;
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (element_key<kPermuted>(n, e) >= end) s[n][2 * r + e] = -INFINITY;
  }
  if (range.window.left < 0) return;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int begin = range.key_begin(row0 + g + 8 * r) - lane_col;
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (element_key<kPermuted>(n, e) < begin) s[n][2 * r + e] = -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------
// ALiBi of the forward's orientation (softmax.h: the scores' units).

// y += step |i + shift - j|, for query row i = row0 + g + 8r and each element's key j
// (row0, col0 as in mask_tile). The distance is formed in float from the row's int part
// and the element's constant key offset: exact below 2^24 keys, as score.h's float().
template <bool kPermuted, int NS>
__device__ __forceinline__ void add_alibi(float (&s)[NS][4], int row0, int col0, int shift,
                                          float step, int lane) {
  const int g = lane >> 2;
  const int lane_col = col0 + lane_key<kPermuted>(lane);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float base = float(row0 + g + 8 * r + shift - lane_col);
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& y = s[n][2 * r + e];
        y = fmaf(fabsf(base - float(element_key<kPermuted>(n, e))), step, y);
      }
  }
}

// ---------------------------------------------------------------------------------------
// Staged bias: s = s * scale + bias (scale: the scores' unit, ScoreMods). `stage` is the
// tile in shared memory, `warp_row` the warp's first row in it,
// row_step 0 for a bias broadcast over query rows (one row staged).

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr));
  return v;
}

__device__ __forceinline__ uint2 lds64(uint32_t addr) {
  uint2 v;
  asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
  return v;
}

__device__ __forceinline__ void fma_bias(float& x, float scale, float b) { x = fmaf(x, scale, b); }

// 16-bit bias (B = __half or __nv_bfloat16).
template <typename B, bool kPermuted, int BM, int NS>
__device__ __forceinline__ void add_bias16(float (&s)[NS][4], uint32_t stage, int warp_row,
                                           int row_step, float scale, int lane) {
  constexpr uint32_t kBox = BM * 128;  // 64 keys
  if constexpr (!kPermuted) {
    // ldmatrix x4 per pair of n8 tiles (n0, n0 + 1): matrix j = lane / 8 is rows
    // 8 (j & 1) .. + 7 of tile n0 + (j >> 1); the lane gives row i = lane % 8 of it.
    const int i = lane & 7, j = lane >> 3;
    const int row = (warp_row + i + 8 * (j & 1)) * row_step;
    // n0 is even, so chunk (n0 % 8 + (j >> 1)) ^ (row % 8) = (n0 % 8) ^ (j >> 1) ^ (row % 8).
    const uint32_t base = stage + uint32_t(row * 128) + uint32_t(((j >> 1) ^ (row & 7)) << 4);
#pragma unroll
    for (int n0 = 0; n0 < NS; n0 += 2) {
      uint32_t w[4];
      ldsm_x4(w, (base ^ uint32_t((n0 & 7) << 4)) + uint32_t(n0 >> 3) * kBox);
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const float2 b = unpack2<B>(w[m]);
        float* x = &s[n0 + (m >> 1)][2 * (m & 1)];
        fma_bias(x[0], scale, b.x);
        fma_bias(x[1], scale, b.y);
      }
    }
  } else {
    // Keys 16t + 8e + 64h + (0..7): one 16-byte chunk, 2t + e of box h.
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = (warp_row + g + 8 * r) * row_step;
#pragma unroll
      for (int h = 0; h < NS / 8; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const uint4 v = lds128(stage + h * kBox + uint32_t(row * 128) +
                                 uint32_t(((2 * t + e) ^ (row & 7)) << 4));
          const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const float2 b = unpack2<B>(words[q]);
            fma_bias(s[8 * h + 2 * q][2 * r + e], scale, b.x);
            fma_bias(s[8 * h + 2 * q + 1][2 * r + e], scale, b.y);
          }
        }
    }
  }
}

// fp32 bias (boxes of 32 keys).
template <bool kPermuted, int BM, int NS>
__device__ __forceinline__ void add_bias32(float (&s)[NS][4], uint32_t stage, int warp_row,
                                           int row_step, float scale, int lane) {
  constexpr uint32_t kBox = BM * 128;  // 32 keys
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = (warp_row + g + 8 * r) * row_step;
    if constexpr (!kPermuted) {
      // Keys 8n + 2t, +1: box n / 4, byte 32 (n % 4) + 8t, i.e. chunk 2 (n % 4) + t / 2.
      const uint32_t base = stage + uint32_t(row * 128) +
                            uint32_t((((t >> 1) ^ (row & 7)) << 4) + 8 * (t & 1));
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const uint2 v = lds64((base ^ uint32_t((n & 3) << 5)) + uint32_t(n >> 2) * kBox);
        fma_bias(s[n][2 * r], scale, __uint_as_float(v.x));
        fma_bias(s[n][2 * r + 1], scale, __uint_as_float(v.y));
      }
    } else {
      // Keys 16t + 8e + 64h + (0..7): box 2h + t / 2, chunks 4 (t % 2) + 2e and + 1.
#pragma unroll
      for (int h = 0; h < NS / 8; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int chunk = 4 * (t & 1) + 2 * e + half;
            const uint4 v = lds128(stage + uint32_t(2 * h + (t >> 1)) * kBox +
                                   uint32_t(row * 128) + uint32_t((chunk ^ (row & 7)) << 4));
            const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int q = 0; q < 4; ++q)
              fma_bias(s[8 * h + 4 * half + q][2 * r + e], scale, __uint_as_float(words[q]));
          }
    }
  }
}

template <bool kPermuted, int BM, int NS>
__device__ __forceinline__ void add_staged_bias(float (&s)[NS][4], int dtype, uint32_t stage,
                                                int warp_row, int row_step, float scale,
                                                int lane) {
  if (dtype == FA_FLOAT32) {
    add_bias32<kPermuted, BM>(s, stage, warp_row, row_step, scale, lane);
  } else if (dtype == FA_BFLOAT16) {
    add_bias16<__nv_bfloat16, kPermuted, BM>(s, stage, warp_row, row_step, scale, lane);
  } else {
    add_bias16<__half, kPermuted, BM>(s, stage, warp_row, row_step, scale, lane);
  }
}

// ---------------------------------------------------------------------------------------
// Dropout in the permuted order: lane t draws groups 2t + e + 8h of its rows itself.
// threshold2 = threshold in both 16-bit halves (threshold <= 65535, see cases.cu).
// Draw j of a group is the low (j even) or high half of word j / 2; key 16t + 8e + 64h + j
// is element [8h + j][2r + e].
// keys: the seed's round keys, from the kernel parameters (constant memory), which saves
// the per-round key additions (-2% at (1, 12, 8192, 128)).
template <int NS>
__device__ __forceinline__ void dropout_permuted(float (&s)[NS][4], const PhiloxKeys& keys,
                                                 uint32_t offset, uint32_t batch_head,
                                                 uint32_t threshold2, int row0, int col0,
                                                 int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const uint32_t row = uint32_t(row0 + g + 8 * r);
#pragma unroll
    for (int h = 0; h < NS / 8; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const uint32_t group = uint32_t(col0 >> 3) + uint32_t(2 * t + e + 8 * h);
        const Philox4 w = philox4x32_10(Philox4{group, row, batch_head, offset}, keys);
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          bool keep_hi, keep_lo;  // per 16-bit half: draw >= threshold
          __vibmax_u16x2(words[q], threshold2, &keep_hi, &keep_lo);
          float& lo = s[8 * h + 2 * q][2 * r + e];
          float& hi = s[8 * h + 2 * q + 1][2 * r + e];
          lo = keep_lo ? lo : 0.0f;
          hi = keep_hi ? hi : 0.0f;
        }
      }
  }
}

}  // namespace sm90
}  // namespace fa
