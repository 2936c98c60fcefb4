// tma.h: host side: the TMA tensor maps the sm90 kernels load Q, K and V through.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "flashattn.h"
#include "common/kernel_params.h"

namespace fa {
namespace sm90 {

// Describes a [batch, head, row, dim] operand (dim contiguous, 16-bit elements) as the 4-d
// tensor (dim, row, head, batch), read in boxes of 64 x box_rows elements with 128-byte
// swizzling (the layout wgmma's descriptors expect, see wgmma.h). `rows` and `batch` are
// the sequence length and the batch size, or for nested batches the packed total and 1.
//
// *encoded is false, and nothing is an error, where the TMA's rules rule the operand out
// (base or strides not multiples of 16 bytes, zero or huge strides): the caller then uses
// sm80. A driver refusal of an operand within those rules is an error.
fa_status encode_tensor_map(CUtensorMap* map, const TensorView& view, bool bf16,
                            int head_dim, int64_t rows, int64_t heads, int64_t batch,
                            int box_rows, bool* encoded);

// K or V for the dropout kernels, whose tiles hold their keys in the permuted order of
// fwd_scores.h (8-row group n of a 128-key tile: keys (n % 8) + 64 (n / 8) + 8i, i = 0..7):
//   groups: the 4-d map read in boxes of 64 rows traversed 8 apart (the TMA's element
//           stride), i.e. one 8-row group per box, zero-filled past the end;
//   halves: a 5-d view (dim, row / 8, row % 8, head, batch) read in boxes of 8 x 8 rows, a
//           whole 64-key half of a tile per box, group-major. Its row % 8 dimension is 16
//           long so that a start row r loads as (r / 8, r % 8); it does not clip rows past
//           the end, so the kernel uses it only for tiles inside the tensor.
fa_status encode_permuted_maps(CUtensorMap* groups, CUtensorMap* halves,
                               const TensorView& view, bool bf16, int head_dim,
                               int64_t rows, int64_t heads, int64_t batch, bool* encoded);

// Which dimensions of a bias [batch, head, row, key] are broadcast (stride 0, or size 1).
struct BiasBroadcast {
  bool row, head, batch;
};

inline BiasBroadcast bias_broadcast(const BiasView& bias, int64_t rows, int64_t heads,
                                    int64_t batch) {
  return {bias.sr == 0 || rows == 1, bias.sh == 0 || heads == 1, bias.sb == 0 || batch == 1};
}

// An additive bias [batch, head, row, key] (key contiguous; fp16, bf16 or fp32) as the 4-d
// tensor (key, row, head, batch), read in boxes of 128 bytes of keys x box_rows rows with
// 128-byte swizzling. The caller passes broadcast dimensions (bias_broadcast) as size 1 and
// loads them at coordinate 0; a broadcast row dimension is read one row per box. *encoded is
// false where the TMA cannot address the bias (base or a stepped stride not a multiple of
// 16 bytes): the caller then uses sm80.
fa_status encode_bias_map(CUtensorMap* map, const BiasView& bias, int64_t keys,
                          int64_t rows, int64_t heads, int64_t batch, int box_rows,
                          bool* encoded);

}  // namespace sm90
}  // namespace fa
