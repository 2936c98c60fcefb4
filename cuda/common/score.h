// score.h: the score of one (query row, key) element before the softmax, the one rule of
// every backend:
//   x = scale * q.k
//   x = softcap * tanh(x / softcap)          (softcap > 0)
//   x = x + bias[b, h, i, j]                 (bias given)
//   x = x - slope[b, h] * |i + Sk - Sq - j|  (ALiBi slopes given)
//   x = -inf where mask.h's window hides key j from row i
// and the softmax of a row includes the head's sink logit (attention sinks) in its
// denominator, carrying no value. Kernels may fold constants differently (log2 units, the
// scale inside tanh's argument) but compute this function.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/philox.h"  // FA_HOST_DEVICE

namespace fa {

// Softcap applied to an already scaled score (softcap > 0).
FA_HOST_DEVICE float apply_softcap(float scaled, float softcap) {
  return softcap * tanhf(scaled / softcap);
}

// d(softcap * tanh(x / softcap)) / dx given the capped value y = softcap * tanh(x / softcap):
// 1 - tanh^2 = 1 - (y / softcap)^2.
FA_HOST_DEVICE float softcap_derivative(float capped, float softcap) {
  const float t = capped / softcap;
  return 1.0f - t * t;
}

// ALiBi's additive term for row i, key j: -slope * |i + Sk - Sq - j| (distance to the
// bottom-right diagonal, so decode rows and prefill rows agree).
// I: int64_t on the host, int in the kernels (lengths below 2^30).
template <typename I>
FA_HOST_DEVICE float alibi_term(float slope, I i, I j, I seqlen_q, I seqlen_k) {
  const I distance = i + seqlen_k - seqlen_q - j;
  return -slope * float(distance < 0 ? -distance : distance);
}

// The kernels' form (KernelParams::natural_scores): scores leave Q K^T raw (x = q.k) and the
// softmax folds the scale into its exp2 multiplier, unless bias, softcap or ALiBi is on;
// then each score first becomes scale q.k, capped, plus bias, plus ALiBi (this order), and
// the softmax multiplier is log2 e.
#if defined(__CUDACC__)
// tanh on the SFU (tanh.approx.f32, relative error about 2^-11, below fp16's rounding).
__device__ __forceinline__ float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// softcap * tanh(scale q.k / softcap), with tanh_scale = scale / softcap precomputed.
__device__ __forceinline__ float capped_score(float qk, float tanh_scale, float softcap) {
  return softcap * fast_tanh(qk * tanh_scale);
}
#endif

}  // namespace fa
