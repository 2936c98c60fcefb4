// kvcache_kernels.cu: the kernels of kvcache_kernels.h. Small and latency-bound next to the
// attention kernel: plain loads and stores, grid-stride loops, 64-bit offsets.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "api/kvcache_kernels.h"
#include "common/merge.h"
#include "common/rotary.h"
#include "common/status.h"

namespace fa {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxBlocks = 1 << 16;  // grid-stride beyond this

int blocks_for(int64_t items, int per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return int(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

__device__ __forceinline__ float load_any(const void* base, int dtype, int64_t offset) {
  switch (dtype) {
    case FA_FLOAT16: return __half2float(static_cast<const __half*>(base)[offset]);
    case FA_BFLOAT16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[offset]);
    default: return static_cast<const float*>(base)[offset];
  }
}

__device__ __forceinline__ void store_any(void* base, int dtype, int64_t offset, float x) {
  switch (dtype) {
    case FA_FLOAT16: static_cast<__half*>(base)[offset] = __float2half_rn(x); break;
    case FA_BFLOAT16: static_cast<__nv_bfloat16*>(base)[offset] = __float2bfloat16_rn(x); break;
    default: static_cast<float*>(base)[offset] = x;
  }
}

// ---- append --------------------------------------------------------------------------

struct AppendArgs {
  DecodeParams d;
  const void* k_new;
  const void* v_new;
  int64_t k_stride_b, k_stride_h, k_stride_row;
  int64_t v_stride_b, v_stride_h, v_stride_row;
};

// One block per new row (b, kv head, i): its K row rotated at position L_b + i (float32,
// rounded to the dtype, rotary.h's pairs), its V row copied.
template <typename T>
__global__ void __launch_bounds__(kThreads) append_kernel(const __grid_constant__ AppendArgs a) {
  const DecodeParams& p = a.d;
  const int64_t rows = int64_t(p.batch) * p.heads_kv * p.seqlen_new;
  for (int64_t item = blockIdx.x; item < rows; item += gridDim.x) {
    const int i = int(item % p.seqlen_new);
    const int h = int(item / p.seqlen_new % p.heads_kv);
    const int b = int(item / (int64_t(p.seqlen_new) * p.heads_kv));
    const int j = cache_length(p, b) + i;
    const CacheRow at = cache_row(p, b, j);
    const int64_t seq = at.seq, row = at.row;
    const T* k_src = static_cast<const T*>(a.k_new) + b * a.k_stride_b + h * a.k_stride_h +
                     i * a.k_stride_row;
    const T* v_src = static_cast<const T*>(a.v_new) + b * a.v_stride_b + h * a.v_stride_h +
                     i * a.v_stride_row;
    T* k_dst = const_cast<T*>(static_cast<const T*>(p.k_cache)) + seq * p.k_stride_seq +
               row * p.k_stride_row + h * p.k_stride_head;
    T* v_dst = const_cast<T*>(static_cast<const T*>(p.v_cache)) + seq * p.v_stride_seq +
               row * p.v_stride_row + h * p.v_stride_head;
    for (int e = threadIdx.x; e < p.head_dim; e += kThreads) {
      const auto k_at = [&](int d) { return float(k_src[d]); };
      const float x = p.rotary_cos == nullptr
                          ? k_at(e)
                          : rotated_element(k_at, e, p.rotary_dim, p.rotary_interleaved,
                                            rotary_cos_row(p, j), rotary_sin_row(p, j));
      k_dst[e] = T(x);
      v_dst[e] = v_src[e];
    }
  }
}

// ---- merge ---------------------------------------------------------------------------

// One warp per row; every lane computes the row's weights (merge.h, the parts read in the
// same order by all lanes), then owns dims lane, lane + 32, ...
struct SplitParts {
  const DecodeParams* d;
  int parts;     // chunks of this row
  int64_t row;   // ((b * Hq + h) * Snew + i)
  int64_t rows;  // B * Hq * Snew
  float sink;
  __device__ int count() const { return parts + (sink != -INFINITY ? 1 : 0); }
  __device__ float lse(int c) const {
    return c == parts ? sink : d->part_lse[int64_t(c) * rows + row];
  }
  __device__ float out(int c, int dim) const {
    return d->part_out[(int64_t(c) * rows + row) * d->head_dim + dim];
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = int64_t(p.batch) * p.heads_q * p.seqlen_new;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t row = blockIdx.x * (kThreads / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const int i = int(row % p.seqlen_new);
    const int h = int(row / p.seqlen_new % p.heads_q);
    const int b = int(row / (int64_t(p.seqlen_new) * p.heads_q));
    const int rb = (i * p.group + h % p.group) / kDecodeRows;
    const ChunkPlan plan = chunk_plan(p, cache_length(p, b) + p.appended, rb);
    if (plan.chunks <= 1) continue;  // the attention kernel finished this row itself
    SplitParts parts{&p, plan.chunks, row, rows, p.sinks != nullptr ? p.sinks[h] : -INFINITY};
    const MergeWeights weights =
        merge_weights(parts.count(), [&](int c) { return parts.lse(c); });
    T* out = static_cast<T*>(p.out) + b * p.out_stride_b + h * p.out_stride_h +
             i * p.out_stride_row;
    for (int dim = lane; dim < p.head_dim; dim += 32) {
      float acc = 0.0f;
      for (int c = 0; c < plan.chunks; ++c) {
        const float w = weights.weight(parts.lse(c));
        if (w != 0.0f) acc = fmaf(w, parts.out(c, dim), acc);  // empty parts unread
      }
      out[dim] = T(acc);
    }
    if (p.lse != nullptr && lane == 0) {
      p.lse[b * p.lse_stride_b + h * p.lse_stride_h + i * p.lse_stride_row] = weights.lse();
    }
  }
}

// fa_merge: the same rule over caller tensors of any of the three dtypes and any strides.
struct MergeArgs {
  int num_parts;
  int64_t batch, heads, rows, head_dim;
  struct Part {
    const void* out;
    int64_t out_stride_b, out_stride_h, out_stride_row;
    const float* lse;
    int64_t lse_stride_b, lse_stride_h, lse_stride_row;
    int dtype;
  } parts[kMaxMergeParts];
  void* out;
  int64_t out_stride_b, out_stride_h, out_stride_row;
  int out_dtype;
  float* lse;
  int64_t lse_stride_b, lse_stride_h, lse_stride_row;
};

__global__ void __launch_bounds__(kThreads) merge_kernel(const __grid_constant__ MergeArgs a) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = a.batch * a.heads * a.rows;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t row = blockIdx.x * (kThreads / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const int64_t i = row % a.rows, h = row / a.rows % a.heads, b = row / (a.rows * a.heads);
    const auto lse_at = [&](int c) {
      const auto& part = a.parts[c];
      return part.lse[b * part.lse_stride_b + h * part.lse_stride_h + i * part.lse_stride_row];
    };
    const MergeWeights weights = merge_weights(a.num_parts, lse_at);
    for (int64_t dim = lane; dim < a.head_dim; dim += 32) {
      float acc = 0.0f;
      for (int c = 0; c < a.num_parts; ++c) {
        const float w = weights.weight(lse_at(c));
        if (w == 0.0f) continue;
        const auto& part = a.parts[c];
        acc = fmaf(w,
                   load_any(part.out, part.dtype,
                            b * part.out_stride_b + h * part.out_stride_h +
                                i * part.out_stride_row + dim),
                   acc);
      }
      store_any(a.out, a.out_dtype,
                b * a.out_stride_b + h * a.out_stride_h + i * a.out_stride_row + dim, acc);
    }
    if (a.lse != nullptr && lane == 0) {
      a.lse[b * a.lse_stride_b + h * a.lse_stride_h + i * a.lse_stride_row] = weights.lse();
    }
  }
}

__global__ void advance_kernel(int32_t* seqlens, int batch, int added) {
  for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < batch; b += gridDim.x * blockDim.x) {
    seqlens[b] += added;
  }
}

}  // namespace

