// kvcache.cpp: the CPU reference of fa_kvcache_forward and fa_merge.
// The KV-cache forward is fa_forward over each sequence's cache rows gathered densely:
//   1. append: k_new (rotated, rounded) and v_new into rows L_b .. L_b + Snew - 1;
//   2. per sequence, gather rows [0, Sk) of the cache into dense [Hkv, Sk, D] copies and
//      rotate (and round) q, then run forward.cpp's attend_row_block over them, per split
//      of the key blocks when num_splits > 1, merged by common/merge.h;
//   3. FA_FLAG_ADVANCE_SEQLENS: cache_seqlens[b] += Snew.
// Validation checked every length and page index (the CPU path is never trusted).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/backends.h"
#include "common/merge.h"
#include "common/rotary.h"
#include "cpu/attention_tiles.h"
#include "cpu/float_convert.h"
#include "cpu/thread_pool.h"

namespace fa {
namespace cpu {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// Row r of sequence b, kv head h of a cache (kvcache_params.h's addressing).
uint16_t* cache_row(const KvCacheParams& p, const CacheOperand& cache, int64_t b, int64_t h,
                    int64_t r) {
  int64_t seq = b, row = r;
  if (p.paged()) {
    seq = p.block_table[b * p.block_table_stride + r / p.page_size];
    row = r % p.page_size;
  }
  return static_cast<uint16_t*>(cache.ptr) + seq * cache.stride_seq + row * cache.stride_row +
         h * cache.stride_head;
}

uint16_t* operand_row(const Operand& operand, int64_t b, int64_t h, int64_t row) {
  return static_cast<uint16_t*>(operand.ptr) + b * operand.stride_b + h * operand.stride_head +
         row * operand.stride_row;
}

// A row of the input dtype rotated at `position` and rounded back to the dtype.
void rotate_rounded(const KvCacheParams& p, const uint16_t* source, int64_t position,
                    uint16_t* destination) {
  const int64_t depth = p.head_dim;
  float row[256];  // head_dim <= 256, checked by validation
  load_row(source, p.dtype, depth, row);
  rotate_row(row, int(p.rotary.dim), p.rotary.interleaved,
             p.rotary.cos + position * p.rotary.cos_stride,
             p.rotary.sin + position * p.rotary.sin_stride);
  store_row(row, p.dtype, depth, destination);
}

void append_sequence(const KvCacheParams& p, int64_t b) {
  const int64_t length = p.cache_seqlens[b];
  const size_t row_bytes = size_t(p.head_dim) * sizeof(uint16_t);
  for (int64_t h = 0; h < p.heads_kv; ++h) {
    for (int64_t i = 0; i < p.seqlen_new; ++i) {
      const uint16_t* k = operand_row(p.k_new, b, h, i);
      uint16_t* k_destination = cache_row(p, p.k_cache, b, h, length + i);
      if (p.rotary.cos != nullptr) {
        rotate_rounded(p, k, length + i, k_destination);
      } else {
        std::memcpy(k_destination, k, row_bytes);
      }
      std::memcpy(cache_row(p, p.v_cache, b, h, length + i), operand_row(p.v_new, b, h, i),
                  row_bytes);
    }
  }
}

// One sequence as a dense fa_forward problem: its cache rows and (rotated) q, gathered.
struct DenseSequence {
  std::vector<uint16_t> k, v, q;  // [Hkv, Sk, D], [Hkv, Sk, D], [Hq, Snew, D] (rotary only)
  AttentionParams params;
};

void gather_sequence(const KvCacheParams& p, int64_t b, DenseSequence* sequence) {
  const int64_t length = p.cache_seqlens[b];
  const int64_t keys = length + (p.appends() ? p.seqlen_new : 0);
  const int64_t depth = p.head_dim;
  const size_t row_bytes = size_t(depth) * sizeof(uint16_t);
  sequence->k.resize(size_t(p.heads_kv * keys * depth));
  sequence->v.resize(sequence->k.size());
  for (int64_t h = 0; h < p.heads_kv; ++h) {
    for (int64_t r = 0; r < keys; ++r) {
      const size_t offset = size_t((h * keys + r) * depth);
      std::memcpy(&sequence->k[offset], cache_row(p, p.k_cache, b, h, r), row_bytes);
      std::memcpy(&sequence->v[offset], cache_row(p, p.v_cache, b, h, r), row_bytes);
    }
  }
  AttentionParams& a = sequence->params;
  a.device = FA_DEVICE_CPU;
  a.dtype = p.dtype;
  a.batch = 1;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.head_dim = depth;
  a.seqlen_q = p.seqlen_new;
  a.seqlen_k = keys;
  a.k = Operand{sequence->k.data(), 0, keys * depth, depth};
  a.v = Operand{sequence->v.data(), 0, keys * depth, depth};
  if (p.rotary.cos != nullptr) {
    // q row i sits at position L_b + i; rotated and rounded like k_new, never written back.
    sequence->q.resize(size_t(p.heads_q * p.seqlen_new * depth));
    for (int64_t h = 0; h < p.heads_q; ++h) {
      for (int64_t i = 0; i < p.seqlen_new; ++i) {
        rotate_rounded(p, operand_row(p.q, b, h, i), length + i,
                       &sequence->q[size_t((h * p.seqlen_new + i) * depth)]);
      }
    }
    a.q = Operand{sequence->q.data(), 0, p.seqlen_new * depth, depth};
  } else {
    a.q = Operand{operand_row(p.q, b, 0, 0), 0, p.q.stride_head, p.q.stride_row};
  }
  a.scale = p.scale;
  a.window = p.window;
  a.softcap = p.softcap;
  if (p.alibi_slopes != nullptr) a.alibi_slopes = p.alibi_slopes + b * p.alibi_stride_b;
  a.sinks = p.sinks;
}

// The n parts of row block `block` of (b, h), merged with the sink as one more part.
void attend_split(const AttentionParams& a, int64_t h, int64_t block, int num_splits,
                  float sink, float* out, float* lse) {
  const int64_t depth = a.head_dim;
  std::vector<float> part_out(num_splits * kRowBlock * depth);
  std::vector<float> part_lse(num_splits * kRowBlock);
  int64_t rows = 0;
  for (int split = 0; split < num_splits; ++split) {
    rows = attend_row_block(a, 0, h, block, split, num_splits, kNegativeInfinity,
                            &part_out[size_t(split * kRowBlock * depth)],
                            &part_lse[size_t(split * kRowBlock)]);
  }
  for (int64_t r = 0; r < rows; ++r) {
    // Part num_splits is the sink: lse = sink, out = 0 (weight only, never read).
    const auto lse_at = [&](int part) {
      return part == num_splits ? sink : part_lse[size_t(part * kRowBlock + r)];
    };
    const MergeWeights weights = merge_weights(num_splits + 1, lse_at);
    float* row = out + r * depth;
    std::fill(row, row + depth, 0.0f);
    for (int split = 0; split < num_splits; ++split) {
      const float weight = weights.weight(lse_at(split));
      if (weight == 0.0f) continue;  // an empty part contributes nothing
      const float* part = &part_out[size_t((split * kRowBlock + r) * depth)];
      for (int64_t d = 0; d < depth; ++d) row[d] += weight * part[d];
    }
    lse[r] = weights.lse();
  }
}

void attend_head(const KvCacheParams& p, const DenseSequence& sequence, int64_t b, int64_t h) {
  const AttentionParams& a = sequence.params;
  const int64_t depth = p.head_dim;
  const float sink = p.sinks != nullptr ? p.sinks[h] : kNegativeInfinity;
  // 0 and 1 both mean unsplit on the CPU (the heuristic is the GPU's business).
  const int num_splits = std::max(1, int(p.num_splits));
  std::vector<float> out(kRowBlock * depth), lse(kRowBlock);
  for (int64_t block = 0; block * kRowBlock < p.seqlen_new; ++block) {
    if (num_splits == 1) {
      attend_row_block(a, 0, h, block, 0, 1, sink, out.data(), lse.data());
    } else {
      attend_split(a, h, block, num_splits, sink, out.data(), lse.data());
    }
    const int64_t rows = std::min(kRowBlock, p.seqlen_new - block * kRowBlock);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = block * kRowBlock + r;
      store_row(out.data() + r * depth, p.dtype, depth, operand_row(p.out, b, h, i));
      if (p.lse.ptr != nullptr) {
        p.lse.ptr[b * p.lse.stride_b + h * p.lse.stride_head + i * p.lse.stride_row] = lse[r];
      }
    }
  }
}

// Element (b, h, row, 0) of a merge operand, any of the three dtypes, as an element offset.
int64_t merge_offset(const Operand& operand, int64_t b, int64_t h, int64_t row) {
  return b * operand.stride_b + h * operand.stride_head + row * operand.stride_row;
}

}  // namespace
}  // namespace cpu

