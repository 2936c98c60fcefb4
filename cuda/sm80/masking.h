// masking.h: which score elements of a warp tile are invisible (set to -inf).
// The rule is common/mask.h's (bottom-right causal) plus the key-length tail; rows past
// the query length need no mask (their results are never stored).
#pragma once

#include <cmath>

#include "sm80/tile.h"

namespace fa {
namespace sm80 {

// Does the key tile [col0, col0 + cols) need element masking for query rows
// [row0, row0 + rows)? (Tail of the key sequence, or the causal diagonal crosses it.)
__device__ __forceinline__ bool tile_needs_mask(int64_t row0, int64_t col0, int rows, int cols,
                                                int sq, int sk, bool causal) {
  if (col0 + cols > sk) return true;
  return causal && col0 + cols - 1 > row0 + (int64_t(sk) - sq);
}

// s[MS][NS][4]: a warp's score tile whose first row is query row `row0` and first column is
// key `col0` (both local to the sequence). Sets invisible elements to -inf.
template <int MS, int NS>
__device__ __forceinline__ void mask_scores(float (&s)[MS][NS][4], int row0, int col0, int sq,
                                            int sk, bool causal, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int si = 0; si < MS; ++si) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + si * 16 + g + r * 8;
      int end = sk;  // keys [0, end) are visible to this row
      if (causal) {
        const int diag = row + (sk - sq) + 1;
        end = diag < end ? diag : end;
      }
      const int limit = end - col0 - 2 * t;  // local column (n * 8 + e) must be < limit
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          if (n * 8 + e >= limit) s[si][n][2 * r + e] = -INFINITY;
    }
  }
}

}  // namespace sm80
}  // namespace fa
