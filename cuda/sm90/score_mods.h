// score_mods.h: the score features (softcap, ALiBi; common/score.h's rule) as the sm90
// kernels with kScoreMods apply them, in both orientations (fwd_scores.h, bwd_scores.h add
// ALiBi per orientation).
//
// The kernels keep a tile's scores in "units": a score y stands for the natural score
// unit * y, and the softmax multiplies by unit * log2 e (its exp2 multiplier) and the LSE
// by unit. Q K^T leaves y = q.k in units of `scale` (what the plain kernels do); the cap
// turns it into y = tanh(q.k scale / softcap) in units of softcap (one FMUL and one MUFU
// per score, the softcap's multiply folded into the softmax's); a bias makes it natural
// (fma(y, unit, bias), as the bias kernels do with unit = scale); ALiBi is added in the
// units the scores are in, -slope / unit per key of distance (one FADD, one FFMA), so that
// a softcap or ALiBi without bias costs no extra multiply per score.
#pragma once

#include "common/kernel_params.h"
#include "common/score.h"

namespace fa {
namespace sm90 {

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
    return alibi ? -p.alibi_slopes[b * p.alibi_stride_b + h] / unit : 0.0f;
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
