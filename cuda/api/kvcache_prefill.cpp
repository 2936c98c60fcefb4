// kvcache_prefill.cpp: many new query rows over a dense cache (chunked prefill) run on the
// training forward kernels (sm90's wgmma where they apply), which beat the decode kernel
// once a head's rows fill a query tile: the cache is a dense [B, Hkv, max_seqlen_k, D]
// batch (its own strides) whose lengths L_b + Snew stay on the device
// (AttentionParams::seqused_k), so the call is still free of host reads and capturable.
#include "api/kvcache_prefill.h"

#include "api/cuda_dispatch.h"

namespace fa {

bool kvcache_prefill_applies(const KvCacheParams& p) {
  // Paged caches and rotary q (which would need a rotated copy) stay on the decode kernel.
  return !p.paged() && p.rotary.cos == nullptr && p.seqlen_new >= kPrefillMinRows &&
         p.max_seqlen_k > 0;
}

fa_status kvcache_prefill(const KvCacheParams& p) {
  AttentionParams a;
  a.device = p.device;
  a.dtype = p.dtype;
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.head_dim = p.head_dim;
  a.seqlen_q = p.seqlen_new;
  a.seqlen_k = p.max_seqlen_k;
  a.seqused_k = p.cache_seqlens;
  a.seqused_k_add = p.appends() ? int32_t(p.seqlen_new) : 0;
  a.q = p.q;
  a.out = p.out;
  a.lse = p.lse;
  a.k = Operand{p.k_cache.ptr, p.k_cache.stride_seq, p.k_cache.stride_head, p.k_cache.stride_row};
  a.v = Operand{p.v_cache.ptr, p.v_cache.stride_seq, p.v_cache.stride_head, p.v_cache.stride_row};
  a.scale = p.scale;
  a.window = p.window;
  a.softcap = p.softcap;
  a.alibi_slopes = p.alibi_slopes;
  a.alibi_stride_b = p.alibi_stride_b;
  a.sinks = p.sinks;
  a.stream = p.stream;
  return dispatch_forward(a);
}

}  // namespace fa
