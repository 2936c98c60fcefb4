// dbias.h: delivering dS (the gradient of the scores, i.e. of the bias) from the backward
// kernel's score tiles. See KernelParams::dbias_mode:
//   direct   dbias has no summed dimension: each dS element is converted and stored
//   atomic   red.add into an fp32 buffer shaped like dbias's reduced shape
//   partial  deterministic: per-(batch, head or kv head) fp32 partial sums, reduced later
//            in a fixed order by dbias_finish_kernel
// A dbias summed over query rows (stride_row 0, e.g. a [B, 1, 1, Sk] key-padding bias) is
// first reduced over the rows inside the block (ColumnSums), so each block adds one row.
#pragma once

#include "flashattn.h"
#include "common/kernel_params.h"
#include "common/fragments.h"

namespace fa {

template <typename B>
__device__ __forceinline__ void store_as(B* p, float v) {
  if constexpr (std::is_same_v<B, float>) {
    *p = v;
  } else if constexpr (std::is_same_v<B, __half>) {
    *p = __float2half_rn(v);
  } else {
    *p = __float2bfloat16_rn(v);
  }
}

__device__ __forceinline__ void store_dbias_element(const BiasView& d, int64_t offset, float v) {
  switch (d.dtype) {
    case FA_FLOAT32:
      store_as(static_cast<float*>(d.ptr) + offset, v);
      break;
    case FA_BFLOAT16:
      store_as(static_cast<__nv_bfloat16*>(d.ptr) + offset, v);
      break;
    default:
      store_as(static_cast<__half*>(d.ptr) + offset, v);
      break;
  }
}

__device__ __forceinline__ void red_add(float* p, float v) { atomicAdd(p, v); }

// Where row `row` (or the row sum) of head h's dS goes, as an element offset into either
// dbias (direct) or dbias_accum (atomic / partial); add the column.
__device__ __forceinline__ int64_t dbias_row_offset(const KernelParams& p, int b, int h, int hk,
                                                    int row) {
  if (p.dbias_mode == kDbiasDirect) {
    return int64_t(b) * p.dbias.sb + int64_t(h) * p.dbias.sh + int64_t(row) * p.dbias.sr;
  }
  // dbias_accum: [B' or B][H' or Hx][R'][seqlen_k] (see bwd_plan.h), row stride 0 if summed.
  const int64_t sk = p.seqlen_k;
  const int64_t rows = p.dbias_sum_row ? 1 : p.seqlen_q;
  const int64_t r = p.dbias_sum_row ? 0 : row;
  if (p.dbias_mode == kDbiasAtomic) {
    const int64_t heads = p.dbias_sum_h ? 1 : p.heads_q;
    const int64_t bb = p.dbias_sum_b ? 0 : b;
    const int64_t hh = p.dbias_sum_h ? 0 : h;
    return ((bb * heads + hh) * rows + r) * sk;
  }
  const int64_t heads = p.dbias_sum_h ? p.heads_kv : p.heads_q;
  const int64_t hh = p.dbias_sum_h ? hk : h;
  return ((int64_t(b) * heads + hh) * rows + r) * sk;
}

// Delivers one element of dS (not summed over rows).
__device__ __forceinline__ void deliver_dbias(const KernelParams& p, int64_t offset, float v) {
  if (p.dbias_mode == kDbiasDirect) {
    store_dbias_element(p.dbias, offset, v);
  } else if (p.dbias_mode == kDbiasAtomic) {
    red_add(p.dbias_accum + offset, v);
  } else {
    p.dbias_accum[offset] += v;  // partial: this thread owns the element, fixed order
  }
}

// Column sums of dS for dbias summed over rows, kept in shared memory (`scratch`: one row
// of block_cols floats per warp row-group WM, each written by one warp only, so the sums
// are formed in a fixed order without atomics).
template <int WM, int NS>
struct ColumnSums {
  float* scratch;  // [WM][block_cols]
  int block_cols;

  // Everyone: zero the scratch (visible after the caller's next __syncthreads).
  __device__ __forceinline__ void clear(int tid, int threads) {
    for (int c = tid; c < WM * block_cols; c += threads) scratch[c] = 0.0f;
  }

  // One warp adds the column sums of its MS x NS tile of dS (first column `warp_col` of
  // the block) to its row of the scratch.
  template <int MS>
  __device__ __forceinline__ void add(const float (&ds)[MS][NS][4], int warp_m, int warp_col,
                                      int lane) {
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = 0.0f;
#pragma unroll
        for (int s = 0; s < MS; ++s) x += ds[s][n][e] + ds[s][n][e + 2];
        x += __shfl_xor_sync(kFullMask, x, 4);
        x += __shfl_xor_sync(kFullMask, x, 8);
        x += __shfl_xor_sync(kFullMask, x, 16);
        if (lane < 4) scratch[warp_m * block_cols + warp_col + n * 8 + 2 * lane + e] += x;
      }
  }

  // Everyone: sums the WM rows in order, delivers columns col0 + c < sk at `offset`, and
  // zeroes the scratch again.
  __device__ __forceinline__ void flush(const KernelParams& p, int tid, int threads, int col0,
                                        int sk, int64_t offset) {
    __syncthreads();
    for (int c = tid; c < block_cols; c += threads) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < WM; ++w) {
        sum += scratch[w * block_cols + c];
        scratch[w * block_cols + c] = 0.0f;
      }
      if (col0 + c < sk) deliver_dbias(p, offset + col0 + c, sum);
    }
    __syncthreads();
  }
};

}  // namespace fa
