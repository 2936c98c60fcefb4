// tma.h: host side: the TMA tensor maps the sm90 kernels load Q, K and V through.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "flashattn.h"
#include "sm80/kernel_params.h"

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
fa_status encode_tensor_map(CUtensorMap* map, const sm80::TensorView& view, bool bf16,
                            int head_dim, int64_t rows, int64_t heads, int64_t batch,
                            int box_rows, bool* encoded);

}  // namespace sm90
}  // namespace fa
