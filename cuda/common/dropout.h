// dropout.h: the dropout mask of common/philox.h, generated for a warp's score tile.
//
// One fa::dropout_draws call yields the eight 16-bit draws of columns 8c..8c+7 of one row.
// In the accumulator layout the four lanes of a quad hold those eight columns of a row
// (lane t: columns 2t and 2t+1, i.e. exactly word t of the call). So instead of each lane
// calling Philox for every group it touches (4x redundant), lane t of a quad calls it for
// groups 4c + t only, and the quad transposes the resulting 4x4 matrix of words
// (lane u holds words[u][0..3], lane t needs words[0..3][t]) with two butterfly stages of
// two shuffles each.
#pragma once

#include "common/philox.h"
#include "common/fragments.h"

namespace fa {

struct DropoutRng {
  uint64_t seed;
  uint32_t offset;
  uint32_t batch_head;  // b * Hq + h
  uint32_t threshold;   // keep iff draw >= threshold
};

// Lane t (= lane % 4) holds x = the four words of its own Philox call. Afterwards y[u] is
// word t of lane u's call.
__device__ __forceinline__ void quad_transpose(const uint32_t (&x)[4], int lane,
                                               uint32_t (&y)[4]) {
  // Stage 1, partner lane ^ 2: swap the off-diagonal 2x2 blocks.
  const bool hi_pair = lane & 2;
  const uint32_t send0 = hi_pair ? x[0] : x[2];
  const uint32_t send1 = hi_pair ? x[1] : x[3];
  const uint32_t recv0 = __shfl_xor_sync(kFullMask, send0, 2);
  const uint32_t recv1 = __shfl_xor_sync(kFullMask, send1, 2);
  const uint32_t z0 = hi_pair ? recv0 : x[0];
  const uint32_t z1 = hi_pair ? recv1 : x[1];
  const uint32_t z2 = hi_pair ? x[2] : recv0;
  const uint32_t z3 = hi_pair ? x[3] : recv1;
  // Stage 2, partner lane ^ 1: transpose inside each 2x2 block.
  const bool odd = lane & 1;
  const uint32_t u0 = odd ? z0 : z1;
  const uint32_t u1 = odd ? z2 : z3;
  const uint32_t v0 = __shfl_xor_sync(kFullMask, u0, 1);
  const uint32_t v1 = __shfl_xor_sync(kFullMask, u1, 1);
  y[0] = odd ? v0 : z0;
  y[1] = odd ? z1 : v0;
  y[2] = odd ? v1 : z2;
  y[3] = odd ? z3 : v1;
}

// Calls f(s, n, e, keep) for every element of a warp's score tile (MS slabs x NS n8 tiles,
// first row `row0`, first column `col0` (a multiple of 8), both local to the sequence).
// All 32 lanes must call it together.
template <int MS, int NS, class F>
__device__ __forceinline__ void dropout_for_each(const DropoutRng& rng, int row0, int col0,
                                                 int lane, F&& f) {
  static_assert(NS % 4 == 0, "a quad covers 4 column groups per call");
  const int g = lane >> 2, t = lane & 3;
  const uint32_t group0 = uint32_t(col0) >> 3;
#pragma unroll
  for (int s = 0; s < MS; ++s)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint32_t row = uint32_t(row0 + s * 16 + g + r * 8);
#pragma unroll
      for (int c = 0; c < NS / 4; ++c) {
        const Philox4 w = dropout_draws(rng.seed, rng.offset, rng.batch_head, row,
                                        group0 + uint32_t(4 * c + t));
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
        uint32_t mine[4];
        quad_transpose(words, lane, mine);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          f(s, 4 * c + u, 2 * r, (mine[u] & 0xffffu) >= rng.threshold);
          f(s, 4 * c + u, 2 * r + 1, (mine[u] >> 16) >= rng.threshold);
        }
      }
    }
}

}  // namespace fa
