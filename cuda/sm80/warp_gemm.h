// warp_gemm.h: one warp multiplies tiles held in shared memory (or registers) with mma.sync.
//
// A warp tile of accumulators is `float acc[MS][NS][4]`: MS slabs of 16 rows by NS n8 tiles.
// Operands come from SmemTiles through per-lane ldmatrix addresses (see tile.h):
//   A row-major      (rows = m, chunks = k):  lane_rows16 + ldmatrix          e.g. Q, dO, dS
//   A transposed     (rows = k, chunks = m):  lane_cols16 + ldmatrix.trans    e.g. P^T, dS^T
//   B n-major        (rows = n, chunks = k):  lane_cols16 + ldmatrix          e.g. K in Q K^T
//   B k-major        (rows = k, chunks = n):  lane_rows16 + ldmatrix.trans    e.g. V in P V
// A warp's offset inside a tile is folded into its lane address once: rows by addition,
// chunks by XOR (valid because warp offsets are multiples of the power-of-two span the
// loops below walk).
#pragma once

#include "sm80/tile.h"

namespace fa {
namespace sm80 {

enum class AOperand { kRowMajor, kTransposed };
enum class BOperand { kNMajor, kKMajor };

// Moves a lane address by `chunks` 16-byte chunks inside a swizzled row (power-of-two
// aligned offsets only, see above).
__device__ __forceinline__ uint32_t xor_chunks(uint32_t lane_address, int chunks) {
  return lane_address ^ uint32_t(chunks * 16);
}

// The A fragments of the MS slabs of k16 step kk.
template <int MS, class ATile, AOperand kA>
__device__ __forceinline__ void load_a(uint32_t (&a)[MS][4], uint32_t a_lane, int kk) {
#pragma unroll
  for (int s = 0; s < MS; ++s) {
    if constexpr (kA == AOperand::kRowMajor) {
      ldsm_x4(a[s], ATile::at(a_lane, s, kk));
    } else {
      ldsm_x4_t(a[s], ATile::at(a_lane, kk, s));
    }
  }
}

// B fragments of n8 tiles 2 np and 2 np + 1 at k16 step kk: {b0, b1} of each.
template <class BTile, BOperand kB>
__device__ __forceinline__ void load_b2(uint32_t (&b)[4], uint32_t b_lane, int np, int kk) {
  if constexpr (kB == BOperand::kNMajor) {
    ldsm_x4(b, BTile::at(b_lane, np, kk));
  } else {
    ldsm_x4_t(b, BTile::at(b_lane, kk, np));
  }
}

// acc[MS][NS] += A (MS*16 x KSTEPS*16) * B (KSTEPS*16 x NS*8), both from shared memory.
template <typename T, int MS, int NS, int KSTEPS, class ATile, AOperand kA, class BTile,
          BOperand kB>
__device__ __forceinline__ void gemm_ss(float (&acc)[MS][NS][4], uint32_t a_lane,
                                        uint32_t b_lane) {
  static_assert(NS % 2 == 0, "n8 tiles go in pairs");
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk) {
    uint32_t a[MS][4];
    load_a<MS, ATile, kA>(a, a_lane, kk);
#pragma unroll
    for (int np = 0; np < NS / 2; ++np) {
      uint32_t b[4];
      load_b2<BTile, kB>(b, b_lane, np, kk);
#pragma unroll
      for (int s = 0; s < MS; ++s) {
        mma_16816<T>(acc[s][2 * np], a[s], b[0], b[1]);
        mma_16816<T>(acc[s][2 * np + 1], a[s], b[2], b[3]);
      }
    }
  }
}

// acc[MS][NS] += P (MS*16 x KSTEPS*16, fp32 accumulators in registers) * B (smem).
template <typename T, int MS, int NS, int KSTEPS, class BTile, BOperand kB>
__device__ __forceinline__ void gemm_rs(float (&acc)[MS][NS][4],
                                        const float (&p)[MS][2 * KSTEPS][4], uint32_t b_lane) {
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk) {
    uint32_t a[MS][4];
#pragma unroll
    for (int s = 0; s < MS; ++s) acc_to_a<T>(a[s], p[s], kk);
#pragma unroll
    for (int np = 0; np < NS / 2; ++np) {
      uint32_t b[4];
      load_b2<BTile, kB>(b, b_lane, np, kk);
#pragma unroll
      for (int s = 0; s < MS; ++s) {
        mma_16816<T>(acc[s][2 * np], a[s], b[0], b[1]);
        mma_16816<T>(acc[s][2 * np + 1], a[s], b[2], b[3]);
      }
    }
  }
}

// Calls f(s, n, e, row, col) for every accumulator of a warp tile whose first row/column
// (relative to whatever origin the caller uses) are row0/col0. row/col are per element.
template <int MS, int NS, class F>
__device__ __forceinline__ void for_each_acc(int row0, int col0, int lane, F&& f) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int s = 0; s < MS; ++s)
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        f(s, n, e, row0 + s * 16 + g + (e >> 1) * 8, col0 + n * 8 + 2 * t + (e & 1));
}

}  // namespace sm80
}  // namespace fa
