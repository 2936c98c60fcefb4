// merge.h: the one rule that merges partial attention results of the same query row over
// disjoint key sets (split-KV's combine, fa_merge, a sink as one more part), for the CPU
// backend and the CUDA combine kernel alike:
//   lse = log(sum_i exp(lse_i)),   out = sum_i exp(lse_i - lse) * out_i.
// A part with lse_i = -inf saw no key and contributes nothing (its out_i is not even read,
// so whatever it holds cannot leak in); a row whose parts are all -inf gets out = 0,
// lse = -inf; a NaN lse_i makes the row's lse and every weight NaN, so out is NaN.
// A sink of logit s is the part (out 0, lse s).
#pragma once

#include <cmath>

#include "common/philox.h"  // FA_HOST_DEVICE

namespace fa {

// The weights of one row's parts, relative to their largest lse so no exponent overflows.
struct MergeWeights {
  float top = -INFINITY;  // largest lse_i (NaN when some lse_i is NaN)
  float sum = 0.0f;       // sum_i exp(lse_i - top)

  // log(sum_i exp(lse_i)): -inf when every part is empty, NaN when some lse_i is NaN.
  FA_HOST_DEVICE float lse() const { return top == -INFINITY ? -INFINITY : top + logf(sum); }

  // exp(lse_i - lse), the factor of out_i. 0 for an empty part: callers skip parts whose
  // weight is 0, so an empty part's out_i is never multiplied in.
  FA_HOST_DEVICE float weight(float part_lse) const {
    if (part_lse == -INFINITY || top == -INFINITY) return 0.0f;
    return expf(part_lse - top) / sum;
  }
};

// lse_at(i) gives lse_i for i in [0, num_parts); read twice (max, then sum).
template <typename LseAt>
FA_HOST_DEVICE MergeWeights merge_weights(int num_parts, const LseAt& lse_at) {
  MergeWeights weights;
  bool nan = false;
  for (int i = 0; i < num_parts; ++i) {
    const float x = lse_at(i);
    nan = nan || x != x;
    weights.top = x > weights.top ? x : weights.top;
  }
  if (nan) {
    weights.top = NAN;
    weights.sum = NAN;
    return weights;
  }
  if (weights.top == -INFINITY) return weights;
  for (int i = 0; i < num_parts; ++i) {
    const float x = lse_at(i);
    if (x != -INFINITY) weights.sum += expf(x - weights.top);
  }
  return weights;
}

}  // namespace fa
