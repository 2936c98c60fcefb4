// kvcache_kernels.h: the small kernels around the KV-cache attention kernel
// (kvcache_kernels.cu): append of the new rows, the split combine, fa_merge's merge, and
// the advance of the lengths. Each is queued on ctx.stream, with no host synchronization.
#pragma once

#include "common/decode_params.h"
#include "common/kvcache_params.h"
#include "common/launch.h"

namespace fa {

// k_new (rotated when p has rotary tables) and v_new into cache rows L_b .. L_b + Snew - 1
// of each sequence, L_b = cache_length(d, b) (clamped like the attention's).
fa_status launch_append(const KvCacheParams& p, const DecodeParams& d, const LaunchContext& ctx);

// Merges the split parts of every row block with two chunks or more (chunk_plan) into
// d.out / d.lse, the sink as one more part.
fa_status launch_combine(const DecodeParams& d, bool bf16, const LaunchContext& ctx);

// fa_merge on the device.
fa_status launch_merge(const MergeParams& p, const LaunchContext& ctx);

// cache_seqlens[b] += added, after everything queued before it on the stream.
fa_status launch_advance(int32_t* cache_seqlens, int batch, int added, const LaunchContext& ctx);

}  // namespace fa
