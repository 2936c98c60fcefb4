// kernel_params.h: what every GPU kernel (sm80 and sm90) receives by value, built on the
// host from the validated AttentionParams (kernel_params_build.h).
#pragma once

#include <cuda_runtime.h>  // __host__ / __device__ for host-only includers

#include <cstdint>

#include "common/mask.h"

namespace fa {

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
  // The visibility rule for one sequence of lengths (sq, sk).
  __host__ __device__ BasicKeyRange<int> key_range(int sq, int sk) const {
    return BasicKeyRange<int>{BasicWindow<int>{window_left, window_right}, sq, sk};
  }
  __host__ __device__ bool windowed() const { return window_left >= 0 || window_right >= 0; }
  // ALiBi slope of (b, h), 0 without ALiBi.
  __device__ float alibi_slope(int b, int h) const {
    return alibi_slopes != nullptr ? alibi_slopes[int64_t(b) * alibi_stride_b + h] : 0.0f;
  }
  // Softcap or ALiBi on: the kernels' score-feature variants (kScoreMods) run.
  __host__ __device__ bool has_score_mods() const {
    return softcap > 0.0f || alibi_slopes != nullptr;
  }

  // Forward inputs/outputs (the backward reads q, k, v, out as well).
  TensorView q, k, v, out;
  TensorView lse;  // float32, no dim: element at ptr + b*sb + h*sh + row*sr; may be absent
  BiasView bias;

  const int32_t* cu_q = nullptr;  // nested batches: prefix sums, else nullptr
  const int32_t* cu_k = nullptr;
  const int32_t* seqused_k = nullptr;  // dense: keys used per sequence (params.h), or nullptr
  int seqused_k_add = 0;

  int batch = 0, heads_q = 0, heads_kv = 0, group = 1;  // group = heads_q / heads_kv
  int head_dim = 0;
  int seqlen_q = 0, seqlen_k = 0;  // dense lengths, or the maxima of a nested batch
  int64_t total_q = 0, total_k = 0;  // nested: packed rows of q and of k (0 when dense)

  float scale = 1.0f;
  // Softmax works in log2 units: p = exp2(x * softmax_scale_log2 - max * ...), where x is
  // the raw q.k, or with natural_scores (bias, softcap or ALiBi on; common/score.h) the
  // score scale q.k, capped, + bias, + ALiBi, and then softmax_scale_log2 = log2 e.
  float softmax_scale_log2 = 1.0f;
  float lse_scale = 1.0f;  // lse = max * lse_scale + log(sum)
  // Visibility (common/mask.h): -1 = unbounded; causal is window_right = 0.
  int window_left = -1, window_right = -1;
  // Score features (common/score.h).
  float softcap = 0.0f;                 // 0 = off
  float softcap_tanh_scale = 0.0f;      // scale / softcap: tanh's argument per unit of q.k
  const float* alibi_slopes = nullptr;  // slope of (b, h) at b * alibi_stride_b + h
  int alibi_stride_b = 0;
  const float* sinks = nullptr;         // [Hq] logits, nullptr = none
  float* dsinks = nullptr;              // backward: [Hq]
  bool natural_scores = false;  // see softmax_scale_log2
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

}  // namespace fa
