// decode_kernel.h: attention over a KV cache (decode, speculative rows, paged prefill) on
// mma.sync, for every GPU from sm80 on. Memory-bound: the cache is read once per row block.
//
// A block of 4 warps takes work items (chunk c, sequence b, kv head, row block rb) in turn
// (a persistent grid: items whose chunk is past the row block's keys cost a few
// instructions, not a block launch). For one item:
//   1. q's 16 packed rows (common/decode_params.h) go to shared memory (rotated when rotary
//      is on) while each warp starts its own cp.async ring of K/V tiles: warp w takes tiles
//      w, w + 4, ... of the chunk, so no block barrier sits in the key loop;
//   2. per tile: S = Q K^T, the score rule (score.h) and visibility (mask.h) per element,
//      the online softmax, O += P V;
//   3. the 4 warps' (max, sum, O) meet in shared memory and are merged by merge.h's rule;
//      a row block with one chunk writes out / lse (sink included), else chunk c writes
//      part c for the combine kernel (cuda/api/kvcache_kernels.cu).
#pragma once

#include <cmath>

#include "common/decode_params.h"
#include "common/merge.h"
#include "common/online_softmax.h"
#include "common/rotary.h"
#include "common/score.h"
#include "sm80/warp_gemm.h"

namespace fa {
namespace sm80 {

template <typename T_, int D>
struct DecodeConfig {
  using T = T_;
  static constexpr int kHeadDim = D;  // bucket: 64, 128 or 256
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStages = 3;
  // Q A-fragments stay in registers up to head dim 128; at 256 they would not fit beside
  // the O accumulators, and are read from shared memory each tile instead.
  static constexpr bool kQInRegisters = D <= 128;
  using Tile = SmemTile<kDecodeRows, D>;  // 16 rows (packed q rows, or keys) x D
  static constexpr int kTileBytes = Tile::kBytes;
  static constexpr int kRingBytes = kWarps * kStages * 2 * kTileBytes;  // K and V per stage
  // Per warp: row max (log2 units) and row sum of 16 rows, then O as 16 x D floats.
  static constexpr int kMergeWarpBytes = 2 * kDecodeRows * 4 + kDecodeRows * D * 4;
  static constexpr int kMergeBytes = kWarps * kMergeWarpBytes;
  static constexpr int kSmemBytes =
      kTileBytes + (kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes);
};

// One warp copies keys [key0, key0 + 16) of kv head `head` into its K and V tiles; rows at
// or past `keys`, and columns past the head dim, are zero-filled (so 0-weight rows of V
// are 0, never stale NaN).
template <class Cfg>
__device__ __forceinline__ void load_kv_tile(const DecodeParams& p, int b, int head, int key0,
                                             int keys, uint32_t k_dst, uint32_t v_dst,
                                             int lane, int tile_page) {
  using T = typename Cfg::T;
  using Tile = typename Cfg::Tile;
  constexpr int kChunks = Cfg::kHeadDim / 8;
  constexpr int kLanesPerRow = kChunks < 32 ? kChunks : 32;
  constexpr int kRowsPerPass = 32 / kLanesPerRow;
  const T* k_base = static_cast<const T*>(p.k_cache);
  const T* v_base = static_cast<const T*>(p.v_cache);
  if (p.cache_vec) {
    const int chunk = lane % kLanesPerRow;
    const bool col_ok = chunk * 8 < p.head_dim;
#pragma unroll
    for (int pass = 0; pass < kDecodeRows / kRowsPerPass; ++pass) {
      const int row = pass * kRowsPerPass + lane / kLanesPerRow;
      const int j = key0 + row;
      const bool ok = col_ok && j < keys;
      const CacheRow at = cache_row(p, b, ok ? j : key0, tile_page);
      const T* k = k_base + at.seq * p.k_stride_seq + at.row * p.k_stride_row +
                   head * p.k_stride_head + chunk * 8;
      const T* v = v_base + at.seq * p.v_stride_seq + at.row * p.v_stride_row +
                   head * p.v_stride_head + chunk * 8;
      cp_async_16(k_dst + Tile::offset(row, chunk), ok ? k : k_base, ok);
      cp_async_16(v_dst + Tile::offset(row, chunk), ok ? v : v_base, ok);
    }
    return;
  }
  // Caches whose rows are not 16-byte aligned: element copies (slow, but any view works).
  for (int e = lane; e < kDecodeRows * Cfg::kHeadDim; e += 32) {
    const int row = e / Cfg::kHeadDim, d = e % Cfg::kHeadDim;
    const int j = key0 + row;
    T kx = T(0.0f), vx = T(0.0f);
    if (j < keys && d < p.head_dim) {
      const CacheRow at = cache_row(p, b, j);
      kx = k_base[at.seq * p.k_stride_seq + at.row * p.k_stride_row + head * p.k_stride_head + d];
      vx = v_base[at.seq * p.v_stride_seq + at.row * p.v_stride_row + head * p.v_stride_head + d];
    }
    const uint32_t offset = Tile::offset(row, d / 8) + uint32_t(d % 8) * 2;
    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(k_dst + offset),
                 "h"(*reinterpret_cast<unsigned short*>(&kx)));
    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(v_dst + offset),
                 "h"(*reinterpret_cast<unsigned short*>(&vx)));
  }
}

