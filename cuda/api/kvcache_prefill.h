// kvcache_prefill.h: the route of fa_kvcache_forward for many new rows over a dense cache
// (kvcache_prefill.cpp), taken after the append and instead of the decode kernel.
#pragma once

#include "common/kvcache_params.h"
#include "flashattn.h"

namespace fa {

// New query rows per sequence from which a dense cache goes to the forward kernels.
inline constexpr int64_t kPrefillMinRows = 64;

bool kvcache_prefill_applies(const KvCacheParams& p);
// The attention of p over its (already appended) dense cache; sinks included, no split.
fa_status kvcache_prefill(const KvCacheParams& p);

}  // namespace fa
