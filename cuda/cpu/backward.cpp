// backward.cpp: the CPU reference backward, deterministic whatever the thread count.
//   pass 0, per (b, q head, row block):  delta_i = rowsum(dO_i * O_i)
//   pass 1, per (b, kv head, key block): dK, dV, looping over the group's query heads and
//           every row block in a fixed order (P recomputed from lse)
//   pass 2, per (b, q head, row block):  dQ, and dS for dbias
//   dsinks, per q head, serially after pass 0: a fixed-order sum over (b, i)
// Every item writes its own part of the outputs, so no sum depends on scheduling.
// dbias dims with stride 0 are reduced: such dims are looped over inside one pass-2 item,
// and a reduced row dim is summed per item into a partial, then over partials in order.
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

// delta = rowsum(dO * O) for every query row and head (packed rows x heads).
struct Deltas {
  std::vector<float> values;
  int64_t index(const AttentionParams& params, const SequenceSpan& span, int64_t b, int64_t h,
                int64_t i) const {
    const int64_t row = params.nested() ? span.q_start + i : b * params.seqlen_q + i;
    return row * params.heads_q + h;
  }
};

void compute_deltas(const AttentionParams& params, Deltas& deltas) {
  const int64_t rows_total =
      params.nested() ? params.cu_seqlens_q[params.batch] : params.batch * params.seqlen_q;
  deltas.values.assign(rows_total * params.heads_q, 0.0f);
  const int64_t row_blocks = ceil_div(params.seqlen_q, kRowBlock);
  const int64_t depth = params.head_dim;
  parallel_for(params.batch * params.heads_q * row_blocks, [&](int64_t item) {
    const int64_t block = item % row_blocks, bh = item / row_blocks;
    const int64_t b = bh / params.heads_q, h = bh % params.heads_q;
    const SequenceSpan span = sequence_span(params, b);
    std::vector<float> dout(depth), out(depth);
    for (int64_t i = block * kRowBlock; i < std::min(span.q_len, (block + 1) * kRowBlock); ++i) {
      load_row(row_pointer(params.dout, b, h, span.q_start + i), params.dtype, depth, dout.data());
      load_row(row_pointer(params.out, b, h, span.q_start + i), params.dtype, depth, out.data());
      float sum = 0.0f;
      for (int64_t d = 0; d < depth; ++d) sum += dout[d] * out[d];
      deltas.values[deltas.index(params, span, b, h, i)] = sum;
    }
  });
}

// Query-side inputs of one row block: Q, dO, lse and delta, as float32.
struct QueryBlock {
  std::vector<float> q, dout, lse, delta;
  bool q_finite = true, dout_finite = true;  // whether matmul may stand for the skipping sums

  void load(const AttentionParams& params, const Deltas& deltas, const SequenceSpan& span,
            int64_t b, int64_t h, int64_t i0, int64_t rows) {
    const int64_t depth = params.head_dim;
    q.resize(rows * depth);
    dout.resize(rows * depth);
    lse.resize(rows);
    delta.resize(rows);
    load_rows(params, params.q, b, h, span.q_start + i0, rows, q.data());
    load_rows(params, params.dout, b, h, span.q_start + i0, rows, dout.data());
    for (int64_t r = 0; r < rows; ++r) {
      lse[r] = *lse_pointer(params.lse, b, h, span.q_start + i0 + r);
      delta[r] = deltas.values[deltas.index(params, span, b, h, i0 + r)];
    }
    q_finite = all_finite(q.data(), rows * depth);
    dout_finite = all_finite(dout.data(), rows * depth);
  }
};

// dsinks[h] = -sum over (b, i) of exp(sink_h - lse_{b,h,i}) * delta_{b,h,i}: the sink's
// probability in row i times d(loss)/d(row's normalizer). Summed in (b, i) order, in double
// (one sum of up to B * Sq terms per head), so the result is independent of the threads.
void write_dsinks(const AttentionParams& params, const Deltas& deltas) {
  for (int64_t h = 0; h < params.heads_q; ++h) {
    const float sink = params.sinks[h];
    double sum = 0.0;
    if (sink != kNegativeInfinity) {  // a -inf sink takes no probability: gradient 0
      for (int64_t b = 0; b < params.batch; ++b) {
        const SequenceSpan span = sequence_span(params, b);
        for (int64_t i = 0; i < span.q_len; ++i) {
          const float lse = *lse_pointer(params.lse, b, h, span.q_start + i);
          // lse = -inf (a row that saw nothing, given without its sink): weight 0, as on
          // the GPU, not exp(+inf) * 0.
          if (lse == kNegativeInfinity) continue;
          const float delta = deltas.values[deltas.index(params, span, b, h, i)];
          sum += double(std::exp(sink - lse)) * double(delta);
        }
      }
    }
    params.dsinks[h] = float(0.0 - sum);  // +0, not -0, where nothing contributed
  }
}

