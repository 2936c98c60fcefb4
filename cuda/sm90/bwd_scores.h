// bwd_scores.h: masking and dropout of a transposed score tile (the sm90 backward computes
// S^T = K Q^T, so accumulator rows are keys and columns are queries).
//
// A warp holds 16 keys x 8 NS queries as `float s[NS][4]` (the wgmma / mma.sync C layout):
// s[n][2r + e] is key key0 + g + 8r, query q0 + 8n + 2t + e (g = lane / 4, t = lane % 4).
// The rules are common/mask.h's and common/dropout.h's, only the orientation differs.
#pragma once

#include <climits>
#include <cmath>

#include "common/philox.h"
#include "common/dropout.h"
#include "common/fragments.h"
#include "common/mask.h"
#include "common/ptx.h"
#include "sm90/softmax.h"

namespace fa {
namespace sm90 {

// Sets the elements common/mask.h's rule hides to -inf: keys at or past sk, and keys
// outside a query's window. Key `key` is seen by the queries [block_row_begin(key),
// block_row_end(key + 1)). Query rows past sq need no mask: their lse is +inf (P = 0) and
// their dQ rows are never stored.
template <int NS>
__device__ __forceinline__ void mask_scores_t(float (&s)[NS][4], int key0, int q0,
                                              const BasicKeyRange<int>& range, int lane) {
  const int g = lane >> 2, t = lane & 3;
  // Two passes, one bound each: one bound live at a time keeps the dropout kernels below
  // their register limit (both at once spilled 20 bytes at head dim 64).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key0 + g + 8 * r;
    // Local columns c = 8n + e below `begin` are invisible (all of them past the keys).
    const int begin =
        key < range.seqlen_k ? range.block_row_begin(key) - q0 - 2 * t : 8 * NS;
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (8 * n + e < begin) s[n][2 * r + e] = -INFINITY;
  }
  if (range.window.left < 0) return;  // no query sees too few keys to miss this one
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key0 + g + 8 * r;
    const int end = range.block_row_end(key + 1) - q0 - 2 * t;
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (8 * n + e >= end) s[n][2 * r + e] = -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------
// Score features (kScoreMods kernels; softmax.h: the scores' units).

// ALiBi adds step |query + shift - key| (in units) to s[n][2r + e], key key0 + g + 8r,
// query q0 + 8n + 2t + e: this is the lane's query + shift - key for n = e = 0. The distance
// is formed in float from it and the element's constant offset 8n + e: exact below 2^24
// keys, as score.h's float().
__device__ __forceinline__ float alibi_base_t(int key0, int q0, int shift, int r, int lane) {
  return float(q0 + 2 * (lane & 3) + shift - key0 - (lane >> 2) - 8 * r);
}

// P^T of the score-feature kernels from the masked scores y (capped or not, in units), with
// what the plain kernels do only once dP^T is in: ALiBi is added, P^T = exp2(y scale_log2 -
// lse), P^T (times the dropout factor Z / (1-p)) is packed at once into the A fragments
// `pa` of dV += Pd^T dO, and s keeps P^T (1 - t^2), t = the capped score (softcap's chain
// rule for dS^T = s (dP^T Z / (1-p) - D); P^T alone without softcap). Packing early holds
// pa's NS * 2 registers while dP^T runs, instead of 1 - t^2's NS * 4 until dS^T.
// 1 - t^2 is clamped at 0: masked scores (y = -inf) give -inf there, and P^T = 0 times
// -inf would be NaN. keep: dropout_keep_t's bits (kDropout only).
template <typename T, bool kCapped, bool kAlibi, bool kDropout, int NS>
__device__ __forceinline__ void probs_t_mods(float (&s)[NS][4], uint32_t (&pa)[NS / 2][4],
                                             uint32_t lse_lane, float scale_log2,
                                             float alibi_step, int key0, int q0, int shift,
                                             const uint32_t* keep, float rescale, int lane) {
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) base[r] = alibi_base_t(key0, q0, shift, r, lane);
#pragma unroll
  for (int n = 0; n < NS; ++n) {
    const uint2 l = lds64(lse_lane + 32 * n);
    const float lse[2] = {__uint_as_float(l.x), __uint_as_float(l.y)};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float pd[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 2 * r + e;
        float y = s[n][i];
        const float deriv = kCapped ? fmaxf(fmaf(-y, y, 1.0f), 0.0f) : 1.0f;
        if constexpr (kAlibi) y = fmaf(fabsf(base[r] + float(8 * n + e)), alibi_step, y);
        const float pv = ex2(fmaf(y, scale_log2, -lse[e]));
        pd[e] = pv;
        if constexpr (kDropout) {
          const bool kept = (keep[(4 * n + i) / 32] >> ((4 * n + i) % 32)) & 1u;
          pd[e] = kept ? pv * rescale : 0.0f;
        }
        s[n][i] = kCapped ? pv * deriv : pv;
      }
      // acc_to_a's layout: pa[kk] = {(2kk, r 0), (2kk, r 1), (2kk + 1, r 0), (2kk + 1, r 1)}.
      pa[n / 2][(n % 2) * 2 + r] = pack2<T>(pd[0], pd[1]);
    }
  }
}

