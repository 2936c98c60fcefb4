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
FA_HOST_DEVICE float alibi_term(float slope, int64_t i, int64_t j, int64_t seqlen_q,
                                int64_t seqlen_k) {
  const int64_t distance = i + seqlen_k - seqlen_q - j;
  return -slope * float(distance < 0 ? -distance : distance);
}

}  // namespace fa
