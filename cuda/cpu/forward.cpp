// forward.cpp: the CPU reference forward. One work item = one row block of one (batch, head);
// it streams over key blocks with an online softmax (running max and sum per row), exactly
// the GPU kernels' algorithm, in float32. attend_row_block is shared with the KV-cache
// forward (kvcache.cpp), which also runs it on one split of the keys.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/backends.h"
#include "common/mask.h"
#include "cpu/attention_tiles.h"
#include "cpu/float_convert.h"
#include "cpu/thread_pool.h"

namespace fa {
namespace cpu {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// acc[r][D] += sum_c weights[r][c] * v[c][D] over the tile's cols keys. Zero weights
// contribute nothing, even where v is not finite (then the rows are summed one by one,
// skipping them).
void accumulate_tile_values(const float* weights, int64_t rows, int64_t cols, const float* v,
                            int64_t depth, float* acc) {
  if (all_finite(v, cols * depth)) {
    matmul(rows, depth, cols, MatrixA{weights, kColBlock, 1}, v, depth, acc, depth, true);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    accumulate_weighted_rows(weights + r * kColBlock, 1, cols, v, depth, acc + r * depth);
  }
}

}  // namespace

int64_t attend_row_block(const AttentionParams& params, int64_t b, int64_t h, int64_t block,
                         int split, int num_splits, float sink, float* out, float* lse) {
  const SequenceSpan span = sequence_span(params, b);
  const int64_t i0 = block * kRowBlock;
  if (i0 >= span.q_len) return 0;
  const int64_t rows = std::min(kRowBlock, span.q_len - i0);
  const int64_t depth = params.head_dim;
  const int64_t kv_head = h / (params.heads_q / params.heads_kv);
  const bool dropout = params.dropout_p > 0.0f;

  std::vector<float> q(rows * depth), kt(depth * kColBlock), v(kColBlock * depth);
  std::vector<float> acc(rows * depth, 0.0f), scores(rows * kColBlock), factors;
  std::vector<float> row_max(rows, kNegativeInfinity), row_sum(rows, 0.0f);
  // Rows whose every visible score of some block was NaN: the maximum (like fmaxf) skips
  // NaN, so such a block looks empty; the row's result must still be NaN (DESIGN.md).
  std::vector<char> row_nan(rows, 0);
  if (dropout) factors.resize(rows * kColBlock);
  load_rows(params, params.q, b, h, span.q_start + i0, rows, q.data());

  // Key blocks no row of the block sees are skipped (common/mask.h).
  // Split-KV: this part's share of them, as the GPU kernels split.
  const KeyBlocks blocks = key_blocks(params.key_range(span.q_len, span.k_len), i0, i0 + rows,
                                      int(kColBlock), split, num_splits);
  // weights[r][c]: the tile's probabilities (times the dropout factors), 0 for rows that
  // saw nothing yet; acc += weights . v as one product over the tile.
  std::vector<float> weights(rows * kColBlock);
  for (int64_t j0 = blocks.first * kColBlock; j0 < blocks.last * kColBlock; j0 += kColBlock) {
    const Tile tile{b, h, i0, rows, j0, std::min(kColBlock, span.k_len - j0)};
    load_rows_transposed(params, params.k, b, kv_head, span.k_start + j0, tile.cols, kt.data());
    load_rows(params, params.v, b, kv_head, span.k_start + j0, tile.cols, v.data());
    compute_scores(params, span, tile, q.data(), kt.data(), scores.data());
    if (dropout) dropout_factors(params, tile, factors.data());

    for (int64_t r = 0; r < rows; ++r) {
      const float* s = scores.data() + r * kColBlock;
      float* weight_row = weights.data() + r * kColBlock;
      const float new_max = std::max(row_max[r], max_ignoring_nan(s, kColBlock));
      if (new_max == kNegativeInfinity) {  // nothing visible to this row yet, or only NaN
        for (int64_t c = 0; c < kColBlock; ++c) row_nan[r] |= std::isnan(s[c]) ? 1 : 0;
        std::fill(weight_row, weight_row + kColBlock, 0.0f);
        continue;
      }
      // Rescale what was accumulated under the old maximum (exp(-inf) = 0 the first time).
      const float correction = std::exp(row_max[r] - new_max);
      float* acc_row = acc.data() + r * depth;
      if (correction != 1.0f) {
        for (int64_t d = 0; d < depth; ++d) acc_row[d] *= correction;
      }
      // The normalizer uses the probabilities before dropout.
      const float block_sum = exp_weights(s, kColBlock, new_max,
                                          dropout ? factors.data() + r * kColBlock : nullptr,
                                          weight_row);
      row_sum[r] = row_sum[r] * correction + block_sum;
      row_max[r] = new_max;
    }
    accumulate_tile_values(weights.data(), rows, tile.cols, v.data(), depth, acc.data());
  }

  // The head's sink joins the normalizer only now, after the keys: folding it in here
  // keeps the running maximum of the loop above a maximum over scores, and the final
  // max(row_max, sink) keeps every exponent <= 0 whichever of the two is larger.
  for (int64_t r = 0; r < rows; ++r) {
    float inverse = 0.0f, row_lse = kNegativeInfinity;
    if (sink != kNegativeInfinity) {
      // With a sink: a row that saw no key (row_max -inf, row_sum 0) gets out 0, lse = sink.
      const float top = std::max(row_max[r], sink);
      const float keys_scale = std::exp(row_max[r] - top);  // 0 when row_max is -inf
      const float total = row_sum[r] * keys_scale + std::exp(sink - top);
      inverse = keys_scale / total;
      row_lse = top + std::log(total);
    } else if (row_sum[r] != 0.0f) {
      inverse = 1.0f / row_sum[r];
      row_lse = row_max[r] + std::log(row_sum[r]);
    }
    if (row_nan[r]) inverse = row_lse = std::numeric_limits<float>::quiet_NaN();
    // A row that saw no key and has no sink keeps row_sum 0: output 0, lse -inf, never NaN.
    for (int64_t d = 0; d < depth; ++d) out[r * depth + d] = acc[r * depth + d] * inverse;
    lse[r] = row_lse;
  }
  return rows;
}

namespace {

void forward_row_block(const AttentionParams& params, int64_t b, int64_t h, int64_t block) {
  const SequenceSpan span = sequence_span(params, b);
  const int64_t depth = params.head_dim;
  std::vector<float> out(kRowBlock * depth), lse(kRowBlock);
  const float sink = params.sinks != nullptr ? params.sinks[h] : kNegativeInfinity;
  const int64_t rows = attend_row_block(params, b, h, block, 0, 1, sink, out.data(), lse.data());
  const int64_t i0 = block * kRowBlock;
  for (int64_t r = 0; r < rows; ++r) {
    store_row(out.data() + r * depth, params.dtype, depth,
              row_pointer(params.out, b, h, span.q_start + i0 + r));
    if (params.lse.ptr != nullptr) *lse_pointer(params.lse, b, h, span.q_start + i0 + r) = lse[r];
  }
}

}  // namespace
}  // namespace cpu

fa_status cpu_forward(const AttentionParams& params) {
  const int64_t row_blocks = cpu::ceil_div(params.seqlen_q, cpu::kRowBlock);
  const int64_t items = params.batch * params.heads_q * row_blocks;
  parallel_for(items, [&](int64_t item) {
    // Last row blocks first: under a causal mask they see the most keys, so starting them
    // early shortens the tail.
    const int64_t block = row_blocks - 1 - item % row_blocks;
    const int64_t bh = item / row_blocks;
    cpu::forward_row_block(params, bh / params.heads_q, bh % params.heads_q, block);
  });
  return FA_OK;
}

}  // namespace fa
