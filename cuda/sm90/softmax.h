// softmax.h: sm80's online softmax (sm80/softmax.h) with the rescale of O split off.
//
// In the sm90 main loop the product O += P_{n-1} V_{n-1} is still running on the tensor
// cores while the softmax of score tile n is computed, so O cannot be rescaled then:
// update() returns each row's correction factor exp2((old max - new max) * scale), and
// rescale() applies it once that product has completed. Row state, the -inf guards and
// finish() (normalizer and LSE) are sm80's, for one 16-row slab per warp.
#pragma once

#include <cmath>

#include "sm80/softmax.h"

namespace fa {
namespace sm90 {

struct DeferredSoftmax : sm80::OnlineSoftmax<1> {
  // Folds score tile x in: updates max and sum, overwrites x with the unnormalized
  // probabilities and sets the factor earlier output rows must be multiplied by.
  template <int NS>
  __device__ __forceinline__ void update(float (&x)[NS][4], float scale_log2,
                                         float (&correction)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = row_max[0][r];
#pragma unroll
      for (int n = 0; n < NS; ++n) m = fmaxf(m, fmaxf(x[n][2 * r], x[n][2 * r + 1]));
      m = sm80::quad_max(m);
      // A row with nothing visible yet keeps max = -inf: use 0 so exp2 gives 0, not NaN.
      const float m_scaled = m == -INFINITY ? 0.0f : m * scale_log2;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& v = x[n][2 * r + e];
          v = sm80::ex2(fmaf(v, scale_log2, -m_scaled));
          sum += v;
        }
      correction[r] = sm80::ex2(fmaf(row_max[0][r], scale_log2, -m_scaled));
      row_sum[0][r] = fmaf(row_sum[0][r], correction[r], sum);
      row_max[0][r] = m;
    }
  }

  template <int DS>
  __device__ __forceinline__ static void rescale(float (&o)[DS][4],
                                                 const float (&correction)[2]) {
#pragma unroll
    for (int d = 0; d < DS; ++d)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[d][e] *= correction[e >> 1];
  }
};

}  // namespace sm90
}  // namespace fa
