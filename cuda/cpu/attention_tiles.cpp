// attention_tiles.cpp: tile loading, scoring and masking shared by the CPU passes, and the
// vectorized inner loops (portable scalar loops, and AVX2 + FMA versions chosen at run time).
#include "cpu/attention_tiles.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/mask.h"
#include "common/philox.h"
#include "common/score.h"
#include "cpu/float_convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FA_CPU_HAVE_AVX2_PATH 1
#define FA_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace fa {
namespace cpu {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

// ---- portable scalar loops (the reference behaviour) ----------------------------------

void matmul_scalar(int64_t rows, int64_t cols, int64_t depth, MatrixA a, const float* b,
                   int64_t ldb, float* c, int64_t ldc, bool accumulate, float alpha) {
  for (int64_t m = 0; m < rows; ++m) {
    float* c_row = c + m * ldc;
    if (!accumulate) std::fill(c_row, c_row + cols, 0.0f);
    for (int64_t k = 0; k < depth; ++k) {
      const float weight = a.data[m * a.row_stride + k * a.k_stride];
      const float* b_row = b + k * ldb;
      for (int64_t n = 0; n < cols; ++n) c_row[n] += weight * b_row[n];
    }
    if (!accumulate) {
      for (int64_t n = 0; n < cols; ++n) c_row[n] *= alpha;
    }
  }
}

void transpose_scalar(const float* src, int64_t rows, int64_t depth, float* dst,
                      int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < depth; ++d) dst[d * ld_dst + r] = src[r * depth + d];
  }
}

float exp_weights_scalar(const float* s, int64_t n, float shift, const float* factors,
                         float* weights) {
  float sum = 0.0f;
  for (int64_t c = 0; c < n; ++c) {
    const float p = s[c] == kNegativeInfinity ? 0.0f : std::exp(s[c] - shift);
    sum += p;
    weights[c] = factors != nullptr ? p * factors[c] : p;
  }
  return sum;
}

void probability_gradients_scalar(const float* s, const float* dp, const float* factors,
                                  int64_t n, float lse, float delta, float* p_dropped,
                                  float* ds) {
  for (int64_t c = 0; c < n; ++c) {
    const float p =
        (s[c] == kNegativeInfinity || lse == kNegativeInfinity) ? 0.0f : std::exp(s[c] - lse);
    const float z = factors != nullptr ? factors[c] : 1.0f;
    if (p_dropped != nullptr) p_dropped[c] = p * z;
    ds[c] = p * (dp[c] * z - delta);
  }
}

#ifdef FA_CPU_HAVE_AVX2_PATH
// ---- AVX2 + FMA -----------------------------------------------------------------------

// One register tile of the product: kRows rows x kVectors * 8 columns of c, held in
// kRows * kVectors accumulators while k runs over the whole depth.
template <int kRows, int kVectors>
FA_AVX2 inline void matmul_register_tile(int64_t depth, const float* a, int64_t a_row,
                                         int64_t a_k, const float* b, int64_t ldb, float* c,
                                         int64_t ldc, bool accumulate, float alpha) {
  __m256 acc[kRows][kVectors];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
  #pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) {
      acc[r][v] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
    }
  }
  for (int64_t k = 0; k < depth; ++k) {
    __m256 b_k[kVectors];
  #pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) b_k[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
  #pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m256 a_rk = _mm256_broadcast_ss(a + r * a_row + k * a_k);
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_fmadd_ps(a_rk, b_k[v], acc[r][v]);
    }
  }
  const __m256 scale = _mm256_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
  #pragma GCC unroll 8
    for (int v = 0; v < kVectors; ++v) {
      const __m256 result = accumulate ? acc[r][v] : _mm256_mul_ps(acc[r][v], scale);
      _mm256_storeu_ps(c + r * ldc + 8 * v, result);
    }
  }
}

// The last `left` (< kRows + 1) rows of a panel, as one register tile of exactly that height.
template <int kRows, int kVectors>
FA_AVX2 inline void matmul_remainder_rows(int64_t left, int64_t depth, const float* a,
                                          int64_t a_row, int64_t a_k, const float* b,
                                          int64_t ldb, float* c, int64_t ldc, bool accumulate,
                                          float alpha) {
  if constexpr (kRows > 0) {
    if (left == kRows) {
      return matmul_register_tile<kRows, kVectors>(depth, a, a_row, a_k, b, ldb, c, ldc,
                                                   accumulate, alpha);
    }
    matmul_remainder_rows<kRows - 1, kVectors>(left, depth, a, a_row, a_k, b, ldb, c, ldc,
                                               accumulate, alpha);
  }
}

