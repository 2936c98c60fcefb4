// attention_tiles.h: the pieces the CPU forward and backward share. Work is split into tiles
// of up to kRowBlock query rows x kColBlock keys, converted to float32 scratch so the inner
// loops run over contiguous floats (and vectorize) whatever the operands' strides.
#pragma once

#include <cstdint>

#include "common/params.h"

namespace fa {
namespace cpu {

constexpr int64_t kRowBlock = 64;
constexpr int64_t kColBlock = 64;

// ---- Vectorized inner loops: the tile matrix products, the softmax's exponentials, the
// backward's elementwise gradient. Where the processor has AVX2 and FMA (checked once, at run
// time) they run on 8-wide float32 vectors with fused multiply-adds (function attributes, not
// global flags, so the library still runs on any x86-64); elsewhere, or with
// FLASHATTN_CPU_SIMD=0 in the environment, as portable scalar loops. Both keep float32
// accumulation and sum each result over k in order with one accumulator per output element,
// so they differ only in rounding (FMA, and a polynomial exp within 2 float32 ulps of
// std::exp over its normal range; inputs outside it, NaN included, go to std::exp, so NaN,
// infinity and underflow behave as std::exp does).

// A read-only matrix whose element (row, k) is data[row * row_stride + k * k_stride]: a
// row-major matrix (k_stride 1) or the transpose of one (row_stride 1).
struct MatrixA {
  const float* data;
  int64_t row_stride, k_stride;
};

// c[m][n] for m < rows, n < cols (a multiple of 8), over the inner dimension `depth`:
//   accumulate: c[m][n] += sum_k a(m, k) * b[k * ldb + n]
//   otherwise:  c[m][n]  = alpha * sum_k a(m, k) * b[k * ldb + n]
// The sum runs over k in order from c (or from 0), one product at a time.
void matmul(int64_t rows, int64_t cols, int64_t depth, MatrixA a, const float* b, int64_t ldb,
            float* c, int64_t ldc, bool accumulate, float alpha = 1.0f);

// dst[d * ld_dst + r] = src[r * depth + d] for r < rows, d < depth (a multiple of 8).
void transpose(const float* src, int64_t rows, int64_t depth, float* dst, int64_t ld_dst);

// Whether none of x[0..n) is infinite or NaN. A product with weights of 0 equals skipping
// those weights only over finite values (0 * inf is NaN), so callers check before using
// matmul where the scalar reference skipped zero weights.
bool all_finite(const float* x, int64_t n);

// The largest of s[0..n), ignoring NaN (like a chain of std::max from -inf).
float max_ignoring_nan(const float* s, int64_t n);

// p = exp(s[c] - shift), 0 where s[c] is -inf; weights[c] = p * factors[c] (factors may be
// null: weights = p). Returns the sum of p (before the factors). n is a multiple of 8.
float exp_weights(const float* s, int64_t n, float shift, const float* factors, float* weights);

// The backward's per-cell gradient of one tile row, with p = exp(s - lse) (0 where s is
// -inf, and everywhere when lse is -inf) and z = factors[c] (1 when factors is null):
//   p_dropped[c] = p * z (when p_dropped is not null),  ds[c] = p * (dp[c] * z - delta).
// n is a multiple of 8.
void probability_gradients(const float* s, const float* dp, const float* factors, int64_t n,
                           float lse, float delta, float* p_dropped, float* ds);


inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Where sequence b lives: its first row in the packed tensors and its lengths.
struct SequenceSpan {
  int64_t q_start, q_len, k_start, k_len;
};

inline SequenceSpan sequence_span(const AttentionParams& params, int64_t b) {
  if (!params.nested()) return {0, params.seqlen_q, 0, params.seqlen_k};
  const int64_t q_start = params.cu_seqlens_q[b], k_start = params.cu_seqlens_k[b];
  return {q_start, params.cu_seqlens_q[b + 1] - q_start, k_start,
          params.cu_seqlens_k[b + 1] - k_start};
}

// Element (b, h, row, 0) of a float16/bfloat16 operand; row counts from the packed start.
inline uint16_t* row_pointer(const Operand& operand, int64_t b, int64_t h, int64_t row) {
  return static_cast<uint16_t*>(operand.ptr) + b * operand.stride_b + h * operand.stride_head +
         row * operand.stride_row;
}

inline float* lse_pointer(const LseOperand& lse, int64_t b, int64_t h, int64_t row) {
  return lse.ptr + b * lse.stride_b + h * lse.stride_head + row * lse.stride_row;
}

// Element offset of bias/dbias (b, h, i, j), local indices.
inline int64_t bias_offset(const BiasOperand& bias, int64_t b, int64_t h, int64_t i, int64_t j) {
  return b * bias.stride_b + h * bias.stride_head + i * bias.stride_row + j;
}

// rows x D of an operand, from packed row first_row on, into dst[rows][D].
void load_rows(const AttentionParams& params, const Operand& operand, int64_t b, int64_t h,
               int64_t first_row, int64_t rows, float* dst);

// cols x D of an operand, transposed into dst[D][kColBlock]; columns >= cols are zero.
void load_rows_transposed(const AttentionParams& params, const Operand& operand, int64_t b,
                          int64_t h, int64_t first_row, int64_t cols, float* dst);

// acc[d] += sum_k weights[k * weight_stride] * rows[k][d], for k < n, d < depth, skipping
// zero weights (so a masked key's non-finite row never enters). The fast path is matmul
// (kernels.h), taken instead where the rows are all finite, which gives the same sums.
void accumulate_weighted_rows(const float* weights, int64_t weight_stride, int64_t n,
                              const float* rows, int64_t depth, float* acc);

// The tile of rows [i0, i0 + rows) and keys [j0, j0 + kColBlock) of (b, h) in sequence
// coordinates.
struct Tile {
  int64_t b, h, i0, rows, j0, cols;
};

// scores[r][c] = the score of common/score.h: softcap(scale * q_r . k_c) + bias + ALiBi, or
// -inf where masked (the window, a -inf bias, or c >= cols). q_block [rows][D], kt_block
// [D][kColBlock]. With a softcap, softcap_grad (when not null) receives d(capped)/d(scaled)
// per cell, for the backward's chain rule.
void compute_scores(const AttentionParams& params, const SequenceSpan& span, const Tile& tile,
                    const float* q_block, const float* kt_block, float* scores,
                    float* softcap_grad = nullptr);

// factors[r][c] = 1 / (1 - p) where element (b, h, i0 + r, j0 + c) survives dropout, else 0.
void dropout_factors(const AttentionParams& params, const Tile& tile, float* factors);

// The attention of row block `block` (rows [block * kRowBlock, ...) of sequence b, query
// head h), over split `split` of `num_splits` of the key blocks it visits (key_blocks of
// common/mask.h; 0 of 1 = all), normalized in float32: out[r][D] and lse[r] for the rows
// returned (0 past the sequence). `sink` (-inf = none) joins the denominator. No dropout
// factors are applied unless params.dropout_p > 0 (forward.cpp).
int64_t attend_row_block(const AttentionParams& params, int64_t b, int64_t h, int64_t block,
                         int split, int num_splits, float sink, float* out, float* lse);

}  // namespace cpu
}  // namespace fa
