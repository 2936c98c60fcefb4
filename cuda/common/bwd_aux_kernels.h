// bwd_aux_kernels.h: the small kernels around the backward's main kernel.
//   bwd_preprocess_kernel  D = rowsum(dO * O), lse in log2 units, zeroes the dQ accumulator
//   dsinks_kernel          the attention sinks' gradient from D and lse
//   dq_convert_kernel      dq = scale * dq_accum in the tensors' dtype
//   dbias_finish_kernel    dbias from the fp32 buffer (atomic) or partial sums (in a fixed
//                          order), or zeroes dbias (parts the main kernel never writes)
// Rows are handled by 8 lanes each (16-byte chunks, up to 4 per lane for D = 256).
#pragma once

#include <cmath>

#include "common/dbias.h"
#include "common/kernel_params.h"
#include "common/seqlen.h"
#include "common/fragments.h"

namespace fa {

constexpr int kAuxThreads = 256;
constexpr int kAuxRows = kAuxThreads / 8;  // rows per block

// dsinks[h] = -sum over (b, i) of exp(sink_h - lse_i) D_i (the sink's probability times
// rowsum(dO * O); common/score.h), one block per query head, summed in a fixed order so the
// result does not depend on scheduling. Runs after the preprocess (lse_log2 and dsum).
__global__ void __launch_bounds__(kAuxThreads) dsinks_kernel(const __grid_constant__ KernelParams p) {
  const int h = blockIdx.x;
  const float sink_log2 = p.sinks[h] * 1.4426950408889634f;
  float acc = 0.0f;
  for (int b = 0; b < p.batch; ++b) {
    const SeqInfo seq(p, b);
    const int64_t base = b * p.ws_sb + h * p.ws_sh + seq.q_row0;
    // lse_log2 is +inf for rows that saw nothing and had no sink: their weight is 0.
    for (int i = threadIdx.x; i < seq.sq; i += kAuxThreads) {
      acc = fmaf(exp2f(sink_log2 - p.lse_log2[base + i]), p.dsum[base + i], acc);
    }
  }
  __shared__ float warp_sums[kAuxThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(kFullMask, acc, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kAuxThreads / 32; ++w) total += warp_sums[w];
    p.dsinks[h] = 0.0f - total;  // +0, not -0, when nothing contributes
  }
}

template <typename T>
__global__ void __launch_bounds__(kAuxThreads)
    bwd_preprocess_kernel(const __grid_constant__ KernelParams p) {
  const int h = blockIdx.y, b = blockIdx.z;
  const SeqInfo seq(p, b);
  const int row = blockIdx.x * kAuxRows + threadIdx.x / 8;
  if (int(blockIdx.x) * kAuxRows >= seq.sq) return;
  const int lane8 = threadIdx.x % 8;
  const bool valid = row < seq.sq;
  float sum = 0.0f;
  if (valid) {
    const T* o = p.out.row<const T>(b, h, int64_t(seq.q_row0) + row);
    const T* d = p.dout.row<const T>(b, h, int64_t(seq.q_row0) + row);
    for (int c = lane8; c * 8 < p.head_dim; c += 8) {
      const uint4 ov = *reinterpret_cast<const uint4*>(o + c * 8);
      const uint4 dv = *reinterpret_cast<const uint4*>(d + c * 8);
      const uint32_t ow[4] = {ov.x, ov.y, ov.z, ov.w}, dw[4] = {dv.x, dv.y, dv.z, dv.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 a = unpack2<T>(ow[k]), e = unpack2<T>(dw[k]);
        sum = fmaf(a.x, e.x, sum);
        sum = fmaf(a.y, e.y, sum);
      }
    }
  }
  sum += __shfl_xor_sync(kFullMask, sum, 1);
  sum += __shfl_xor_sync(kFullMask, sum, 2);
  sum += __shfl_xor_sync(kFullMask, sum, 4);
  if (!valid) return;
  const int64_t ws = b * p.ws_sb + h * p.ws_sh + seq.q_row0 + row;
  if (lane8 == 0) {
    p.dsum[ws] = sum;
    const float lse = *p.lse.row<const float>(b, h, int64_t(seq.q_row0) + row);
    p.lse_log2[ws] = lse == -INFINITY ? INFINITY : lse * 1.4426950408889634f;
  }
  if (p.accumulate_dq) {
    float4* acc = reinterpret_cast<float4*>(p.dq_accum + ws * p.head_dim_pad);
    for (int c = lane8; c * 4 < p.head_dim_pad; c += 8) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

template <typename T>
__global__ void __launch_bounds__(kAuxThreads)
    dq_convert_kernel(const __grid_constant__ KernelParams p) {
  const int h = blockIdx.y, b = blockIdx.z;
  const SeqInfo seq(p, b);
  const int row = blockIdx.x * kAuxRows + threadIdx.x / 8;
  if (row >= seq.sq) return;
  const int lane8 = threadIdx.x % 8;
  const int64_t ws = b * p.ws_sb + h * p.ws_sh + seq.q_row0 + row;
  const float* acc = p.dq_accum + ws * p.head_dim_pad;
  T* dq = p.dq.row<T>(b, h, int64_t(seq.q_row0) + row);
  for (int c = lane8; c * 8 < p.head_dim; c += 8) {
    const float4 a = reinterpret_cast<const float4*>(acc)[2 * c];
    const float4 e = reinterpret_cast<const float4*>(acc)[2 * c + 1];
    uint4 v;
    v.x = pack2<T>(a.x * p.scale, a.y * p.scale);
    v.y = pack2<T>(a.z * p.scale, a.w * p.scale);
    v.z = pack2<T>(e.x * p.scale, e.y * p.scale);
    v.w = pack2<T>(e.z * p.scale, e.w * p.scale);
    *reinterpret_cast<uint4*>(dq + c * 8) = v;
  }
}

// What dbias_finish_kernel writes.
enum DbiasFinish : int { kDbiasZero = 0, kDbiasFromAccum = 1, kDbiasFromPartials = 2 };

// One thread per element of dbias's reduced shape [B', H', R', Sk] (grid-stride).
__global__ void __launch_bounds__(kAuxThreads)
    dbias_finish_kernel(const __grid_constant__ KernelParams p, int what) {
  const int64_t cols = p.seqlen_k;
  const int64_t rows = p.dbias_sum_row ? 1 : p.seqlen_q;
  const int64_t heads = p.dbias_sum_h ? 1 : p.heads_q;
  const int64_t batches = p.dbias_sum_b ? 1 : p.batch;
  const int64_t total = batches * heads * rows * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx % cols;
    int64_t rest = idx / cols;
    const int64_t i = rest % rows;
    rest /= rows;
    const int64_t hh = rest % heads;
    const int64_t bb = rest / heads;
    float v = 0.0f;
    if (what == kDbiasFromAccum) {
      v = p.dbias_accum[idx];
    } else if (what == kDbiasFromPartials) {
      // Partials: [B][Hx][R'][Sk], Hx = Hkv if heads are summed, else Hq. Fixed order.
      const int64_t hx_count = p.dbias_sum_h ? p.heads_kv : p.heads_q;
      const int64_t b_begin = p.dbias_sum_b ? 0 : bb, b_end = p.dbias_sum_b ? p.batch : bb + 1;
      const int64_t h_begin = p.dbias_sum_h ? 0 : hh, h_end = p.dbias_sum_h ? hx_count : hh + 1;
      for (int64_t sb = b_begin; sb < b_end; ++sb)
        for (int64_t sh = h_begin; sh < h_end; ++sh)
          v += p.dbias_accum[((sb * hx_count + sh) * rows + i) * cols + j];
    }
    store_dbias_element(p.dbias, bb * p.dbias.sb + hh * p.dbias.sh + i * p.dbias.sr + j, v);
  }
}

}  // namespace fa
