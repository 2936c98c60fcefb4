// bias.h: the additive bias, fused into the score tile: x = scale * q.k + bias, or generally
// x = pre(q.k) + bias where `pre` is what comes before the bias (the scale, or the softcap of
// score_transform.h: fused into the same pass, the loads of the bias add no live range).
// The bias may be float16, bfloat16 or float32 (a runtime property: one uniform switch per
// tile), any strides with stride 0 on broadcast dimensions, and has no alignment guarantee.
// Two ways in:
//   staged  (16-byte aligned rows, shared memory to spare): the BM x BN tile is copied with
//           cp.async one tile ahead (forward: next to K; backward: next to Q and dO) into a
//           swizzled tile of BN * size bytes per row, and read from shared memory after Q K^T;
//   direct  (otherwise): each lane reads its elements from global memory after Q K^T, in
//           pairs where the alignment allows (neighbouring lanes share 32-byte sectors).
#pragma once

#include "flashattn.h"
#include "common/kernel_params.h"
#include "sm80/tile.h"

namespace fa {
namespace sm80 {

// A `pre` transforms the element pair (2r, 2r + 1) of n8 tile n of slab si in place, just
// before its bias is added. The plain kernels' pre: x * scale (with the bias, one FFMA).
struct ScaleBy {
  float scale;
  template <int MS, int NS>
  __device__ __forceinline__ void operator()(float (&s)[MS][NS][4], int si, int n, int r) const {
    s[si][n][2 * r] *= scale;
    s[si][n][2 * r + 1] *= scale;
  }
};

template <typename B>
__device__ __forceinline__ float load_bias(const B* p) {
  if constexpr (std::is_same_v<B, float>) {
    return __ldg(p);
  } else if constexpr (std::is_same_v<B, __half>) {
    return __half2float(__ldg(p));
  } else {
    return __bfloat162float(__ldg(p));
  }
}

// Two neighbouring elements in one load (the caller checked the alignment).
template <typename B>
__device__ __forceinline__ float2 load_bias2(const B* p) {
  if constexpr (std::is_same_v<B, float>) {
    return __ldg(reinterpret_cast<const float2*>(p));
  } else if constexpr (std::is_same_v<B, __half>) {
    return __half22float2(__ldg(reinterpret_cast<const __half2*>(p)));
  } else {
    return __bfloat1622float2(__ldg(reinterpret_cast<const __nv_bfloat162*>(p)));
  }
}

template <typename B, int MS, int NS, class Pre>
__device__ __forceinline__ void add_bias_typed(float (&s)[MS][NS][4], const B* base, int64_t sr,
                                               int row0, int col0, int sq, int sk, Pre&& pre,
                                               bool pairs, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int si = 0; si < MS; ++si) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + si * 16 + g + r * 8;
      const bool row_ok = row < sq;
      const B* rp = base + int64_t(row_ok ? row : 0) * sr + col0 + 2 * t;
      const int limit = row_ok ? sk - col0 - 2 * t : 0;
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const int c = n * 8;  // this lane's columns c and c + 1 (relative to rp)
        float2 bv;
        if (pairs && c + 1 < limit) {
          bv = load_bias2(rp + c);
        } else {
          bv.x = c < limit ? load_bias(rp + c) : 0.0f;
          bv.y = c + 1 < limit ? load_bias(rp + c + 1) : 0.0f;
        }
        pre(s, si, n, r);
        s[si][n][2 * r] += bv.x;
        s[si][n][2 * r + 1] += bv.y;
      }
    }
  }
}

// s = pre(s) + bias[b, h, row, col] for a warp tile (first row `row0`, first column
// `col0`, local to the sequence); out-of-range elements get bias 0 (they are masked).
template <int MS, int NS, class Pre>
__device__ __forceinline__ void add_bias(float (&s)[MS][NS][4], const BiasView& bias, int b,
                                         int h, int row0, int col0, int sq, int sk, Pre&& pre,
                                         int lane) {
  const int64_t off = int64_t(b) * bias.sb + int64_t(h) * bias.sh;
  switch (bias.dtype) {
    case FA_FLOAT32:
      add_bias_typed(s, static_cast<const float*>(bias.ptr) + off, bias.sr, row0, col0, sq, sk,
                     pre, bias.pairs, lane);
      break;
    case FA_BFLOAT16:
      add_bias_typed(s, static_cast<const __nv_bfloat16*>(bias.ptr) + off, bias.sr, row0, col0,
                     sq, sk, pre, bias.pairs, lane);
      break;
    default:
      add_bias_typed(s, static_cast<const __half*>(bias.ptr) + off, bias.sr, row0, col0, sq, sk,
                     pre, bias.pairs, lane);
      break;
  }
}

// ---- staged through shared memory ----

__host__ __device__ inline int bias_element_size(int dtype) { return dtype == FA_FLOAT32 ? 4 : 2; }

// Byte address of element (row, col) (col even) in a staged bias tile with BN columns:
// rows of BN * size bytes, 16-byte chunk c of row r stored at c ^ (r % 8).
template <int BN>
__device__ __forceinline__ uint32_t bias_tile_offset(int row, int col, int esize) {
  const int byte = col * esize;
  return uint32_t(row * BN * esize + ((((byte >> 4) ^ (row & 7))) << 4) + (byte & 15));
}