// Recomputes one tile's probabilities and gradients:
//   p_dropped[r][c] = P * Z   (Z = keep / (1 - p), 1 without dropout)
//   ds_score[r][c]  = P * (dP * Z - delta),  dP = dO_r . v_c: the gradient of the score
//                     (what bias is added to; dbias sums it)
//   ds[r][c]        = ds_score * d(softcap)/d(scaled score): the gradient of scale * q.k
//                     (= ds_score without a softcap), for dq and dk
// kt and vt are the tile's keys and values transposed, [D][kColBlock].
struct TileScratch {
  std::vector<float> scores, dp, factors, softcap_grad;
};

void tile_gradients(const AttentionParams& params, const SequenceSpan& span, const Tile& tile,
                    const QueryBlock& query, const float* kt, const float* vt,
                    TileScratch& scratch, float* p_dropped, float* ds, float* ds_score) {
  const int64_t cells = tile.rows * kColBlock;
  scratch.scores.resize(cells);
  scratch.dp.resize(cells);
  const bool dropout = params.dropout_p > 0.0f;
  if (dropout) {
    scratch.factors.resize(cells);
    dropout_factors(params, tile, scratch.factors.data());
  }
  const bool softcap = params.softcap > 0.0f;
  if (softcap) scratch.softcap_grad.resize(cells);
  compute_scores(params, span, tile, query.q.data(), kt, scratch.scores.data(),
                 softcap ? scratch.softcap_grad.data() : nullptr);
  matmul(tile.rows, kColBlock, params.head_dim, MatrixA{query.dout.data(), params.head_dim, 1},
         vt, kColBlock, scratch.dp.data(), kColBlock, false);
  for (int64_t r = 0; r < tile.rows; ++r) {
    const int64_t row = r * kColBlock;
    probability_gradients(scratch.scores.data() + row, scratch.dp.data() + row,
                          dropout ? scratch.factors.data() + row : nullptr, kColBlock,
                          query.lse[r], query.delta[r],
                          p_dropped != nullptr ? p_dropped + row : nullptr, ds + row);
  }
  if (ds_score != nullptr) std::copy(ds, ds + cells, ds_score);
  if (softcap) {
    // Masked cells have ds 0 already; the derivative is finite wherever the score was.
    for (int64_t cell = 0; cell < cells; ++cell) ds[cell] *= scratch.softcap_grad[cell];
  }
}

// acc[c][D] += sum_r weights[r][c] * rows[r][D] for c < cols, r < n (a tile's weights
// transposed, kColBlock per row). Zero weights contribute nothing even where rows are not
// finite (then summed one by one, skipping them).
void accumulate_transposed(const float* weights, int64_t n, int64_t cols, const float* rows,
                           bool rows_finite, int64_t depth, float* acc) {
  if (rows_finite) {
    matmul(cols, depth, n, MatrixA{weights, 1, kColBlock}, rows, depth, acc, depth, true);
    return;
  }
  for (int64_t c = 0; c < cols; ++c) {
    accumulate_weighted_rows(weights + c, kColBlock, n, rows, depth, acc + c * depth);
  }
}

// Pass 1: dK and dV of key block `block` of kv head kv_head.
void key_block_gradients(const AttentionParams& params, const Deltas& deltas, int64_t b,
                         int64_t kv_head, int64_t block) {
  const SequenceSpan span = sequence_span(params, b);
  const int64_t j0 = block * kColBlock;
  if (j0 >= span.k_len) return;
  const int64_t cols = std::min(kColBlock, span.k_len - j0);
  const int64_t depth = params.head_dim;
  const int64_t group = params.heads_q / params.heads_kv;

  std::vector<float> kt(depth * kColBlock), vt(depth * kColBlock);
  std::vector<float> dk(cols * depth, 0.0f), dv(cols * depth, 0.0f);
  std::vector<float> p_dropped(kRowBlock * kColBlock), ds(kRowBlock * kColBlock);
  load_rows_transposed(params, params.k, b, kv_head, span.k_start + j0, cols, kt.data());
  load_rows_transposed(params, params.v, b, kv_head, span.k_start + j0, cols, vt.data());
  QueryBlock query;
  TileScratch scratch;

  // Only row blocks that see one of these keys (common/mask.h).
  const QueryBlocks blocks = query_blocks(params.key_range(span.q_len, span.k_len), j0,
                                          int(kColBlock), int(kRowBlock));
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = blocks.first * kRowBlock; i0 < std::min<int64_t>(span.q_len, blocks.last * kRowBlock); i0 += kRowBlock) {
      const Tile tile{b, h, i0, std::min(kRowBlock, span.q_len - i0), j0, cols};
      query.load(params, deltas, span, b, h, i0, tile.rows);
      tile_gradients(params, span, tile, query, kt.data(), vt.data(), scratch, p_dropped.data(),
                     ds.data(), nullptr);
      accumulate_transposed(p_dropped.data(), tile.rows, cols, query.dout.data(),
                            query.dout_finite, depth, dv.data());
      accumulate_transposed(ds.data(), tile.rows, cols, query.q.data(), query.q_finite, depth,
                            dk.data());
    }
  }
  for (float& value : dk) value *= params.scale;
  for (int64_t c = 0; c < cols; ++c) {
    store_row(dk.data() + c * depth, params.dtype, depth,
              row_pointer(params.dk, b, kv_head, span.k_start + j0 + c));
    store_row(dv.data() + c * depth, params.dtype, depth,
              row_pointer(params.dv, b, kv_head, span.k_start + j0 + c));
  }
}

