// masking.h: sets the score elements of a warp tile that common/mask.h's rule hides
// (window, causal, key tail) to -inf. Rows past the query length need no mask (their
// results are never stored).
#pragma once

#include <cmath>

#include "common/mask.h"
#include "sm80/tile.h"

namespace fa {
namespace sm80 {

// s[MS][NS][4]: a warp's score tile whose first row is query row `row0` and first column is
// key `col0` (both local to the sequence).
template <int MS, int NS>
__device__ __forceinline__ void mask_scores(float (&s)[MS][NS][4], int row0, int col0,
                                            const BasicKeyRange<int>& range, int lane) {
  const int g = lane >> 2, t = lane & 3;
  // Two passes, one bound each (one live at a time: these kernels sit at their register
  // limit); the second only for a window with a left side.
#pragma unroll
  for (int si = 0; si < MS; ++si)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // Local column c = n * 8 + e is invisible at or past `end`.
      const int end = range.key_end(row0 + si * 16 + g + r * 8) - col0 - 2 * t;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (n * 8 + e >= end) s[si][n][2 * r + e] = -INFINITY;
    }
  if (range.window.left < 0) return;
#pragma unroll
  for (int si = 0; si < MS; ++si)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int begin = range.key_begin(row0 + si * 16 + g + r * 8) - col0 - 2 * t;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (n * 8 + e < begin) s[si][n][2 * r + e] = -INFINITY;
    }
}

}  // namespace sm80
}  // namespace fa
