// kernel_params.h: what the sm80 kernels receive (by value), built on the host from the
// validated AttentionParams by dispatch.cu, and the per-block view of one sequence.
#pragma once

#include <cuda_runtime.h>  // __host__ / __device__ for host-only includers

#include <cstdint>

namespace fa {
namespace sm80 {

// A [batch, head, row, dim] view; the dim stride is 1. For nested batches stride_b is 0
// and rows are global (row_start(b) + i).
struct TensorView {
  void* ptr = nullptr;
  int64_t sb = 0, sh = 0, sr = 0;

  template <typename T>
  __host__ __device__ T* row(int64_t b, int64_t h, int64_t row) const {
    return static_cast<T*>(ptr) + b * sb + h * sh + row * sr;
  }
};

// Additive bias / its gradient, [B, Hq, Sq, Sk] with local row/column indices.
struct BiasView {
  void* ptr = nullptr;
  int dtype = 0;  // FA_FLOAT16, FA_BFLOAT16, FA_FLOAT32
  bool pairs = false;    // base and strides allow loading element pairs (2j, 2j+1) at once
  bool async16 = false;  // base and strides are 16-byte aligned: tiles can go by cp.async
  int64_t sb = 0, sh = 0, sr = 0;
};

// How the backward kernel delivers dS (= dbias before reduction).
enum DbiasMode : int {
  kDbiasNone = 0,
  kDbiasDirect = 1,   // no reduced dimension: dS converted and stored into dbias
  kDbiasAtomic = 2,   // red.add into an fp32 buffer of dbias's reduced shape, then converted
  kDbiasPartial = 3,  // deterministic: per-(batch, kv-head) partial sums, reduced in order
};

struct KernelParams {
  // Forward inputs/outputs (the backward reads q, k, v, out as well).
  TensorView q, k, v, out;
  TensorView lse;  // float32, no dim: element at ptr + b*sb + h*sh + row*sr; may be absent
  BiasView bias;

  const int32_t* cu_q = nullptr;  // nested batches: prefix sums, else nullptr
  const int32_t* cu_k = nullptr;

  int batch = 0, heads_q = 0, heads_kv = 0, group = 1;  // group = heads_q / heads_kv
  int head_dim = 0;
  int seqlen_q = 0, seqlen_k = 0;  // dense lengths, or the maxima of a nested batch
  int64_t total_q = 0, total_k = 0;  // nested: packed rows of q and of k (0 when dense)

  float scale = 1.0f;
  // Softmax works in log2 units: p = exp2(x * softmax_scale_log2 - max * ...), where x is
  // the raw q.k (no bias) or scale * q.k + bias (with bias, then softmax_scale_log2 = log2 e).
  float softmax_scale_log2 = 1.0f;
  float lse_scale = 1.0f;  // lse = max * lse_scale + log(sum)
  bool causal = false;
  bool has_bias = false;
  bool bias_staged = false;  // bias tiles go through shared memory (see bias.h)

  bool has_dropout = false;
  uint32_t dropout_threshold = 0;  // keep iff draw >= threshold
  float dropout_rescale = 1.0f;    // 1 / (1 - p)
  uint64_t seed = 0;
  uint32_t offset = 0;

  // ---- backward ----
  TensorView dout, dq, dk, dv;
  BiasView dbias;
  int dbias_mode = kDbiasNone;
  // Which of (batch, head, row) dbias sums over (stride 0 and size > 1).
  bool dbias_sum_b = false, dbias_sum_h = false, dbias_sum_row = false;
  float* dbias_accum = nullptr;  // fp32 buffer for kDbiasAtomic / kDbiasPartial
  bool accumulate_dq = true;     // false: dq comes from the deterministic dq kernel

  // Workspace (float32): query row i of sequence b, head h is row
  //   b * ws_sb + h * ws_sh + q_row0(b) + i
  // (dense: [B][Hq][Sq]; nested: [Hq][total_q], so nothing is padded).
  int64_t ws_sb = 0, ws_sh = 0;
  int head_dim_pad = 0;       // the head-dim bucket, row length of dq_accum
  float* dsum = nullptr;      // rowsum(dO * O)
  float* lse_log2 = nullptr;  // lse * log2(e), +inf where lse = -inf (nothing visible)
  float* dq_accum = nullptr;  // sum over key blocks of dS K (unscaled), [.., head_dim_pad]
};

// One sequence of the batch as a block sees it.
//
// Nested batches: cu_seqlens may be caller-promised rather than checked (common/params.h),
// so each sequence is clamped to the packed rows and to the maximum length; broken
// promises then give wrong numbers, never accesses outside the tensors or the grid.
struct SeqInfo {
  int q_row0, k_row0;  // first global row (0 for dense batches; cu_seqlens are int32)
  int sq, sk;          // lengths

  __device__ static void clamp_sequence(const int32_t* cu, int b, int64_t total, int max_len,
                                        int& row0, int& len) {
    int64_t start = cu[b], end = cu[b + 1];
    start = start < 0 ? 0 : (start > total ? total : start);
    const int64_t limit = start + max_len < total ? start + max_len : total;
    end = end < start ? start : (end > limit ? limit : end);
    row0 = int(start);
    len = int(end - start);
  }

  __device__ SeqInfo(const KernelParams& p, int b) {
    if (p.cu_q != nullptr) {
      clamp_sequence(p.cu_q, b, p.total_q, p.seqlen_q, q_row0, sq);
      clamp_sequence(p.cu_k, b, p.total_k, p.seqlen_k, k_row0, sk);
    } else {
      q_row0 = 0;
      k_row0 = 0;
      sq = p.seqlen_q;
      sk = p.seqlen_k;
    }
  }

  // One past the last key visible to any of the query rows [row_begin, row_end).
  __device__ int64_t key_end(bool causal, int64_t row_end) const {
    if (!causal) return sk;
    const int64_t last_row = row_end < sq ? row_end : sq;  // exclusive
    const int64_t end = last_row + int64_t(sk) - sq;       // key_end of row last_row - 1
    return end < sk ? end : sk;
  }

  // The first query row that sees key `key` (causal), >= 0.
  __device__ int64_t first_row_seeing(bool causal, int64_t key) const {
    if (!causal) return 0;
    const int64_t row = key - (int64_t(sk) - sq);
    return row > 0 ? row : 0;
  }
};

}  // namespace sm80
}  // namespace fa
