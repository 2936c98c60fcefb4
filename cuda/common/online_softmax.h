// online_softmax.h: online softmax over the rows of a warp's score tile (FlashAttention-2).
//
// Each thread holds 2 * MS rows (g and g + 8 of each slab); a row's columns are spread
// over the 4 lanes of a quad, so the row max needs two shuffles per update while the row
// sum stays a per-lane partial until the end. Scores are turned into probabilities in
// place: p = exp2(x * scale_log2 - max * scale_log2), one FFMA and one EX2 each.
// A row whose scores are all -inf keeps max = -inf; the exponent then uses 0 in place of
// max * scale_log2, so every p is exp2(-inf) = 0 and nothing becomes NaN.
#pragma once

#include <cmath>

#include "common/fragments.h"

namespace fa {

template <int MS>
struct OnlineSoftmax {
  float row_max[MS][2];
  float row_sum[MS][2];  // this lane's partial sum

  __device__ __forceinline__ OnlineSoftmax() {
#pragma unroll
    for (int s = 0; s < MS; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        row_max[s][r] = -INFINITY;
        row_sum[s][r] = 0.0f;
      }
  }

  // Folds a new score tile in: updates max and sum, rescales the output accumulators `o`,
  // and overwrites `x` with the unnormalized probabilities.
  template <int NS, int DS>
  __device__ __forceinline__ void update(float (&x)[MS][NS][4], float (&o)[MS][DS][4],
                                         float scale_log2, bool first) {
#pragma unroll
    for (int s = 0; s < MS; ++s) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float m = row_max[s][r];
#pragma unroll
        for (int n = 0; n < NS; ++n) m = fmaxf(m, fmaxf(x[s][n][2 * r], x[s][n][2 * r + 1]));
        m = quad_max(m);
        const float m_scaled = m == -INFINITY ? 0.0f : m * scale_log2;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& v = x[s][n][2 * r + e];
            v = ex2(fmaf(v, scale_log2, -m_scaled));
            sum += v;
          }
        // Old max -inf (first tile, or nothing visible yet): exp2(-inf) = 0, and the
        // accumulators are 0 anyway.
        const float correction = ex2(fmaf(row_max[s][r], scale_log2, -m_scaled));
        row_sum[s][r] = fmaf(row_sum[s][r], correction, sum);
        if (!first) {
#pragma unroll
          for (int d = 0; d < DS; ++d) {
            o[s][d][2 * r] *= correction;
            o[s][d][2 * r + 1] *= correction;
          }
        }
        row_max[s][r] = m;
      }
    }
  }

  // After the last tile: the full row sums, the factor that normalizes the output
  // (0 for a row that saw nothing) and the natural-log log-sum-exp (-inf for such rows).
  // `sink` (natural units, -inf for none) is the head's attention-sink logit: it joins the
  // denominator and the LSE and carries no value (common/score.h), so a row that saw
  // nothing gets out = 0 and lse = sink.
  __device__ __forceinline__ void finish(float lse_scale, float extra_scale, float sink,
                                         float (&out_scale)[MS][2], float (&lse)[MS][2]) {
#pragma unroll
    for (int s = 0; s < MS; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(row_sum[s][r]);
        if (sink == -INFINITY) {
          // Only a row that saw nothing has sum 0; a NaN score makes the sum, and so the
          // output and LSE, NaN (PyTorch's math), never "empty".
          const bool empty = sum == 0.0f;
          out_scale[s][r] = empty ? 0.0f : extra_scale / sum;
          lse[s][r] = empty ? -INFINITY : fmaf(row_max[s][r], lse_scale, logf(sum));
        } else {
          // Both terms relative to the larger of the row's max and the sink, so neither
          // exponent overflows: total = sum e^(m - top) + e^(sink - top).
          const float m = row_max[s][r] * lse_scale;
          const float top = fmaxf(m, sink);
          const float kept = sum > 0.0f ? __expf(m - top) : 0.0f;
          const float total = fmaf(sum, kept, __expf(sink - top));
          out_scale[s][r] = extra_scale * kept / total;
          lse[s][r] = top + logf(total);
        }
      }
  }
};

}  // namespace fa
