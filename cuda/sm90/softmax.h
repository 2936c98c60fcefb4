// softmax.h: the online softmax (common/online_softmax.h) with the rescale of O split off.
//
// In the sm90 main loop the product O += P_{n-1} V_{n-1} is still running on the tensor
// cores while the softmax of score tile n is computed, so O cannot be rescaled then:
// update() returns each row's correction factor exp2((old max - new max) * scale), and
// rescale() applies it once that product has completed. Row state, the -inf guards and
// finish() (normalizer, LSE, sink) are the common online softmax's, for one 16-row slab per
// warp. Below it, the scores' units of the softcap / ALiBi kernels (ScoreMods).
#pragma once

#include <cmath>

#include "common/kernel_params.h"
#include "common/online_softmax.h"
#include "common/score.h"

namespace fa {
namespace sm90 {

#ifndef FA_SM90_SOFTMAX_CHAINS
#define FA_SM90_SOFTMAX_CHAINS 4
#endif

struct DeferredSoftmax : OnlineSoftmax<1> {
  static constexpr int kChains = FA_SM90_SOFTMAX_CHAINS;
  // Lazy rescaling (as FlashAttention-4): a row keeps its reference max until a tile raises
  // it by more than this many powers of two. Its probabilities then stay <= 2^8 (exact in
  // float32 and bf16 alike; O, the sum and the LSE all refer to the same max), and O needs
  // no rescale for that tile: after the first few tiles of a long row, almost never.
  static constexpr float kRescaleLog2 = 8.0f;

  // Folds score tile x in: updates max and sum, overwrites x with the unnormalized
  // probabilities and sets the factor earlier output rows must be multiplied by.
  template <int NS>
  __device__ __forceinline__ void update(float (&x)[NS][4], float scale_log2,
                                         float (&correction)[2]) {
    static_assert(NS % kChains == 0, "whole chains");
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // Max and sum as kChains independent chains (then combined), not one chain of 2 NS
      // dependent operations: this is the softmax's critical path.
      constexpr int C = kChains;
      float mp[C];
#pragma unroll
      for (int k = 0; k < C; ++k) mp[k] = fmaxf(x[k][2 * r], x[k][2 * r + 1]);
#pragma unroll
      for (int n = C; n < NS; ++n) {
        mp[n % C] = fmaxf(mp[n % C], fmaxf(x[n][2 * r], x[n][2 * r + 1]));
      }
      const float old = row_max[0][r];
      float m = old;
#pragma unroll
      for (int k = 0; k < C; ++k) m = fmaxf(m, mp[k]);
      m = quad_max(m);
      if (old != -INFINITY && (m - old) * scale_log2 <= kRescaleLog2) m = old;
      // A row with nothing visible yet keeps max = -inf: use 0 so exp2 gives 0, not NaN.
      const float m_scaled = m == -INFINITY ? 0.0f : m * scale_log2;
      float sp[C];
#pragma unroll
      for (int k = 0; k < C; ++k) sp[k] = 0.0f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& v = x[n][2 * r + e];
          v = ex2(fmaf(v, scale_log2, -m_scaled));
          sp[n % C] += v;
        }
      float sum = sp[0];
#pragma unroll
      for (int k = 1; k < C; ++k) sum += sp[k];
      // Exactly 1 for a kept max (the FFMA below would leave the product's rounding error).
      correction[r] = m == old ? 1.0f : ex2(fmaf(old, scale_log2, -m_scaled));
      row_sum[0][r] = fmaf(row_sum[0][r], correction[r], sum);
      row_max[0][r] = m;
    }
  }

  // O *= correction, skipped by the whole warp when no row of it moved its max.
  template <int DS>
  __device__ __forceinline__ static void rescale(float (&o)[DS][4],
                                                 const float (&correction)[2]) {
    if (!__any_sync(0xffffffffu, correction[0] != 1.0f || correction[1] != 1.0f)) return;
#pragma unroll
    for (int d = 0; d < DS; ++d)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[d][e] *= correction[e >> 1];
  }
};

// ---------------------------------------------------------------------------------------
// The scores' units (kernels with kScoreMods: softcap, ALiBi; common/score.h's rule), for
// this softmax and the backward's recomputed P^T alike.
//
// A score y stands for the natural score unit * y: the softmax multiplies by unit * log2 e
// (its exp2 multiplier) and the LSE by unit. Q K^T leaves y = q.k in units of `scale`
// (what the plain kernels do); the cap turns it into y = tanh(q.k scale / softcap) in units
// of softcap (one FMUL and one MUFU per score, the softcap's multiply folded into the
// softmax's); a bias makes it natural (fma(y, unit, bias), as the bias kernels do with
// unit = scale); ALiBi is added in the units the scores are in, -slope / unit per key of
// distance (one FADD, one FFMA; fwd_scores.h, bwd_scores.h per orientation), so that a
// softcap or ALiBi without bias costs no extra multiply per score.
struct ScoreMods {
  bool capped = false;
  float tanh_scale = 0.0f;  // scale / softcap
  float unit_qk = 1.0f;     // unit after Q K^T and the cap: scale, or softcap when capped
  float unit = 1.0f;        // unit after the bias (1 with a bias): the softmax's
  bool alibi = false;
  int alibi_shift = 0;      // sk - sq of the sequence: distance = i + shift - j

  __device__ ScoreMods(const KernelParams& p, bool bias, int sq, int sk)
      : capped(p.softcap > 0.0f),
        tanh_scale(p.softcap_tanh_scale),
        unit_qk(p.softcap > 0.0f ? p.softcap : p.scale),
        unit(bias ? 1.0f : unit_qk),
        alibi(p.alibi_slopes != nullptr),
        alibi_shift(sk - sq) {}
  ScoreMods() = default;

  // The softmax's exp2 multiplier: unit * log2 e.
  __device__ float softmax_scale_log2() const { return unit * 1.4426950408889634f; }
  // The ALiBi term per key of distance, in units: -slope / unit (0 without ALiBi).
  __device__ float alibi_step(const KernelParams& p, int b, int h) const {
    return alibi ? -p.alibi_slope(b, h) / unit : 0.0f;
  }
};

// y = tanh(q.k tanh_scale): the capped score in units of softcap.
template <int NS>
__device__ __forceinline__ void cap_scores(float (&s)[NS][4], float tanh_scale) {
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) s[n][i] = fast_tanh(s[n][i] * tanh_scale);
}

}  // namespace sm90
}  // namespace fa
