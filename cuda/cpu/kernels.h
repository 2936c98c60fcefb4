// kernels.h: the CPU backend's inner loops (the tile matrix products, the softmax's
// exponentials, the backward's elementwise gradient), in one place so they can be vectorized.
// Where the processor has AVX2 and FMA (checked once, at run time) they run on 8-wide float32
// vectors with fused multiply-adds; elsewhere, or with FLASHATTN_CPU_SIMD=0 in the environment,
// they run as the portable scalar loops. Both keep float32 accumulation and sum each result
// over k in order with one accumulator per output element, so they differ only in rounding
// (FMA, and a polynomial exp within 2 float32 ulps of std::exp over its normal range; inputs
// outside that range, NaN included, go to std::exp, so NaN, infinity and underflow behave as
// std::exp does).
#pragma once

#include <cstdint>

namespace fa {
namespace cpu {

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

}  // namespace cpu
}  // namespace fa