// The block's 16 packed q rows into a Tile: cp.async where aligned and not rotated, else
// element by element (rotary in float32, rounded to the dtype, as rotary.h says).
template <class Cfg>
__device__ __forceinline__ void load_q_tile(const DecodeParams& p, int b, int kv_head, int rb,
                                            int length, uint32_t q_dst, int tid) {
  using T = typename Cfg::T;
  using Tile = typename Cfg::Tile;
  constexpr int D = Cfg::kHeadDim;
  const T* q_base = static_cast<const T*>(p.q);
  const int packed = p.seqlen_new * p.group;
  const auto row_of = [&](int row, int& h, int& i) {
    const int r = rb * kDecodeRows + row;
    i = r / p.group;
    h = kv_head * p.group + r % p.group;
    return r < packed;
  };
  if (p.q_vec && p.rotary_cos == nullptr) {
    for (int c = tid; c < kDecodeRows * (D / 8); c += Cfg::kThreads) {
      const int row = c / (D / 8), chunk = c % (D / 8);
      int h, i;
      const bool ok = row_of(row, h, i) && chunk * 8 < p.head_dim;
      const T* src = ok ? q_base + b * p.q_stride_b + h * p.q_stride_h + i * p.q_stride_row +
                              chunk * 8
                        : q_base;
      cp_async_16(q_dst + Tile::offset(row, chunk), src, ok);
    }
    return;
  }
  for (int e = tid; e < kDecodeRows * D; e += Cfg::kThreads) {
    const int row = e / D, d = e % D;
    int h, i;
    float x = 0.0f;
    if (row_of(row, h, i) && d < p.head_dim) {
      const T* src = q_base + b * p.q_stride_b + h * p.q_stride_h + i * p.q_stride_row;
      const auto at = [&](int n) { return float(src[n]); };
      x = p.rotary_cos == nullptr
              ? at(d)
              : rotated_element(at, d, p.rotary_dim, p.rotary_interleaved,
                                rotary_cos_row(p, length + i), rotary_sin_row(p, length + i));
    }
    const T rounded = T(x);
    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(q_dst + Tile::offset(row, d / 8) +
                                                      uint32_t(d % 8) * 2),
                 "h"(*reinterpret_cast<const unsigned short*>(&rounded)));
  }
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    decode_kernel(const __grid_constant__ DecodeParams p, int num_items) {
  using T = typename Cfg::T;
  using Tile = typename Cfg::Tile;
  constexpr int D = Cfg::kHeadDim;
  constexpr int kStages = Cfg::kStages;
  constexpr int KSTEPS = D / 16;  // k16 steps of Q K^T
  constexpr int DS = D / 8;       // n8 tiles of O
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const uint32_t q_smem = smem_u32(smem);
  const uint32_t ring = q_smem + Cfg::kTileBytes;
  const uint32_t my_ring = ring + uint32_t(warp * kStages * 2 * Cfg::kTileBytes);
  float* merge = reinterpret_cast<float*>(smem + Cfg::kTileBytes);
  const int g = lane / 4, t = lane % 4;
  const int per_chunk = p.batch * p.heads_kv * p.row_blocks;

  for (int item = blockIdx.x; item < num_items; item += gridDim.x) {
    const int c = item / per_chunk;
    int rest = item % per_chunk;
    const int b = rest / (p.heads_kv * p.row_blocks);
    rest %= p.heads_kv * p.row_blocks;
    const int kv_head = rest / p.row_blocks, rb = rest % p.row_blocks;
    const int length = cache_length(p, b);
    const int keys = length + p.appended;
    const ChunkPlan plan = chunk_plan(p, keys, rb);
    if (c >= (plan.chunks > 1 ? plan.chunks : 1)) continue;  // uniform over the block
    const bool finishing = plan.chunks <= 1;
    int tile_begin = 0, tile_end = 0;
    if (plan.chunks > 0) {
      tile_begin = plan.tiles.first + c * p.chunk_tiles;
      tile_end = c == plan.chunks - 1 ? plan.tiles.last : tile_begin + p.chunk_tiles;
    }
    __syncthreads();  // the previous item is done with shared memory

    // 1. q, then each warp's first tiles.
    load_q_tile<Cfg>(p, b, kv_head, rb, length, q_smem, tid);
    cp_async_commit();
    const int my_tiles =
        tile_end - tile_begin > warp ? (tile_end - tile_begin - warp + 3) / 4 : 0;
    // Pages of a multiple of 16 rows hold whole tiles: one block-table entry per tile,
    // read a tile ahead so its latency stays off the copy's issue.
    const bool page_per_tile = p.block_table != nullptr && p.page_size % kDecodeTileKeys == 0;
    const auto tile_key = [&](int k) { return (tile_begin + warp + 4 * k) * kDecodeTileKeys; };
    int next_page = page_per_tile && my_tiles > 0 ? cache_page(p, b, tile_key(0)) : -1;
    const auto issue = [&](int k) {
      const uint32_t slot = my_ring + uint32_t((k % kStages) * 2 * Cfg::kTileBytes);
      const int page = next_page;
      if (page_per_tile && k + 1 < my_tiles) next_page = cache_page(p, b, tile_key(k + 1));
      load_kv_tile<Cfg>(p, b, kv_head, tile_key(k), keys, slot, slot + Cfg::kTileBytes, lane,
                        page);
    };
#pragma unroll
    for (int k = 0; k < kStages - 1; ++k) {
      if (k < my_tiles) issue(k);
      cp_async_commit();
    }
    cp_async_wait<kStages - 1>();  // this thread's q chunks
    __syncthreads();               // everyone's

    // This thread's two rows (g, g + 8): query row, head, key range, ALiBi slope.
    const BasicKeyRange<int> range = decode_key_range(p, keys);
    int key_begin[2], key_end[2], diagonal[2];
    float slope[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int packed_row = rb * kDecodeRows + g + 8 * r;
      int i = packed_row / p.group;
      i = i < p.seqlen_new ? i : p.seqlen_new - 1;
      const int h = kv_head * p.group + packed_row % p.group;
      key_begin[r] = range.key_begin(i);
      key_end[r] = range.key_end(i);
      diagonal[r] = range.diagonal(i);
      slope[r] = p.alibi_slopes != nullptr && h < p.heads_q
                     ? p.alibi_slopes[b * p.alibi_stride_b + h]
                     : 0.0f;
    }

    const uint32_t q_lane = Tile::lane_rows16(q_smem, lane);
    uint32_t q_frag[Cfg::kQInRegisters ? KSTEPS : 1][4];
    if constexpr (Cfg::kQInRegisters) {
#pragma unroll
      for (int kk = 0; kk < KSTEPS; ++kk) ldsm_x4(q_frag[kk], Tile::at(q_lane, 0, kk));
    }

    // 2. The warp's tiles.
    float o[1][DS][4];
    zero(o);
    OnlineSoftmax<1> softmax;
    for (int k = 0; k < my_tiles; ++k) {
      cp_async_wait<kStages - 2>();
      __syncwarp();
      const uint32_t k_tile = my_ring + uint32_t((k % kStages) * 2 * Cfg::kTileBytes);
      const uint32_t v_tile = k_tile + Cfg::kTileBytes;
      float s[1][2][4];
      zero(s);
      const uint32_t k_lane = Tile::lane_cols16(k_tile, lane);
#pragma unroll
      for (int kk = 0; kk < KSTEPS; ++kk) {
        uint32_t a[4];
        if constexpr (Cfg::kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a[e] = q_frag[kk][e];
        } else {
          ldsm_x4(a, Tile::at(q_lane, 0, kk));
        }
        uint32_t bk[4];
        ldsm_x4(bk, Tile::at(k_lane, 0, kk));
        mma_16816<T>(s[0][0], a, bk[0], bk[1]);
        mma_16816<T>(s[0][1], a, bk[2], bk[3]);
      }
      const int key0 = (tile_begin + warp + 4 * k) * kDecodeTileKeys;
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1;
          const int j = key0 + n * 8 + 2 * t + (e & 1);
          float x = s[0][n][e];
          if (p.score_mods) {
            x = p.softcap > 0.0f ? capped_score(x, p.tanh_scale, p.softcap) : x * p.scale;
            if (p.alibi_slopes != nullptr) {
              const int distance = diagonal[r] - j;
              x -= slope[r] * float(distance < 0 ? -distance : distance);
            }
          }
          s[0][n][e] = j >= key_begin[r] && j < key_end[r] ? x : -INFINITY;
        }
      softmax.update(s, o, p.scale_log2, k == 0);
      gemm_rs<T, 1, DS, 1, Tile, BOperand::kKMajor>(o, s, Tile::lane_rows16(v_tile, lane));
      __syncwarp();
      if (k + kStages - 1 < my_tiles) issue(k + kStages - 1);
      cp_async_commit();
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with its ring: reuse it for the merge

    // 3. The warps' partial rows into shared memory ...
    float* mine = merge + warp * (Cfg::kMergeWarpBytes / 4);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(softmax.row_sum[0][r]);
      if (t == 0) {
        const float m = softmax.row_max[0][r];
        mine[g + 8 * r] = m == -INFINITY ? -INFINITY : m * p.scale_log2;
        mine[kDecodeRows + g + 8 * r] = sum;
      }
    }
    float* o_rows = mine + 2 * kDecodeRows;
#pragma unroll
    for (int n = 0; n < DS; ++n)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        *reinterpret_cast<float2*>(&o_rows[(g + 8 * r) * D + n * 8 + 2 * t]) =
            make_float2(o[0][n][2 * r], o[0][n][2 * r + 1]);
      }
    __syncthreads();

    // ... merged: 8 threads per row, pairs of dims.
    const int row = tid / 8;
    const int packed_row = rb * kDecodeRows + row;
    if (packed_row < p.seqlen_new * p.group) {
      const int i = packed_row / p.group;
      const int h = kv_head * p.group + packed_row % p.group;
      float top = -INFINITY;
#pragma unroll
      for (int w = 0; w < Cfg::kWarps; ++w) {
        top = fmaxf(top, merge[w * (Cfg::kMergeWarpBytes / 4) + row]);
      }
      const float top0 = top == -INFINITY ? 0.0f : top;
      float weight[Cfg::kWarps], total = 0.0f;
#pragma unroll
      for (int w = 0; w < Cfg::kWarps; ++w) {
        const float* part = merge + w * (Cfg::kMergeWarpBytes / 4);
        weight[w] = ex2(part[row] - top0);  // 0 for a warp that saw nothing
        total = fmaf(weight[w], part[kDecodeRows + row], total);
      }
      // A row that saw nothing has total 0; a NaN score made it NaN (never "empty").
      const bool empty = total == 0.0f;
      float lse = empty ? -INFINITY : (top0 + log2f(total)) * 0.69314718055994531f;
      float factor = empty ? 0.0f : 1.0f / total;
      if (finishing && p.sinks != nullptr) {
        // The sink as one more part (out 0, lse = sink): merge.h's rule.
        const float parts[2] = {lse, p.sinks[h]};
        const MergeWeights sink_weights = merge_weights(2, [&](int x) { return parts[x]; });
        factor *= sink_weights.weight(lse);
        lse = sink_weights.lse();
      }
      // The row's dims d, d + 1, merged over the warps and normalized.
      const auto merged = [&](int d) {
        float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll
        for (int w = 0; w < Cfg::kWarps; ++w) {
          const float* part = merge + w * (Cfg::kMergeWarpBytes / 4) + 2 * kDecodeRows;
          acc0 = fmaf(weight[w], part[row * D + d], acc0);
          acc1 = fmaf(weight[w], part[row * D + d + 1], acc1);
        }
        return make_float2(acc0 * factor, acc1 * factor);
      };
      if (finishing) {
        T* out = static_cast<T*>(p.out) + b * p.out_stride_b + h * p.out_stride_h +
                 i * p.out_stride_row;
        for (int d = 2 * (tid % 8); d < p.head_dim; d += 16) {
          const float2 x = merged(d);
          out[d] = T(x.x);
          out[d + 1] = T(x.y);
        }
        if (p.lse != nullptr && tid % 8 == 0) {
          p.lse[b * p.lse_stride_b + h * p.lse_stride_h + i * p.lse_stride_row] = lse;
        }
      } else {
        const int64_t part_row = (int64_t(c) * p.batch + b) * p.heads_q * p.seqlen_new +
                                 int64_t(h) * p.seqlen_new + i;
        if (!empty) {  // an empty part's out is never read (merge.h)
          float* out = p.part_out + part_row * p.head_dim;
          for (int d = 2 * (tid % 8); d < p.head_dim; d += 16) {
            *reinterpret_cast<float2*>(out + d) = merged(d);
          }
        }
        if (tid % 8 == 0) p.part_lse[part_row] = lse;
      }
    }
  }
}

}  // namespace sm80
}  // namespace fa
