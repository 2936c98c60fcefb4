// decode_params.h: what the KV-cache kernels receive (DecodeParams, built on the host from a
// validated KvCacheParams by cuda/api/cuda_kvcache.cu), and the one rule of how the keys of
// a row block are cut into split-KV chunks, shared by the attention kernel (which writes a
// chunk's part) and the combine kernel (which merges a row's parts), so the two agree on
// how many parts each row has.
//
// Packed rows: a block attends 16 packed rows r = i * G + g of one (sequence b, kv head),
// query row i of query head kv_head * G + g (G = Hq / Hkv), so a GQA group reads its K/V
// once. Row block rb covers packed rows [16 rb, 16 rb + 16).
//
// Chunks: the key tiles (kDecodeTileKeys keys each, aligned to multiples of it) that the
// row block's rows see, [first, last) from mask.h's key_blocks, are cut into chunks of
// chunk_tiles tiles from `first` on. A row block with n <= 1 chunks is finished by the
// attention kernel itself (out, lse, sink included); with n >= 2, chunk c writes part c
// and the combine kernel merges parts 0..n-1 with the sink (merge.h).
#pragma once

#include <cstdint>

#include "common/mask.h"

namespace fa {

inline constexpr int kDecodeTileKeys = 16;  // keys per warp tile
inline constexpr int kDecodeRows = 16;      // packed rows per block

struct DecodeParams {
  // q, out: [B, Hq, Snew, D] strides in elements; k_new / v_new [B, Hkv, Snew, D].
  const void* q;
  void* out;
  int64_t q_stride_b, q_stride_h, q_stride_row;
  int64_t out_stride_b, out_stride_h, out_stride_row;
  float* lse;  // may be null
  int64_t lse_stride_b, lse_stride_h, lse_stride_row;

  // Caches (kvcache_params.h's CacheOperand addressing), dense when block_table is null.
  const void* k_cache;
  const void* v_cache;
  int64_t k_stride_seq, k_stride_row, k_stride_head;
  int64_t v_stride_seq, v_stride_row, v_stride_head;
  const int32_t* block_table;
  int64_t block_table_stride;
  int page_size, num_pages;

  const int32_t* cache_seqlens;  // L_b before the call, clamped by cache_length()
  int batch, heads_q, heads_kv, group;  // group = Hq / Hkv
  int seqlen_new, head_dim;
  int max_seqlen_k;  // bound on L_b + appended rows
  int appended;      // Snew when k_new was appended before the attention, else 0
  int row_blocks;    // ceil(Snew * G / 16)

  // Score features (score.h, mask.h), window sides clamped below 2^30.
  float scale, softcap, tanh_scale;  // tanh_scale = scale / softcap
  float scale_log2;                  // the softmax's exp2 multiplier
  bool score_mods;                   // scores in units (scale applied) before the softmax
  int window_left, window_right;
  const float* alibi_slopes;
  int64_t alibi_stride_b;
  const float* sinks;

  // Rotary of q (the cache already holds rotated k_new).
  const float* rotary_cos;
  const float* rotary_sin;
  int64_t rotary_cos_stride, rotary_sin_stride;
  int rotary_dim, rotary_rows;
  bool rotary_interleaved;

  // 16-byte loads (cp.async) are possible for q / the caches.
  bool q_vec, cache_vec;

  // Split-KV: chunks of chunk_tiles tiles, at most max_chunks per row block; parts at
  //   part_out + (((c * B + b) * Hq + h) * Snew + i) * head_dim, part_lse likewise.
  int chunk_tiles, max_chunks;
  float* part_out;
  float* part_lse;
};

// L_b clamped so that L_b + appended <= max_seqlen_k (appending wrote rows L_b.. of the
// clamped length too), and the keys a sequence attends over.
FA_HOST_DEVICE int cache_length(const DecodeParams& p, int b) {
  const int stored = p.cache_seqlens[b];
  const int limit = p.max_seqlen_k - p.appended;
  return stored < 0 ? 0 : (stored > limit ? limit : stored);
}

// Where key row j of sequence b sits in a cache (kvcache_params.h's addressing): dense, or
// paged with the page index clamped to [0, num_pages) (the caller may have promised wrong
// values; memory outside the cache is never touched). tile_page >= 0 is the page already
// looked up for a tile whose rows share one.
struct CacheRow {
  int64_t seq, row;
};
FA_HOST_DEVICE int cache_page(const DecodeParams& p, int b, int j) {
  const int page = p.block_table[int64_t(b) * p.block_table_stride + j / p.page_size];
  return page < 0 ? 0 : (page >= p.num_pages ? p.num_pages - 1 : page);
}
FA_HOST_DEVICE CacheRow cache_row(const DecodeParams& p, int b, int j, int tile_page = -1) {
  if (p.block_table == nullptr) return CacheRow{b, j};
  return CacheRow{tile_page >= 0 ? tile_page : cache_page(p, b, j), j % p.page_size};
}

// The rotary table rows of position t (clamped to the table, as lengths are).
FA_HOST_DEVICE const float* rotary_cos_row(const DecodeParams& p, int t) {
  return p.rotary_cos + int64_t(t < p.rotary_rows ? t : p.rotary_rows - 1) * p.rotary_cos_stride;
}
FA_HOST_DEVICE const float* rotary_sin_row(const DecodeParams& p, int t) {
  return p.rotary_sin + int64_t(t < p.rotary_rows ? t : p.rotary_rows - 1) * p.rotary_sin_stride;
}

// The visible-key rule of sequence b: Snew query rows over sk keys, bottom-right aligned.
FA_HOST_DEVICE BasicKeyRange<int> decode_key_range(const DecodeParams& p, int sk) {
  BasicKeyRange<int> range;
  range.window.left = p.window_left;
  range.window.right = p.window_right;
  range.seqlen_q = p.seqlen_new;
  range.seqlen_k = sk;
  return range;
}

// The query rows [begin, end) of row block rb (packed rows 16 rb .. 16 rb + 15).
struct RowSpan {
  int begin, end;
};
FA_HOST_DEVICE RowSpan row_block_rows(const DecodeParams& p, int rb) {
  const int first = rb * kDecodeRows;
  int last = first + kDecodeRows - 1;
  const int packed = p.seqlen_new * p.group;
  last = last < packed ? last : packed - 1;
  return RowSpan{first / p.group, last / p.group + 1};
}

// Key tiles of row block rb of a sequence with sk keys, and their chunk count.
struct ChunkPlan {
  KeyBlocks tiles;
  int chunks;  // 0 when the row block sees no key
};
FA_HOST_DEVICE ChunkPlan chunk_plan(const DecodeParams& p, int sk, int rb) {
  const RowSpan rows = row_block_rows(p, rb);
  ChunkPlan plan;
  plan.tiles = key_blocks(decode_key_range(p, sk), rows.begin, rows.end, kDecodeTileKeys);
  const int tiles = plan.tiles.last - plan.tiles.first;
  plan.chunks = tiles <= 0 ? 0 : (tiles + p.chunk_tiles - 1) / p.chunk_tiles;
  if (plan.chunks > p.max_chunks) plan.chunks = p.max_chunks;  // only on broken promises
  return plan;
}

}  // namespace fa