fa_status cpu_kvcache_forward(const KvCacheParams& params) {
  const KvCacheParams& p = params;
  // Sequences write disjoint cache rows (validation refused shared written rows).
  if (p.appends()) parallel_for(p.batch, [&](int64_t b) { cpu::append_sequence(p, b); });
  std::vector<cpu::DenseSequence> sequences(size_t(p.batch));
  parallel_for(p.batch, [&](int64_t b) { cpu::gather_sequence(p, b, &sequences[size_t(b)]); });
  parallel_for(p.batch * p.heads_q, [&](int64_t item) {
    const int64_t b = item / p.heads_q, h = item % p.heads_q;
    cpu::attend_head(p, sequences[size_t(b)], b, h);
  });
  if (p.advance_seqlens) {
    for (int64_t b = 0; b < p.batch; ++b) p.cache_seqlens[b] += int32_t(p.seqlen_new);
  }
  return FA_OK;
}

fa_status cpu_merge(const MergeParams& params) {
  const MergeParams& p = params;
  const int64_t depth = p.head_dim;
  parallel_for(p.batch * p.heads, [&](int64_t item) {
    const int64_t b = item / p.heads, h = item % p.heads;
    std::vector<float> part(depth), row(depth);
    for (int64_t i = 0; i < p.rows; ++i) {
      const auto lse_at = [&](int index) {
        const LseOperand& lse = p.parts[index].lse;
        return lse.ptr[b * lse.stride_b + h * lse.stride_head + i * lse.stride_row];
      };
      const MergeWeights weights = merge_weights(p.num_parts, lse_at);
      std::fill(row.begin(), row.end(), 0.0f);
      for (int index = 0; index < p.num_parts; ++index) {
        const float weight = weights.weight(lse_at(index));
        if (weight == 0.0f) continue;  // an empty part contributes nothing
        const MergeOperand& source = p.parts[index];
        load_any_row(source.out.ptr, source.out_dtype, cpu::merge_offset(source.out, b, h, i),
                     depth, part.data());
        for (int64_t d = 0; d < depth; ++d) row[d] += weight * part[d];
      }
      const MergeOperand& result = p.result;
      store_any_row(row.data(), result.out_dtype, depth, result.out.ptr,
                    cpu::merge_offset(result.out, b, h, i));
      if (result.lse.ptr != nullptr) {
        result.lse.ptr[b * result.lse.stride_b + h * result.lse.stride_head +
                       i * result.lse.stride_row] = weights.lse();
      }
    }
  });
  return FA_OK;
}

}  // namespace fa
