// kvcache_params.h: the validated problem of fa_kvcache_forward (attention over a KV cache,
// with optional append and rotary) and of fa_merge, as every backend receives it.
// cuda/api/ builds them after all checks passed; backends never validate again.
#pragma once

#include <cstdint>

#include "common/mask.h"
#include "common/params.h"

namespace fa {

// A KV cache, dense or paged. Row r (0 <= r < capacity) of sequence b, kv head h:
//   dense: base + b * stride_seq + r * stride_row + h * stride_head
//   paged: base + page * stride_seq + (r % page_size) * stride_row + h * stride_head,
//          page = block_table[b * block_table_stride + r / page_size]
// (stride_seq is the batch stride of a dense cache and the page stride of a paged one).
struct CacheOperand {
  void* ptr = nullptr;
  int64_t stride_seq = 0;
  int64_t stride_row = 0;
  int64_t stride_head = 0;
};

// Rotary embedding tables, float32 [rows, dim / 2] with row stride `stride` (last dim
// contiguous). Position t rotates the pair (x1, x2) of frequency m into
//   (x1 cos[t, m] - x2 sin[t, m],  x1 sin[t, m] + x2 cos[t, m]),
// pairs (m, m + dim / 2) or, interleaved, (2m, 2m + 1); dims >= dim are unchanged.
struct RotaryOperand {
  const float* cos = nullptr;  // nullptr = no rotary
  const float* sin = nullptr;
  int64_t cos_stride = 0, sin_stride = 0;
  int64_t rows = 0;  // >= capacity
  int64_t dim = 0;   // even, <= head_dim
  bool interleaved = false;
};

struct KvCacheParams {
  int32_t device = -1;  // FA_DEVICE_CPU or CUDA ordinal
  int32_t dtype = 0;    // FA_FLOAT16 or FA_BFLOAT16 for q, caches, k_new, v_new, out

  int64_t batch = 0;
  int64_t heads_q = 0;
  int64_t heads_kv = 0;   // heads_q % heads_kv == 0
  int64_t head_dim = 0;   // multiple of 8, 8..256
  int64_t seqlen_new = 0; // Snew: query rows per sequence (and k_new/v_new rows if given)

  // q, out, k_new, v_new as [batch, head, row, dim] (Operand of params.h, never nested).
  Operand q, out, k_new, v_new;  // k_new.ptr == nullptr: nothing appended
  LseOperand lse;                // may be absent

  CacheOperand k_cache, v_cache;
  int64_t capacity = 0;  // rows one sequence can hold
  // Lengths L_b before the call, int32 [batch], on the tensors' device.
  int32_t* cache_seqlens = nullptr;
  // Paged caches: int32 block table; nullptr for a dense cache.
  const int32_t* block_table = nullptr;
  int64_t block_table_stride = 0;  // elements between sequences' rows of the table
  int64_t pages_per_seq = 0;       // block table columns
  int64_t page_size = 0;           // rows per page (dense: capacity)
  int64_t num_pages = 0;           // pages in the cache (dense: batch)

  // Bound on L_b + Snew: checked by the api layer (seqlens_checked) or caller-promised on
  // CUDA; kernels clamp every length to [0, max_seqlen_k] and every page index to
  // [0, num_pages) whatever the values, so memory outside the tensors is never touched.
  int64_t max_seqlen_k = 0;
  bool seqlens_checked = false;

  RotaryOperand rotary;

  float scale = 1.0f;
  Window window;  // causal folded in as right = 0
  float softcap = 0.0f;
  const float* alibi_slopes = nullptr;
  int64_t alibi_stride_b = 0;
  const float* sinks = nullptr;

  bool advance_seqlens = false;  // add Snew to cache_seqlens[b] at the end of the call
  int32_t num_splits = 0;        // 0 = heuristic, else as given (1..256)

  void* stream = nullptr;  // cudaStream_t
  void* workspace = nullptr;
  uint64_t workspace_bytes = 0;

  bool paged() const { return block_table != nullptr; }
  bool appends() const { return k_new.ptr != nullptr; }
  bool windowed() const { return window.left >= 0 || window.right >= 0; }
};

// One part (out_i, lse_i) of fa_merge, or its result: out as [batch, head, row, dim]
// (nested [T, H, D] as batch 1, rows T), lse likewise without dim (ptr may be null for
// the result).
struct MergeOperand {
  Operand out;
  int32_t out_dtype = 0;  // FA_FLOAT16, FA_BFLOAT16 or FA_FLOAT32
  LseOperand lse;
};

inline constexpr int kMaxMergeParts = 256;

struct MergeParams {
  int32_t device = -1;
  int64_t batch = 0, heads = 0, rows = 0, head_dim = 0;
  int32_t num_parts = 0;
  MergeOperand parts[kMaxMergeParts];
  MergeOperand result;
  void* stream = nullptr;
};

}  // namespace fa