// cp.async of bias rows [row0, row0 + BM) x keys [col0, col0 + BN) of (b, h) into `dst`;
// rows >= rows_valid (relative) and keys >= sk are zero-filled.
template <int BM, int BN, int THREADS, int kSize>
__device__ __forceinline__ void load_bias_tile_sized(uint32_t dst, const BiasView& bias, int b,
                                                     int h, int row0, int col0, int rows_valid,
                                                     int sk, int tid) {
  constexpr int kChunks = BN * kSize / 16;  // per row: 8 or 16
  static_assert(THREADS % kChunks == 0 && BM % (THREADS / kChunks) == 0, "whole passes");
  constexpr int kRowsPerPass = THREADS / kChunks;
  const int c = tid % kChunks, r0 = tid / kChunks;
  int bytes = (sk - col0) * kSize - c * 16;  // valid bytes of this lane's chunk in a row
  bytes = bytes < 0 ? 0 : (bytes > 16 ? 16 : bytes);
  const char* base = static_cast<const char*>(bias.ptr) +
                     (int64_t(b) * bias.sb + int64_t(h) * bias.sh + col0) * kSize;
  const char* src = base + int64_t(row0 + r0) * bias.sr * kSize + c * 16;
  const int64_t step = int64_t(kRowsPerPass) * bias.sr * kSize;
#pragma unroll
  for (int pass = 0; pass < BM / kRowsPerPass; ++pass) {
    const int row = r0 + pass * kRowsPerPass;
    const int n = row < rows_valid ? bytes : 0;
    cp_async_16_partial(dst + uint32_t(row * BN * kSize + ((c ^ (row & 7)) << 4)),
                        n > 0 ? src : base, n);
    src += step;
  }
}

template <int BM, int BN, int THREADS>
__device__ __forceinline__ void load_bias_tile_async(uint32_t dst, const BiasView& bias, int b,
                                                     int h, int row0, int col0, int rows_valid,
                                                     int sk, int tid) {
  if (bias.dtype == FA_FLOAT32) {
    load_bias_tile_sized<BM, BN, THREADS, 4>(dst, bias, b, h, row0, col0, rows_valid, sk, tid);
  } else {
    load_bias_tile_sized<BM, BN, THREADS, 2>(dst, bias, b, h, row0, col0, rows_valid, sk, tid);
  }
}

template <typename B, int BN, int MS, int NS, class Pre>
__device__ __forceinline__ void add_staged_bias_typed(float (&s)[MS][NS][4], uint32_t tile,
                                                      int warp_row, int warp_col, Pre&& pre,
                                                      int lane) {
  const int g = lane >> 2, t = lane & 3;
  constexpr int kSize = int(sizeof(B));
  constexpr int kRowBytes = BN * kSize;
  // This lane's rows are warp_row + 16 si + 8 r + g, so their swizzle is always ^ g, and its
  // columns warp_col + 8 n + 2t sit at chunk warp_chunk + (n * kSize / 2) + lane_chunk, byte
  // `within`: the lane address carries the row g, (warp_chunk + lane_chunk) ^ g and
  // `within`; slabs add rows, n XORs chunks (warp_col is a multiple of 8 NS, so the three
  // chunk terms have disjoint bits and adding them is XOR-ing them).
  const int lane_chunk = (2 * t * kSize) >> 4, within = (2 * t * kSize) & 15;
  const int warp_chunk = warp_col * kSize / 16;
  const uint32_t lane_addr = tile + uint32_t((warp_row + g) * kRowBytes +
                                             (((warp_chunk + lane_chunk) ^ g) << 4) + within);
#pragma unroll
  for (int si = 0; si < MS; ++si)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const uint32_t addr = (lane_addr + uint32_t((si * 16 + r * 8) * kRowBytes)) ^
                              uint32_t((n * kSize / 2) << 4);
        float2 bv;
        if constexpr (std::is_same_v<B, float>) {
          const uint2 w = lds64(addr);
          bv = make_float2(__uint_as_float(w.x), __uint_as_float(w.y));
        } else {
          bv = unpack2<B>(lds32(addr));
        }
        pre(s, si, n, r);
        s[si][n][2 * r] += bv.x;
        s[si][n][2 * r + 1] += bv.y;
      }
    }
}

// s = pre(s) + bias for a warp tile whose rows start at `warp_row` and columns at
// `warp_col` (a multiple of 8 NS) of the staged tile.
template <int BN, int MS, int NS, class Pre>
__device__ __forceinline__ void add_staged_bias(float (&s)[MS][NS][4], uint32_t tile, int dtype,
                                                int warp_row, Pre&& pre, int lane,
                                                int warp_col = 0) {
  switch (dtype) {
    case FA_FLOAT32:
      add_staged_bias_typed<float, BN>(s, tile, warp_row, warp_col, pre, lane);
      break;
    case FA_BFLOAT16:
      add_staged_bias_typed<__nv_bfloat16, BN>(s, tile, warp_row, warp_col, pre, lane);
      break;
    default:
      add_staged_bias_typed<__half, BN>(s, tile, warp_row, warp_col, pre, lane);
      break;
  }
}

}  // namespace sm80
}  // namespace fa
