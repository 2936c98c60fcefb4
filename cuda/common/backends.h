// backends.h: what cuda/api/ dispatches to, after validation.
#pragma once

#include <cstdint>

#include "common/kvcache_params.h"
#include "common/params.h"
#include "flashattn.h"

namespace fa {

// CPU reference backend (cuda/cpu/): host pointers, float32 accumulation.
fa_status cpu_forward(const AttentionParams& params);
fa_status cpu_backward(const AttentionParams& params);

// CUDA backend (cuda/sm80/, cuda/sm90/): device pointers, launched on params.stream.
fa_status cuda_forward(const AttentionParams& params);
fa_status cuda_backward(const AttentionParams& params);
fa_status cuda_backward_workspace_size(const AttentionParams& params, uint64_t* bytes);

// Attention over a KV cache (fa_kvcache_forward) and the merge of partial results.
fa_status cpu_kvcache_forward(const KvCacheParams& params);
fa_status cpu_merge(const MergeParams& params);
fa_status cuda_kvcache_forward(const KvCacheParams& params);
fa_status cuda_kvcache_workspace_size(const KvCacheParams& params, uint64_t* bytes);
fa_status cuda_merge(const MergeParams& params);

}  // namespace fa
