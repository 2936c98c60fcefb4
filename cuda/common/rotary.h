// rotary.h: the rotary embedding of one row at one position, the rule of every backend
// (KvCacheParams::rotary): position t rotates the pair (x1, x2) of frequency m, m <
// dim / 2, into (x1 cos[t, m] - x2 sin[t, m], x1 sin[t, m] + x2 cos[t, m]) in float32.
// The pair is (m, m + dim / 2), or (2m, 2m + 1) when interleaved; dims >= dim unchanged.
// Callers round the result to the input dtype before using it (q) or storing it (k_new).
#pragma once

#include "common/philox.h"  // FA_HOST_DEVICE

namespace fa {

// Indices of the two elements of frequency m's pair.
FA_HOST_DEVICE int rotary_first(int m, bool interleaved) {
  return interleaved ? 2 * m : m;
}
FA_HOST_DEVICE int rotary_second(int m, int dim, bool interleaved) {
  return interleaved ? 2 * m + 1 : m + dim / 2;
}

// Rotates the pair (x1, x2) in place by the angle whose cosine and sine are given.
// Products and sums rounded separately on the device too (no fused multiply-add), so a
// rotated row rounds to the same 16-bit value in every backend.
FA_HOST_DEVICE void rotate_pair(float& x1, float& x2, float cos_value, float sin_value) {
#if defined(__CUDA_ARCH__)
  const float rotated1 = __fsub_rn(__fmul_rn(x1, cos_value), __fmul_rn(x2, sin_value));
  const float rotated2 = __fadd_rn(__fmul_rn(x1, sin_value), __fmul_rn(x2, cos_value));
#else
  const float rotated1 = x1 * cos_value - x2 * sin_value;
  const float rotated2 = x1 * sin_value + x2 * cos_value;
#endif
  x1 = rotated1;
  x2 = rotated2;
}

// Element d of `row` rotated (a kernel thread's share of rotate_row): `at(i)` reads element
// i of the row as float; dims >= dim are returned unchanged.
template <typename At>
FA_HOST_DEVICE float rotated_element(const At& at, int d, int dim, bool interleaved,
                                     const float* cos_row, const float* sin_row) {
  const float x = at(d);
  if (d >= dim) return x;
  const int half = dim / 2;
  const bool first = interleaved ? d % 2 == 0 : d < half;
  const int m = interleaved ? d / 2 : (first ? d : d - half);
  const int partner = interleaved ? (first ? d + 1 : d - 1) : (first ? d + half : d - half);
  float x1 = first ? x : at(partner);
  float x2 = first ? at(partner) : x;
  rotate_pair(x1, x2, cos_row[m], sin_row[m]);
  return first ? x1 : x2;
}

// Rotates row[0, dim) in place with the table rows cos_row / sin_row (dim / 2 entries each).
FA_HOST_DEVICE void rotate_row(float* row, int dim, bool interleaved, const float* cos_row,
                               const float* sin_row) {
  for (int m = 0; m < dim / 2; ++m) {
    rotate_pair(row[rotary_first(m, interleaved)], row[rotary_second(m, dim, interleaved)],
                cos_row[m], sin_row[m]);
  }
}

}  // namespace fa