// Rows [0, rows) of one column panel of kVectors * 8 columns: tiles of 6 rows (12
// accumulators + 2 b vectors + 1 broadcast fit the 16 registers), then the remainder.
template <int kVectors>
FA_AVX2 void matmul_panel(int64_t rows, int64_t depth, MatrixA a, const float* b, int64_t ldb,
                          float* c, int64_t ldc, bool accumulate, float alpha) {
  constexpr int kTileRows = 6;
  int64_t m = 0;
  for (; m + kTileRows <= rows; m += kTileRows) {
    matmul_register_tile<kTileRows, kVectors>(depth, a.data + m * a.row_stride, a.row_stride,
                                              a.k_stride, b, ldb, c + m * ldc, ldc, accumulate,
                                              alpha);
  }
  matmul_remainder_rows<kTileRows - 1, kVectors>(rows - m, depth, a.data + m * a.row_stride,
                                                 a.row_stride, a.k_stride, b, ldb, c + m * ldc,
                                                 ldc, accumulate, alpha);
}

FA_AVX2 void matmul_avx2(int64_t rows, int64_t cols, int64_t depth, MatrixA a, const float* b,
                         int64_t ldb, float* c, int64_t ldc, bool accumulate, float alpha) {
  int64_t n = 0;
  for (; n + 16 <= cols; n += 16) {
    matmul_panel<2>(rows, depth, a, b + n, ldb, c + n, ldc, accumulate, alpha);
  }
  if (n < cols) matmul_panel<1>(rows, depth, a, b + n, ldb, c + n, ldc, accumulate, alpha);
}

// 8 rows x 8 columns of src (row stride src_stride) transposed into dst (row stride
// dst_stride), in registers.
FA_AVX2 inline void transpose_8x8(const float* src, int64_t src_stride, float* dst,
                                  int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

FA_AVX2 void transpose_avx2(const float* src, int64_t rows, int64_t depth, float* dst,
                            int64_t ld_dst) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) {
    for (int64_t d = 0; d < depth; d += 8) {
      transpose_8x8(src + r * depth + d, depth, dst + d * ld_dst + r, ld_dst);
    }
  }
  transpose_scalar(src + r * depth, rows - r, depth, dst + r, ld_dst);
}

FA_AVX2 bool all_finite_avx2(const float* x, int64_t n) {
  // x - x is 0 for finite x and NaN for infinities and NaN; NaN survives the sum.
  __m256 probe = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    probe = _mm256_add_ps(probe, _mm256_sub_ps(v, v));
  }
  bool finite = _mm256_movemask_ps(_mm256_cmp_ps(probe, probe, _CMP_UNORD_Q)) == 0;
  for (; i < n; ++i) finite = finite && std::isfinite(x[i]);
  return finite;
}

FA_AVX2 float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

FA_AVX2 float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

FA_AVX2 float max_ignoring_nan_avx2(const float* s, int64_t n) {
  // maxps returns its second operand when either is NaN, so the running maximum (never
  // NaN) stays second and a NaN element is skipped, as std::max(running, s) does.
  __m256 running = _mm256_set1_ps(kNegativeInfinity);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) running = _mm256_max_ps(_mm256_loadu_ps(s + i), running);
  float result = horizontal_max(running);
  for (; i < n; ++i) result = std::max(result, s[i]);
  return result;
}

// exp(x) for x in [kExpLow, kExpHigh], where the result is a normal float: x = n ln2 + r,
// |r| <= ln2 / 2, exp(r) by the Cephes expf polynomial, times 2^n built in the exponent bits.
constexpr float kExpLow = -87.0f, kExpHigh = 88.0f;

FA_AVX2 inline __m256 exp_normal_range(__m256 x) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i exponent =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
}

// exp of 8 lanes: 0 for -inf, the polynomial over the normal range, std::exp for the rest
// (NaN, overflow, results below the normal range), which is rare in a softmax.
FA_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 clamped =
      _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLow)), _mm256_set1_ps(kExpHigh));
  const __m256 in_range = _mm256_cmp_ps(x, clamped, _CMP_EQ_OQ);  // false for NaN
  const __m256 minus_infinity = _mm256_cmp_ps(x, _mm256_set1_ps(kNegativeInfinity), _CMP_EQ_OQ);
  __m256 result = _mm256_and_ps(exp_normal_range(clamped), in_range);  // 0 where not in range
  const int rest = ~_mm256_movemask_ps(_mm256_or_ps(in_range, minus_infinity)) & 0xff;
  if (rest != 0) {
    alignas(32) float lanes[8], values[8];
    _mm256_store_ps(lanes, x);
    _mm256_store_ps(values, result);
    for (int lane = 0; lane < 8; ++lane) {
      if (rest & (1 << lane)) values[lane] = std::exp(lanes[lane]);
    }
    result = _mm256_load_ps(values);
  }
  return result;
}