fa_status launch_append(const KvCacheParams& p, const DecodeParams& d, const LaunchContext& ctx) {
  AppendArgs a;
  a.d = d;
  a.k_new = p.k_new.ptr;
  a.v_new = p.v_new.ptr;
  a.k_stride_b = p.k_new.stride_b;
  a.k_stride_h = p.k_new.stride_head;
  a.k_stride_row = p.k_new.stride_row;
  a.v_stride_b = p.v_new.stride_b;
  a.v_stride_h = p.v_new.stride_head;
  a.v_stride_row = p.v_new.stride_row;
  const int blocks = blocks_for(int64_t(d.batch) * d.heads_kv * d.seqlen_new, 1);
  if (p.dtype == FA_BFLOAT16) {
    FA_LAUNCH(append_kernel<__nv_bfloat16>, blocks, kThreads, 0, ctx.stream, a);
  } else {
    FA_LAUNCH(append_kernel<__half>, blocks, kThreads, 0, ctx.stream, a);
  }
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

fa_status launch_combine(const DecodeParams& d, bool bf16, const LaunchContext& ctx) {
  const int blocks = blocks_for(int64_t(d.batch) * d.heads_q * d.seqlen_new, kThreads / 32);
  if (bf16) {
    FA_LAUNCH(combine_kernel<__nv_bfloat16>, blocks, kThreads, 0, ctx.stream, d);
  } else {
    FA_LAUNCH(combine_kernel<__half>, blocks, kThreads, 0, ctx.stream, d);
  }
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

fa_status launch_merge(const MergeParams& p, const LaunchContext& ctx) {
  MergeArgs a;
  a.num_parts = p.num_parts;
  a.batch = p.batch;
  a.heads = p.heads;
  a.rows = p.rows;
  a.head_dim = p.head_dim;
  for (int c = 0; c < p.num_parts; ++c) {
    const MergeOperand& part = p.parts[c];
    a.parts[c] = MergeArgs::Part{part.out.ptr,        part.out.stride_b, part.out.stride_head,
                                 part.out.stride_row, part.lse.ptr,      part.lse.stride_b,
                                 part.lse.stride_head, part.lse.stride_row, part.out_dtype};
  }
  a.out = p.result.out.ptr;
  a.out_stride_b = p.result.out.stride_b;
  a.out_stride_h = p.result.out.stride_head;
  a.out_stride_row = p.result.out.stride_row;
  a.out_dtype = p.result.out_dtype;
  a.lse = p.result.lse.ptr;
  a.lse_stride_b = p.result.lse.stride_b;
  a.lse_stride_h = p.result.lse.stride_head;
  a.lse_stride_row = p.result.lse.stride_row;
  const int64_t rows = p.batch * p.heads * p.rows;
  if (rows == 0) return FA_OK;
  FA_LAUNCH(merge_kernel, blocks_for(rows, kThreads / 32), kThreads, 0, ctx.stream, a);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

fa_status launch_advance(int32_t* cache_seqlens, int batch, int added, const LaunchContext& ctx) {
  FA_LAUNCH(advance_kernel, blocks_for(batch, 256), 256, 0, ctx.stream, cache_seqlens, batch,
            added);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

}  // namespace fa
