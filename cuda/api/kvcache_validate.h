// kvcache_validate.h: turns fa_kvcache_args / fa_merge_args into the backends' KvCacheParams
// / MergeParams after every check they rely on (same message style as validate.h).
// Nothing is written and no kernel runs before these pass.
//
// Trust of cache_seqlens and block_table (flashattn.h): with max_seqlen_k == 0, or CPU
// tensors, the values are read to the host (CUDA: a copy ordered on args->stream, then a
// sync of it) and checked; with max_seqlen_k > 0 on CUDA they are caller-promised.
#pragma once

#include "common/kvcache_params.h"
#include "flashattn.h"

namespace fa {

fa_status validate_kvcache(const fa_kvcache_args* args, KvCacheParams* params);
fa_status validate_merge(const fa_merge_args* args, MergeParams* params);

// The host-side checks of the untrusted path, on host copies of the values: every
// 0 <= L_b, L_b + Snew <= capacity; the block-table entries of rows [0, L_b + Snew) (paged)
// in [0, num_pages); when appending, no cache row written by one sequence is written or
// read by another, nor twice by one. On success *longest = max_b(L_b + Snew) (0 for B = 0).
// block_table: nullptr for a dense cache, else [batch] rows of `pages_per_seq` entries,
// `table_stride` apart.
fa_status check_cache_lengths(const KvCacheParams& params, const int32_t* seqlens,
                              const int32_t* block_table, int64_t table_stride,
                              int64_t* longest);

}  // namespace fa