FA_AVX2 float exp_weights_avx2(const float* s, int64_t n, float shift, const float* factors,
                               float* weights) {
  const __m256 shift_v = _mm256_set1_ps(shift);
  const __m256 minus_infinity = _mm256_set1_ps(kNegativeInfinity);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t c = 0; c < n; c += 8) {
    const __m256 score = _mm256_loadu_ps(s + c);
    const __m256 visible = _mm256_cmp_ps(score, minus_infinity, _CMP_NEQ_UQ);
    const __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(score, shift_v)), visible);
    sum = _mm256_add_ps(sum, p);
    const __m256 weight = factors != nullptr ? _mm256_mul_ps(p, _mm256_loadu_ps(factors + c)) : p;
    _mm256_storeu_ps(weights + c, weight);
  }
  return horizontal_sum(sum);
}

FA_AVX2 void probability_gradients_avx2(const float* s, const float* dp, const float* factors,
                                        int64_t n, float lse, float delta, float* p_dropped,
                                        float* ds) {
  const __m256 lse_v = _mm256_set1_ps(lse), delta_v = _mm256_set1_ps(delta);
  const __m256 minus_infinity = _mm256_set1_ps(kNegativeInfinity);
  const bool row_empty = lse == kNegativeInfinity;  // a row that saw no key: P = 0
  for (int64_t c = 0; c < n; c += 8) {
    const __m256 score = _mm256_loadu_ps(s + c);
    __m256 p = _mm256_setzero_ps();
    if (!row_empty) {
      const __m256 visible = _mm256_cmp_ps(score, minus_infinity, _CMP_NEQ_UQ);
      p = _mm256_and_ps(exp8(_mm256_sub_ps(score, lse_v)), visible);
    }
    const __m256 z = factors != nullptr ? _mm256_loadu_ps(factors + c) : _mm256_set1_ps(1.0f);
    if (p_dropped != nullptr) _mm256_storeu_ps(p_dropped + c, _mm256_mul_ps(p, z));
    const __m256 dp_z = _mm256_mul_ps(_mm256_loadu_ps(dp + c), z);
    _mm256_storeu_ps(ds + c, _mm256_mul_ps(p, _mm256_sub_ps(dp_z, delta_v)));
  }
}
#endif  // FA_CPU_HAVE_AVX2_PATH

bool use_avx2() {
#ifdef FA_CPU_HAVE_AVX2_PATH
  static const bool available = [] {
    const char* setting = std::getenv("FLASHATTN_CPU_SIMD");
    if (setting != nullptr && std::strcmp(setting, "0") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return available;
#else
  return false;
#endif
}

}  // namespace

void matmul(int64_t rows, int64_t cols, int64_t depth, MatrixA a, const float* b, int64_t ldb,
            float* c, int64_t ldc, bool accumulate, float alpha) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) return matmul_avx2(rows, cols, depth, a, b, ldb, c, ldc, accumulate, alpha);
#endif
  matmul_scalar(rows, cols, depth, a, b, ldb, c, ldc, accumulate, alpha);
}

void transpose(const float* src, int64_t rows, int64_t depth, float* dst, int64_t ld_dst) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) return transpose_avx2(src, rows, depth, dst, ld_dst);
#endif
  transpose_scalar(src, rows, depth, dst, ld_dst);
}

bool all_finite(const float* x, int64_t n) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) return all_finite_avx2(x, n);
#endif
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

float max_ignoring_nan(const float* s, int64_t n) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) return max_ignoring_nan_avx2(s, n);
#endif
  float result = kNegativeInfinity;
  for (int64_t i = 0; i < n; ++i) result = std::max(result, s[i]);
  return result;
}

float exp_weights(const float* s, int64_t n, float shift, const float* factors, float* weights) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) return exp_weights_avx2(s, n, shift, factors, weights);
#endif
  return exp_weights_scalar(s, n, shift, factors, weights);
}

void probability_gradients(const float* s, const float* dp, const float* factors, int64_t n,
                           float lse, float delta, float* p_dropped, float* ds) {
#ifdef FA_CPU_HAVE_AVX2_PATH
  if (use_avx2()) {
    return probability_gradients_avx2(s, dp, factors, n, lse, delta, p_dropped, ds);
  }
#endif
  probability_gradients_scalar(s, dp, factors, n, lse, delta, p_dropped, ds);
}



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
  for (int64_t d = 0; d < depth; ++d) {
    std::fill(dst + d * kColBlock + cols, dst + (d + 1) * kColBlock, 0.0f);
  }
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
