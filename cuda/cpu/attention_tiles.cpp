// attention_tiles.cpp: tile loading, scoring and masking shared by the CPU passes.
#include "cpu/attention_tiles.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/mask.h"
#include "common/philox.h"
#include "common/score.h"
#include "cpu/float_convert.h"
#include "cpu/kernels.h"

namespace fa {
namespace cpu {

void load_rows(const AttentionParams& params, const Operand& operand, int64_t b, int64_t h,
               int64_t first_row, int64_t rows, float* dst) {
  const int64_t depth = params.head_dim;
  for (int64_t r = 0; r < rows; ++r) {
    load_row(row_pointer(operand, b, h, first_row + r), params.dtype, depth, dst + r * depth);
  }
}

void load_rows_transposed(const AttentionParams& params, const Operand& operand, int64_t b,
                          int64_t h, int64_t first_row, int64_t cols, float* dst) {
  const int64_t depth = params.head_dim;
  constexpr int64_t kChunk = 8;   // rows converted, then transposed, at a time
  float chunk[kChunk * 256];      // head_dim <= 256, checked by validation
  for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
    const int64_t n = std::min(kChunk, cols - c0);
    load_rows(params, operand, b, h, first_row + c0, n, chunk);
    transpose(chunk, n, depth, dst + c0, kColBlock);
  }
  for (int64_t d = 0; d < depth; ++d) std::fill(dst + d * kColBlock + cols, dst + (d + 1) * kColBlock, 0.0f);
}

void accumulate_weighted_rows(const float* weights, int64_t weight_stride, int64_t n,
                              const float* rows, int64_t depth, float* acc) {
  for (int64_t k = 0; k < n; ++k) {
    const float weight = weights[k * weight_stride];
    if (weight == 0.0f) continue;  // masked or dropped: common under causal masks
    const float* row = rows + k * depth;
    for (int64_t d = 0; d < depth; ++d) acc[d] += weight * row[d];
  }
}

void compute_scores(const AttentionParams& params, const SequenceSpan& span, const Tile& tile,
                    const float* q_block, const float* kt_block, float* scores,
                    float* softcap_grad) {
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  // scores = scale * q . k, the scale applied to each finished sum.
  matmul(tile.rows, kColBlock, params.head_dim, MatrixA{q_block, params.head_dim, 1}, kt_block,
         kColBlock, scores, kColBlock, false, params.scale);
  float bias_row[kColBlock];
  const float softcap = params.softcap;
  // ALiBi: one slope per (sequence, head) for the whole tile.
  const float slope = params.alibi_slopes != nullptr
                          ? params.alibi_slopes[tile.b * params.alibi_stride_b + tile.h]
                          : 0.0f;
  for (int64_t r = 0; r < tile.rows; ++r) {
    float* row = scores + r * kColBlock;
    const int64_t i = tile.i0 + r;
    // Each feature is its own branch-free loop over the row (they vectorize), taken per row.
    if (softcap > 0.0f) {
      for (int64_t c = 0; c < kColBlock; ++c) row[c] = apply_softcap(row[c], softcap);
      if (softcap_grad != nullptr) {
        float* grad = softcap_grad + r * kColBlock;
        for (int64_t c = 0; c < kColBlock; ++c) grad[c] = softcap_derivative(row[c], softcap);
      }
    }
    if (params.bias.ptr != nullptr) {
      load_any_row(params.bias.ptr, params.bias.dtype,
                   bias_offset(params.bias, tile.b, tile.h, i, tile.j0), tile.cols, bias_row);
      for (int64_t c = 0; c < tile.cols; ++c) row[c] += bias_row[c];
    }
    if (params.alibi_slopes != nullptr) {
      for (int64_t c = 0; c < tile.cols; ++c) {
        row[c] += alibi_term(slope, i, tile.j0 + c, span.q_len, span.k_len);
      }
    }
    // Columns [visible_begin, visible_end) of the tile are visible (common/mask.h).
    const KeyRange range = params.key_range(span.q_len, span.k_len);
    const int64_t visible_begin = std::clamp<int64_t>(range.key_begin(i) - tile.j0, 0, tile.cols);
    const int64_t visible_end =
        std::clamp<int64_t>(range.key_end(i) - tile.j0, visible_begin, tile.cols);
    for (int64_t c = 0; c < visible_begin; ++c) row[c] = kMasked;
    for (int64_t c = visible_end; c < kColBlock; ++c) row[c] = kMasked;
  }
}

void dropout_factors(const AttentionParams& params, const Tile& tile, float* factors) {
  const uint32_t threshold = dropout_threshold(params.dropout_p);
  const float kept = 1.0f / (1.0f - params.dropout_p);
  const uint32_t batch_head = uint32_t(tile.b * params.heads_q + tile.h);
  for (int64_t r = 0; r < tile.rows; ++r) {
    const uint32_t row = uint32_t(tile.i0 + r);
    float* out = factors + r * kColBlock;
    for (int64_t group = 0; group < kColBlock / 8; ++group) {
      const uint32_t column_group = uint32_t(tile.j0 / 8 + group);
      const Philox4 draws = dropout_draws(params.seed, params.offset, batch_head, row, column_group);
      for (int t = 0; t < 8; ++t) {
        out[group * 8 + t] = dropout_draw(draws, t) >= threshold ? kept : 0.0f;
      }
    }
  }
}

}  // namespace cpu
}  // namespace fa