// How pass 2 covers dbias: which dims are summed over, and the per-item accumulator.
struct DbiasPlan {
  bool wanted = false;
  bool reduce_b = false, reduce_h = false, reduce_rows = false;
  int64_t batches = 1, heads = 1;      // items per dim: 1 where reduced
  int64_t width = 0;                   // columns of a dbias row: the (max) key length
  std::vector<float> row_partials;     // reduce_rows: one row per item, summed afterwards

  explicit DbiasPlan(const AttentionParams& params) {
    // The api layer passes no dbias when it has no elements; checked again here, since
    // a reduced row dim would otherwise write a summed row that does not exist.
    wanted = params.dbias.ptr != nullptr && params.seqlen_q > 0 && params.seqlen_k > 0;
    reduce_b = wanted && params.dbias.stride_b == 0;
    reduce_h = wanted && params.dbias.stride_head == 0;
    reduce_rows = wanted && params.dbias.stride_row == 0;
    batches = reduce_b ? 1 : params.batch;
    heads = reduce_h ? 1 : params.heads_q;
    width = params.seqlen_k;
  }
};

// Pass 2 item: dQ of row block `block` for every (b, h) the item covers, and their dS summed
// into dbias rows. Without dbias (or with nothing reduced) an item is a single (b, h).
// With the row dim reduced, the item's summed row goes to row_partials slot partial_slot.
void query_block_gradients(const AttentionParams& params, const Deltas& deltas,
                           DbiasPlan& plan, int64_t item_b, int64_t item_h, int64_t block,
                           int64_t partial_slot) {
  const int64_t depth = params.head_dim;
  const int64_t i0 = block * kRowBlock;
  const int64_t group = params.heads_q / params.heads_kv;
  // dbias rows of this item (1 when the row dim is reduced), all key columns.
  const int64_t dbias_rows =
      plan.reduce_rows ? 1 : std::max<int64_t>(0, std::min(kRowBlock, params.seqlen_q - i0));
  std::vector<float> dbias_acc(plan.wanted ? dbias_rows * plan.width : 0, 0.0f);

  std::vector<float> kt(depth * kColBlock), vt(depth * kColBlock), k(kColBlock * depth);
  std::vector<float> ds(kRowBlock * kColBlock), dq;
  // dbias sums the gradient of the score itself, before the softcap's chain rule.
  std::vector<float> ds_score(plan.wanted ? kRowBlock * kColBlock : 0);
  QueryBlock query;
  TileScratch scratch;
  for (int64_t b = item_b; b < (plan.reduce_b ? params.batch : item_b + 1); ++b) {
    const SequenceSpan span = sequence_span(params, b);
    if (i0 >= span.q_len) continue;
    const int64_t rows = std::min(kRowBlock, span.q_len - i0);
    const KeyBlocks blocks =
        key_blocks(params.key_range(span.q_len, span.k_len), i0, i0 + rows, int(kColBlock));
    for (int64_t h = item_h; h < (plan.reduce_h ? params.heads_q : item_h + 1); ++h) {
      const int64_t kv_head = h / group;
      query.load(params, deltas, span, b, h, i0, rows);
      dq.assign(rows * depth, 0.0f);
      for (int64_t j0 = blocks.first * kColBlock; j0 < blocks.last * kColBlock;
           j0 += kColBlock) {
        const Tile tile{b, h, i0, rows, j0, std::min(kColBlock, span.k_len - j0)};
        load_rows_transposed(params, params.k, b, kv_head, span.k_start + j0, tile.cols,
                             kt.data());
        load_rows_transposed(params, params.v, b, kv_head, span.k_start + j0, tile.cols,
                             vt.data());
        load_rows(params, params.k, b, kv_head, span.k_start + j0, tile.cols, k.data());
        tile_gradients(params, span, tile, query, kt.data(), vt.data(), scratch, nullptr,
                       ds.data(), plan.wanted ? ds_score.data() : nullptr);
        // dq += ds . k; a skipping sum per row where k is not finite (0 * inf is NaN).
        const bool k_finite = all_finite(k.data(), tile.cols * depth);
        if (k_finite) {
          matmul(rows, depth, tile.cols, MatrixA{ds.data(), kColBlock, 1}, k.data(), depth,
                 dq.data(), depth, true);
        }
        for (int64_t r = 0; r < rows; ++r) {
          if (!k_finite) {
            accumulate_weighted_rows(ds.data() + r * kColBlock, 1, tile.cols, k.data(), depth,
                                     dq.data() + r * depth);
          }
          if (plan.wanted) {
            float* acc = dbias_acc.data() + (plan.reduce_rows ? 0 : r) * plan.width + j0;
            for (int64_t c = 0; c < tile.cols; ++c) acc[c] += ds_score[r * kColBlock + c];
          }
        }
      }
      for (float& value : dq) value *= params.scale;
      for (int64_t r = 0; r < rows; ++r) {
        store_row(dq.data() + r * depth, params.dtype, depth,
                  row_pointer(params.dq, b, h, span.q_start + i0 + r));
      }
    }
  }
  if (!plan.wanted) return;
  if (plan.reduce_rows) {
    std::copy(dbias_acc.begin(), dbias_acc.end(),
              plan.row_partials.begin() + partial_slot * plan.width);
    return;
  }
  // Every dbias row of the block is written, zero where no sequence reached it.
  for (int64_t r = 0; r < dbias_rows; ++r) {
    store_any_row(dbias_acc.data() + r * plan.width, params.dbias.dtype, plan.width,
                  params.dbias.ptr, bias_offset(params.dbias, item_b, item_h, i0 + r, 0));
  }
}