// Gathers one byte from each of the 8 lanes that share t = lane % 4 (lanes t, t + 4, ...):
// afterwards byte j of lo (j < 4) / hi (j >= 4) is the byte of lane 4j + t. Three xor
// shuffles, each doubling what a lane holds, in lane order.
__device__ __forceinline__ void gather_column_bytes(uint32_t byte, int lane, uint32_t& lo,
                                                    uint32_t& hi) {
  const int g = lane >> 2;
  uint32_t x = byte;
  uint32_t y = __shfl_xor_sync(kFullMask, x, 4);
  x = (g & 1) ? (y | (x << 8)) : (x | (y << 8));
  y = __shfl_xor_sync(kFullMask, x, 8);
  x = (g & 2) ? (y | (x << 16)) : (x | (y << 16));
  y = __shfl_xor_sync(kFullMask, x, 16);
  lo = (g & 4) ? y : x;
  hi = (g & 4) ? x : y;
}

// The dropout keep mask of a warp's transposed tile (key0 a multiple of 16, both indices
// local to the sequence): bit 4n + 2r + e of keep[(4n + 2r + e) / 32] is element s[n][2r + e].
//
// One Philox call gives the draws of 8 keys (one column group) of one query. In this
// orientation those 8 keys are the 8 lanes sharing t (lane g holds key g of the group), so
// each call is made once, by one of them: for key group r and query parity e, lane g calls
// for query column n = 8c + g, turns the 8 draws into 8 keep bits, and the 8 lanes exchange
// their bytes (gather_column_bytes); lane g keeps bit g of each.
template <int NS>
__device__ __forceinline__ void dropout_keep_t(const DropoutRng& rng, int key0, int q0,
                                               int lane, uint32_t (&keep)[(4 * NS + 31) / 32]) {
  static_assert(NS % 8 == 0, "whole column groups per lane set");
  const int g = lane >> 2, t = lane & 3;
  const uint32_t group0 = uint32_t(key0) >> 3;
#pragma unroll
  for (int w = 0; w < (4 * NS + 31) / 32; ++w) keep[w] = 0;
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int e = 0; e < 2; ++e)
#pragma unroll
      for (int c = 0; c < NS / 8; ++c) {
        const uint32_t query = uint32_t(q0 + 8 * (8 * c + g) + 2 * t + e);
        const Philox4 d = dropout_draws(rng.seed, rng.offset, rng.batch_head, query, group0 + r);
        const uint32_t words[4] = {d.x, d.y, d.z, d.w};
        uint32_t bits = 0;
#pragma unroll
        for (int m = 0; m < 8; ++m) {
          const uint32_t draw = (m & 1) ? (words[m >> 1] >> 16) : (words[m >> 1] & 0xffffu);
          bits |= uint32_t(draw >= rng.threshold) << m;
        }
        uint32_t lo, hi;
        gather_column_bytes(bits, lane, lo, hi);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t kept = (((j < 4) ? lo : hi) >> (8 * (j & 3) + g)) & 1u;
          const int bit = 4 * (8 * c + j) + 2 * r + e;
          keep[bit / 32] |= kept << (bit % 32);
        }
      }
}

}  // namespace sm90
}  // namespace fa
