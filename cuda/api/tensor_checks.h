// tensor_checks.h: checks of one fa_tensor that do not depend on the attention problem.
// Each returns FA_OK or fails with a message starting "<name>: ".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/request.h"
#include "flashattn.h"

namespace fa {

// "[2, 8, 128, 64]"
std::string shape_string(const fa_tensor& tensor);
std::string strides_string(const fa_tensor& tensor);
// "float16", "bfloat16", "float32", "int32", or "an unknown dtype".
const char* dtype_name(int32_t dtype);
// "cpu" or "cuda:N".
std::string device_name(int32_t device);
int64_t dtype_size(int32_t dtype);
// Product of the used sizes: 0 when any size is 0; INT64_MAX where the product overflows
// (check_tensor_header refuses such tensors).
int64_t element_count(const fa_tensor& tensor);

// A required tensor: data may be 0 only when it has no elements. Runs check_tensor_header.
fa_status check_required(const char* name, const fa_tensor& tensor);
// reserved == 0, ndim in 1..4, unused shape/stride entries 0, sizes and strides >= 0,
// a known dtype and device, an element count that fits in int64 (unless some size is 0),
// and a largest byte offset that fits in int64.
fa_status check_tensor_header(const char* name, const fa_tensor& tensor);

fa_status check_ndim(const char* name, const fa_tensor& tensor, int32_t ndim,
                     const char* layout);
// Exact shape; `what` says where the expectation comes from, e.g. "like q".
fa_status check_shape(const char* name, const fa_tensor& tensor, const int64_t* shape,
                      const char* what);
fa_status check_dtype_is(const char* name, const fa_tensor& tensor, int32_t dtype,
                         const char* what);

// The last dimension's stride is 1 (when it has more than one element).
fa_status check_last_contiguous(const char* name, const fa_tensor& tensor);

// An output: no two elements share an address. Dims flagged in reducible_dims (bit d) may
// have stride 0 (dbias: summed over); they are left out of the check.
fa_status check_no_overlap(const char* name, const fa_tensor& tensor, uint32_t reducible_dims);

// [first, last] bytes a tensor's elements touch; false when it has none.
bool byte_extent(const fa_tensor& tensor, uint64_t* first, uint64_t* last);

// An output `name` shares no byte with any other tensor of `all` (entries that are `tensor`
// itself are skipped): the per-tensor overlap check covers the elements of one tensor only.
fa_status check_disjoint(const char* name, const fa_tensor& tensor,
                         const std::vector<NamedTensor>& all);

// data aligned to `base_bytes` and every stride of a dim with size > 1 except the last a
// multiple of `stride_elements`.
fa_status check_alignment(const char* name, const fa_tensor& tensor, int64_t base_bytes,
                          int64_t stride_elements);

}  // namespace fa
