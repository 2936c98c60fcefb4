// params.h: the validated, normalized problem every backend receives.
// cuda/api/ builds one AttentionParams from the ABI structs after all checks passed;
// backends never see fa_tensor and never validate again.
#pragma once

#include <cstdint>

#include "common/mask.h"

namespace fa {

// A [batch, head, row, dim] operand; the dim stride is 1.
// Element (b, h, i, d) of sequence b lives at
//   ptr + b * stride_b + (row_start(b) + i) * stride_row + h * stride_head + d
// where row_start(b) = cu_seqlens[b] for nested batches (then stride_b == 0), else 0.
struct Operand {
  void* ptr = nullptr;
  int64_t stride_b = 0;
  int64_t stride_head = 0;
  int64_t stride_row = 0;
};

// Log-sum-exp, float32, same addressing as Operand without the dim.
struct LseOperand {
  float* ptr = nullptr;
  int64_t stride_b = 0;
  int64_t stride_head = 0;
  int64_t stride_row = 0;
};

// Additive bias [B, Hq, Sq, Sk] (nested: local row/column indices), last dim contiguous.
// Broadcast dims have stride 0. For dbias, a stride-0 dim is summed over.
struct BiasOperand {
  void* ptr = nullptr;  // nullptr = no bias
  int32_t dtype = 0;    // FA_FLOAT16, FA_BFLOAT16 or FA_FLOAT32
  int64_t stride_b = 0;
  int64_t stride_head = 0;
  int64_t stride_row = 0;
};

struct AttentionParams {
  int32_t device = -1;  // FA_DEVICE_CPU or CUDA ordinal
  int32_t dtype = 0;    // FA_FLOAT16 or FA_BFLOAT16 for q, k, v, out, dout, dq, dk, dv

  int64_t batch = 0;
  int64_t heads_q = 0;
  int64_t heads_kv = 0;  // heads_q % heads_kv == 0
  int64_t head_dim = 0;  // multiple of 8, 8..256
  int64_t seqlen_q = 0;  // dense length, or max over the nested batch
  int64_t seqlen_k = 0;

  // Nested batches: int32 prefix sums of length batch + 1, on the tensors' device;
  // nullptr for dense batches.
  //
  // Trust: on the CPU, and on CUDA when the caller leaves max_seqlen_q or max_seqlen_k at 0,
  // the api layer read the values and checked them (start at 0, non-decreasing, last value
  // <= total_q / total_k, every length <= seqlen_q / seqlen_k). On CUDA with both
  // max_seqlen given, the values are NOT read (that would cost a device-to-host copy and a
  // stream sync per call): they are caller-promised only. CUDA kernels must therefore stay
  // in bounds whatever the values are, by clamping each sequence before using it:
  //   start_q = clamp(cu_seqlens_q[b],     0,       total_q)
  //   end_q   = clamp(cu_seqlens_q[b + 1], start_q, min(total_q, start_q + seqlen_q))
  //   len_q   = end_q - start_q            (so 0 <= len_q <= seqlen_q)
  // and likewise for k with total_k and seqlen_k. Bad values then give wrong numbers for
  // the caller who broke the promise, never an access outside q/k/v/out/lse/bias/dq/dk/dv
  // or outside the grid sized from seqlen_q and seqlen_k.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  // Nested batches: the packed rows of q (and out, dout, dq, lse) and of k (and v, dk, dv);
  // 0 for dense batches.
  int64_t total_q = 0;
  int64_t total_k = 0;
  // Dense batches (CUDA forward only): sequence b uses keys [0, seqused_k[b] + seqused_k_add)
  // of its seqlen_k rows, clamped to [0, seqlen_k] on the device, so a KV cache's lengths
  // never leave the GPU (kvcache_prefill.cpp). nullptr: every sequence uses seqlen_k keys.
  const int32_t* seqused_k = nullptr;
  int32_t seqused_k_add = 0;

  Operand q, k, v, out;
  LseOperand lse;  // forward: may be absent (ptr == nullptr); backward: required
  BiasOperand bias;

  float scale = 1.0f;
  float dropout_p = 0.0f;
  uint64_t seed = 0;
  uint32_t offset = 0;  // low 32 bits of the ABI's offset: Philox counter word 3

  // Visibility (common/mask.h): causal is folded in as window.right = 0 by the api layer.
  Window window;
  // Score features (common/score.h).
  float softcap = 0.0f;                  // 0 = off, else > 0
  const float* alibi_slopes = nullptr;   // float32, slope of (b, h) at b * alibi_stride_b + h
  int64_t alibi_stride_b = 0;            // 0 for [Hq] slopes, [B, Hq]'s batch stride
  const float* sinks = nullptr;          // float32 [Hq], one logit per query head

  // Backward only.
  Operand dout, dq, dk, dv;
  BiasOperand dbias;  // ptr == nullptr: not wanted
  float* dsinks = nullptr;  // float32 [Hq]; required when sinks are given
  bool deterministic = false;

  void* stream = nullptr;  // cudaStream_t
  void* workspace = nullptr;
  uint64_t workspace_bytes = 0;

  bool nested() const { return cu_seqlens_q != nullptr; }
  bool windowed() const { return window.left >= 0 || window.right >= 0; }
  // The visibility rule of sequence lengths (sq, sk).
  KeyRange key_range(int64_t sq, int64_t sk) const { return KeyRange{window, sq, sk}; }
};

}  // namespace fa
