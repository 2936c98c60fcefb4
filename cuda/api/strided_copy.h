// strided_copy.h: copies between a strided view and another view of the same shape, for
// 2-byte elements (float16 / bfloat16), on a CUDA stream. The slow path of cuda_backend.cpp
// uses it to stage operands the sm80 kernels cannot address directly (base address not
// 16-byte aligned, or a non-last stride that is not a multiple of 8 elements) through a
// contiguous, aligned temporary.
#pragma once

#include <cstdint>

#include "flashattn.h"

namespace fa {

// A 4-d view of 2-byte elements; strides in elements. Fewer dims: leading size-1 dims.
struct StridedView {
  void* ptr = nullptr;
  int64_t shape[4] = {1, 1, 1, 1};
  int64_t stride[4] = {0, 0, 0, 0};
};

// dst[i] = src[i] for every index of src.shape (dst.shape must equal it). Launched on
// `stream` (a cudaStream_t) on the current device, asynchronously; 64-bit indexing.
// `name` prefixes the error message.
fa_status strided_copy_2byte(const char* name, const StridedView& src, const StridedView& dst,
                             void* stream);

}  // namespace fa