// reduce_rows: dbias row (b, h) = sum over row blocks of the items' partial rows, in order.
void write_reduced_dbias_rows(const AttentionParams& params, const DbiasPlan& plan,
                              int64_t row_blocks) {
  std::vector<float> sum(plan.width);
  for (int64_t bh = 0; bh < plan.batches * plan.heads; ++bh) {
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int64_t block = 0; block < row_blocks; ++block) {
      const float* partial = plan.row_partials.data() + (bh * row_blocks + block) * plan.width;
      for (int64_t j = 0; j < plan.width; ++j) sum[j] += partial[j];
    }
    store_any_row(sum.data(), params.dbias.dtype, plan.width, params.dbias.ptr,
                  bias_offset(params.dbias, bh / plan.heads, bh % plan.heads, 0, 0));
  }
}

}  // namespace
}  // namespace cpu

fa_status cpu_backward(const AttentionParams& params) {
  cpu::Deltas deltas;
  cpu::compute_deltas(params, deltas);
  if (params.dsinks != nullptr) cpu::write_dsinks(params, deltas);

  const int64_t key_blocks = cpu::ceil_div(params.seqlen_k, cpu::kColBlock);
  parallel_for(params.batch * params.heads_kv * key_blocks, [&](int64_t item) {
    const int64_t block = item % key_blocks, bh = item / key_blocks;
    cpu::key_block_gradients(params, deltas, bh / params.heads_kv, bh % params.heads_kv, block);
  });

  cpu::DbiasPlan plan(params);
  // No row block when every query sequence is empty: then there is no dq row and no dbias.
  const int64_t row_blocks = cpu::ceil_div(params.seqlen_q, cpu::kRowBlock);
  const int64_t items = plan.batches * plan.heads * row_blocks;
  if (plan.reduce_rows) plan.row_partials.assign(items * plan.width, 0.0f);
  parallel_for(items, [&](int64_t item) {
    // Last row blocks (the most keys under a causal mask) first; `item` still names the
    // partial slot, so the reduction order does not change.
    const int64_t block = row_blocks - 1 - item % row_blocks, bh = item / row_blocks;
    cpu::query_block_gradients(params, deltas, plan, bh / plan.heads, bh % plan.heads, block,
                               bh * row_blocks + block);
  });
  if (plan.reduce_rows) cpu::write_reduced_dbias_rows(params, plan, row_blocks);
  return FA_OK;
}

}  // namespace fa
