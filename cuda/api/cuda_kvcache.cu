// cuda_kvcache.cu: the CUDA backend of fa_kvcache_forward and fa_merge. One call queues,
// on the caller's stream and with no host synchronization:
//   1. the append of k_new / v_new (kvcache_kernels.cu), when given;
//   2. the attention: many new rows over a dense cache on the forward kernels
//      (kvcache_prefill.cpp), else the decode kernel (sm80/decode_kernel.h) over split-KV
//      chunks chosen here (plan_splits);
//   3. the combine of the split parts, when some row block has two chunks or more;
//   4. the advance of cache_seqlens (FA_FLAG_ADVANCE_SEQLENS).
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>

#include "api/cuda_dispatch.h"
#include "api/kvcache_kernels.h"
#include "api/kvcache_prefill.h"
#include "common/backends.h"
#include "common/decode_params.h"
#include "common/scratch_pool.h"
#include "common/status.h"
#include "sm80/decode.h"

namespace fa {
namespace {

// Fewest key tiles a split chunk gets from the heuristic (256 keys): below that a chunk's
// fixed cost (q load, the merge of the warps, its part's write) outweighs its reads.
constexpr int kMinChunkTiles = 16;

struct Bucket {
  int index;  // 0, 1, 2 for head dims <= 64, <= 128, <= 256
  sm80::DecodeLaunchFn launch;
  sm80::DecodeOccupancyFn occupancy;
};

Bucket bucket_of(int64_t head_dim) {
  if (head_dim <= 64) return {0, sm80::launch_decode_d64, sm80::decode_occupancy_d64};
  if (head_dim <= 128) return {1, sm80::launch_decode_d128, sm80::decode_occupancy_d128};
  return {2, sm80::launch_decode_d256, sm80::decode_occupancy_d256};
}

// Resident blocks per multiprocessor of a bucket's kernel, queried once per device.
fa_status occupancy(const Bucket& bucket, bool bf16, const LaunchContext& ctx, int* blocks) {
  static std::atomic<int> known[64][3][2] = {};
  const bool cacheable = ctx.device >= 0 && ctx.device < 64;
  if (cacheable) {
    const int cached = known[ctx.device][bucket.index][bf16].load(std::memory_order_relaxed);
    if (cached > 0) {
      *blocks = cached;
      return FA_OK;
    }
  }
  sm80::DecodeOccupancy result;
  if (const fa_status s = bucket.occupancy(bf16, ctx, &result)) return s;
  if (cacheable) known[ctx.device][bucket.index][bf16].store(result.blocks_per_sm);
  *blocks = result.blocks_per_sm;
  return FA_OK;
}

bool aligned16(const void* ptr, std::initializer_list<int64_t> strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (const int64_t stride : strides) {
    if (stride % 8 != 0) return false;
  }
  return true;
}

// The kernels' view of p (window sides as wide as the cache clamped to unbounded, so the
// kernels' int arithmetic stays below 2^31).
DecodeParams decode_params(const KvCacheParams& p) {
  DecodeParams d{};
  d.q = p.q.ptr;
  d.out = p.out.ptr;
  d.q_stride_b = p.q.stride_b;
  d.q_stride_h = p.q.stride_head;
  d.q_stride_row = p.q.stride_row;
  d.out_stride_b = p.out.stride_b;
  d.out_stride_h = p.out.stride_head;
  d.out_stride_row = p.out.stride_row;
  d.lse = p.lse.ptr;
  d.lse_stride_b = p.lse.stride_b;
  d.lse_stride_h = p.lse.stride_head;
  d.lse_stride_row = p.lse.stride_row;
  d.k_cache = p.k_cache.ptr;
  d.v_cache = p.v_cache.ptr;
  d.k_stride_seq = p.k_cache.stride_seq;
  d.k_stride_row = p.k_cache.stride_row;
  d.k_stride_head = p.k_cache.stride_head;
  d.v_stride_seq = p.v_cache.stride_seq;
  d.v_stride_row = p.v_cache.stride_row;
  d.v_stride_head = p.v_cache.stride_head;
  d.block_table = p.block_table;
  d.block_table_stride = p.block_table_stride;
  d.page_size = int(p.page_size);
  d.num_pages = int(p.num_pages);
  d.cache_seqlens = p.cache_seqlens;
  d.batch = int(p.batch);
  d.heads_q = int(p.heads_q);
  d.heads_kv = int(p.heads_kv);
  d.group = int(p.heads_q / p.heads_kv);
  d.seqlen_new = int(p.seqlen_new);
  d.head_dim = int(p.head_dim);
  d.max_seqlen_k = int(p.max_seqlen_k);
  d.appended = p.appends() ? int(p.seqlen_new) : 0;
  d.row_blocks = int((p.seqlen_new * d.group + kDecodeRows - 1) / kDecodeRows);
  d.scale = p.scale;
  d.softcap = p.softcap;
  d.tanh_scale = p.softcap > 0.0f ? p.scale / p.softcap : 0.0f;
  d.score_mods = p.softcap > 0.0f || p.alibi_slopes != nullptr;
  d.scale_log2 = d.score_mods ? 1.4426950408889634f : p.scale * 1.4426950408889634f;
  const auto clamp_side = [&](int64_t side) {
    return side >= p.max_seqlen_k + p.seqlen_new ? -1 : int(side);
  };
  d.window_left = clamp_side(p.window.left);
  d.window_right = clamp_side(p.window.right);
  d.alibi_slopes = p.alibi_slopes;
  d.alibi_stride_b = p.alibi_stride_b;
  d.sinks = p.sinks;
  d.rotary_cos = p.rotary.cos;
  d.rotary_sin = p.rotary.sin;
  d.rotary_cos_stride = p.rotary.cos_stride;
  d.rotary_sin_stride = p.rotary.sin_stride;
  d.rotary_dim = int(p.rotary.dim);
  d.rotary_rows = int(p.rotary.rows);
  d.rotary_interleaved = p.rotary.interleaved;
  d.q_vec = aligned16(p.q.ptr, {p.q.stride_b, p.q.stride_head, p.q.stride_row});
  d.cache_vec = aligned16(p.k_cache.ptr, {p.k_cache.stride_seq, p.k_cache.stride_row,
                                          p.k_cache.stride_head}) &&
                aligned16(p.v_cache.ptr, {p.v_cache.stride_seq, p.v_cache.stride_row,
                                          p.v_cache.stride_head});
  return d;
}

int ceil_div_int(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// The fraction of the last wave's slots a grid of `items` equal items keeps busy.
double wave_efficiency(int64_t items, int64_t slots) {
  const double waves = double(items) / double(slots);
  return waves / std::ceil(waves);
}

// Split-KV chunking (decode_params.h). Caller's num_splits: n parts of the longest
// sequence. Heuristic, from the grid alone (lengths stay on the device):
// - row blocks that fill the GPU by themselves (base >= slots) are not split;
// - else at least enough chunks to fill every resident block slot, and chunks no longer
//   than the longest sequence's tiles spread over every slot (so one long sequence among
//   short ones leaves a tail of at most one such chunk);
// - then, from that count up to 4x, the fewest chunks whose last wave is >= 95% as full as
//   the best (equal sequences run in whole waves).
void plan_splits(const KvCacheParams& p, int slots, DecodeParams* d) {
  const int64_t tiles = ceil_div_int(p.max_seqlen_k, kDecodeTileKeys);
  const int64_t base = int64_t(d->batch) * d->heads_kv * d->row_blocks;
  int chunks = 1;
  if (tiles <= 1) {
    // one tile at most: nothing to split
  } else if (p.num_splits >= 1) {
    chunks = int(p.num_splits < tiles ? p.num_splits : tiles);
  } else if (base < slots && tiles > kMinChunkTiles) {
    const int64_t longest = tiles * d->heads_kv * d->row_blocks;
    int64_t tail_tiles = longest / slots;
    tail_tiles = tail_tiles > kMinChunkTiles ? tail_tiles : kMinChunkTiles;
    int64_t low = ceil_div_int(tiles, tail_tiles);
    const int64_t fill = ceil_div_int(slots, base);
    low = low > fill ? low : fill;
    const int64_t most = ceil_div_int(tiles, kMinChunkTiles);
    low = low < most ? low : most;
    int64_t high = 4 * low < most ? 4 * low : most;
    high = high < kMaxMergeParts ? high : kMaxMergeParts;
    low = low < high ? low : high;
    double best = 0.0;
    for (int64_t s = low; s <= high; ++s) best = std::fmax(best, wave_efficiency(base * s, slots));
    chunks = int(low);
    for (int64_t s = low; s <= high; ++s) {
      if (wave_efficiency(base * s, slots) >= 0.95 * best) {
        chunks = int(s);
        break;
      }
    }
  }
  d->chunk_tiles = tiles > 0 ? ceil_div_int(tiles, chunks) : 1;
  d->max_chunks = tiles > 0 ? ceil_div_int(tiles, d->chunk_tiles) : 1;
}

struct DecodePlan {
  DecodeParams d;
  Bucket bucket;
  int num_items = 0, grid = 0;
  uint64_t part_bytes = 0;  // split parts: out then lse (0 = unsplit)
  uint64_t lse_offset = 0;
};

fa_status plan_decode(const KvCacheParams& p, const LaunchContext& ctx, DecodePlan* plan) {
  plan->d = decode_params(p);
  plan->bucket = bucket_of(p.head_dim);
  int blocks_per_sm = 1;
  if (const fa_status s = occupancy(plan->bucket, p.dtype == FA_BFLOAT16, ctx, &blocks_per_sm))
    return s;
  const int slots = ctx.multiprocessors * blocks_per_sm;
  plan_splits(p, slots, &plan->d);
  const int64_t base = int64_t(plan->d.batch) * plan->d.heads_kv * plan->d.row_blocks;
  const int64_t items = base * plan->d.max_chunks;
  if (items >= (int64_t(1) << 31)) {
    return fail(FA_ERR_UNSUPPORTED, "q: %lld work items exceed the supported 2^31",
                static_cast<long long>(items));
  }
  plan->num_items = int(items);
  plan->grid = int(items < slots ? items : slots);
  if (plan->d.max_chunks > 1) {
    const uint64_t rows = uint64_t(plan->d.max_chunks) * p.batch * p.heads_q * p.seqlen_new;
    plan->lse_offset = (rows * uint64_t(p.head_dim) * 4 + 255) / 256 * 256;
    plan->part_bytes = plan->lse_offset + rows * 4;
  }
  return FA_OK;
}

}  // namespace

fa_status cuda_kvcache_workspace_size(const KvCacheParams& p, uint64_t* bytes) {
  *bytes = 0;
  if (kvcache_prefill_applies(p)) return FA_OK;
  LaunchContext ctx;
  if (const fa_status s = launch_context(p.device, p.stream, &ctx))
    return s;
  DecodePlan plan;
  if (const fa_status s = plan_decode(p, ctx, &plan)) return s;
  *bytes = plan.part_bytes;
  return FA_OK;
}

fa_status cuda_kvcache_forward(const KvCacheParams& p) {
  LaunchContext ctx;
  if (const fa_status s = launch_context(p.device, p.stream, &ctx))
    return s;
  const bool bf16 = p.dtype == FA_BFLOAT16;
  const bool prefill = kvcache_prefill_applies(p);
  DecodePlan plan;
  if (const fa_status s = plan_decode(p, ctx, &plan)) return s;
  // Workspace first: an out-of-memory error must come before anything is written.
  StreamBuffer owned(ctx.device, ctx.stream);
  char* workspace = static_cast<char*>(p.workspace);
  if (!prefill && plan.part_bytes > 0 &&
      (workspace == nullptr || p.workspace_bytes < plan.part_bytes)) {
    if (owned.allocate(plan.part_bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return fail(FA_ERR_OUT_OF_MEMORY,
                  "workspace: %llu bytes for the split-KV parts could not be allocated on "
                  "device %d (pass a workspace of fa_kvcache_workspace_size bytes, or num_splits "
                  "= 1)",
                  static_cast<unsigned long long>(plan.part_bytes), ctx.device);
    }
    workspace = static_cast<char*>(owned.get());
  }
  if (p.appends()) {
    if (const fa_status s = launch_append(p, plan.d, ctx)) return s;
  }
  if (prefill) {
    if (const fa_status s = kvcache_prefill(p)) return s;
  } else {
    if (plan.part_bytes > 0) {
      plan.d.part_out = reinterpret_cast<float*>(workspace);
      plan.d.part_lse = reinterpret_cast<float*>(workspace + plan.lse_offset);
    }
    if (const fa_status s = plan.bucket.launch(plan.d, bf16, plan.num_items, plan.grid, ctx))
      return s;
    if (plan.d.max_chunks > 1) {
      if (const fa_status s = launch_combine(plan.d, bf16, ctx)) return s;
    }
  }
  if (p.advance_seqlens) {
    return launch_advance(p.cache_seqlens, int(p.batch), int(p.seqlen_new), ctx);
  }
  return FA_OK;
}

fa_status cuda_merge(const MergeParams& p) {
  LaunchContext ctx;
  if (const fa_status s = launch_context(p.device, p.stream, &ctx))
    return s;
  return launch_merge(p, ctx);
}

}  // namespace fa
