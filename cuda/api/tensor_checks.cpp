// tensor_checks.cpp: problem-independent checks of a single fa_tensor.
#include "api/tensor_checks.h"

#include <algorithm>
#include <cinttypes>
#include <vector>

#include "common/status.h"

namespace fa {

namespace {

std::string list_string(const int64_t* values, int32_t count) {
  std::string text = "[";
  for (int32_t d = 0; d < count; ++d) {
    if (d > 0) text += ", ";
    text += std::to_string(values[d]);
  }
  return text + "]";
}

int32_t used_dims(const fa_tensor& tensor) {
  return std::clamp(tensor.ndim, 0, int32_t(FA_MAX_DIMS));
}

}  // namespace

std::string shape_string(const fa_tensor& tensor) {
  return list_string(tensor.shape, used_dims(tensor));
}

std::string strides_string(const fa_tensor& tensor) {
  return list_string(tensor.stride, used_dims(tensor));
}

const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case FA_FLOAT16: return "float16";
    case FA_BFLOAT16: return "bfloat16";
    case FA_FLOAT32: return "float32";
    case FA_INT32: return "int32";
    default: return "an unknown dtype";
  }
}

std::string device_name(int32_t device) {
  return device == FA_DEVICE_CPU ? std::string("cpu") : "cuda:" + std::to_string(device);
}

int64_t dtype_size(int32_t dtype) {
  return dtype == FA_FLOAT16 || dtype == FA_BFLOAT16 ? 2 : 4;
}

int64_t element_count(const fa_tensor& tensor) {
  // check_tensor_header refuses shapes whose product overflows; saturate anyway, so a
  // count is never a wrapped (small or zero) number.
  int64_t count = 1;
  for (int32_t d = 0; d < used_dims(tensor); ++d) {
    if (tensor.shape[d] == 0) return 0;
  }
  for (int32_t d = 0; d < used_dims(tensor); ++d) {
    if (__builtin_mul_overflow(count, tensor.shape[d], &count)) return INT64_MAX;
  }
  return count;
}

fa_status check_required(const char* name, const fa_tensor& tensor) {
  if (tensor.data == 0 && tensor.ndim == 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: required tensor is missing (data is 0)", name);
  }
  if (const fa_status status = check_tensor_header(name, tensor)) return status;
  if (tensor.data == 0 && element_count(tensor) > 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: data is 0 (null) for a tensor of shape %s", name,
                shape_string(tensor).c_str());
  }
  return FA_OK;
}

fa_status check_tensor_header(const char* name, const fa_tensor& tensor) {
  if (tensor.reserved != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: reserved field must be 0, got %d", name,
                tensor.reserved);
  }
  if (tensor.ndim < 1 || tensor.ndim > FA_MAX_DIMS) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: ndim must be 1 to %d, got %d", name, FA_MAX_DIMS,
                tensor.ndim);
  }
  for (int32_t d = tensor.ndim; d < FA_MAX_DIMS; ++d) {
    if (tensor.shape[d] != 0 || tensor.stride[d] != 0) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: shape[%d] and stride[%d] must be 0 past ndim %d, got %" PRId64
                  " and %" PRId64,
                  name, d, d, tensor.ndim, tensor.shape[d], tensor.stride[d]);
    }
  }
  for (int32_t d = 0; d < tensor.ndim; ++d) {
    if (tensor.shape[d] < 0 || tensor.stride[d] < 0) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: sizes and strides must be >= 0, got shape %s strides %s", name,
                  shape_string(tensor).c_str(), strides_string(tensor).c_str());
    }
  }
  if (tensor.dtype < FA_FLOAT16 || tensor.dtype > FA_INT32) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", name, tensor.dtype);
  }
  if (tensor.device < FA_DEVICE_CPU) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: device must be -1 (cpu) or a CUDA ordinal, got %d",
                name, tensor.device);
  }
  bool empty = false;
  for (int32_t d = 0; d < tensor.ndim; ++d) empty = empty || tensor.shape[d] == 0;
  if (empty) return FA_OK;  // no element is addressed
  // The element count must fit in int64: a wrapped count would look empty (or small) to the
  // overlap and alignment checks.
  int64_t count = 1;
  for (int32_t d = 0; d < tensor.ndim; ++d) {
    if (__builtin_mul_overflow(count, tensor.shape[d], &count)) {
      return fail(FA_ERR_INVALID_ARGUMENT, "%s: shape %s has more than 2^63 elements", name,
                  shape_string(tensor).c_str());
    }
  }
  // The last element's byte offset must fit in int64 (kernels and the CPU index in 64 bits).
  {
    int64_t last = 0;
    for (int32_t d = 0; d < tensor.ndim; ++d) {
      int64_t extent;
      if (__builtin_mul_overflow(tensor.shape[d] - 1, tensor.stride[d], &extent) ||
          __builtin_add_overflow(last, extent, &last)) {
        last = -1;
        break;
      }
    }
    int64_t bytes;
    if (last < 0 || __builtin_mul_overflow(last + 1, dtype_size(tensor.dtype), &bytes)) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: shape %s with strides %s spans more than 2^63 bytes", name,
                  shape_string(tensor).c_str(), strides_string(tensor).c_str());
    }
  }
  return FA_OK;
}

fa_status check_ndim(const char* name, const fa_tensor& tensor, int32_t ndim,
                     const char* layout) {
  if (tensor.ndim != ndim) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected %d dimensions %s, got %d (shape %s)", name,
                ndim, layout, tensor.ndim, shape_string(tensor).c_str());
  }
  return FA_OK;
}

fa_status check_shape(const char* name, const fa_tensor& tensor, const int64_t* shape,
                      const char* what) {
  if (!std::equal(shape, shape + tensor.ndim, tensor.shape)) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected shape %s (%s), got %s", name,
                list_string(shape, tensor.ndim).c_str(), what, shape_string(tensor).c_str());
  }
  return FA_OK;
}

fa_status check_dtype_is(const char* name, const fa_tensor& tensor, int32_t dtype,
                         const char* what) {
  if (tensor.dtype != dtype) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected %s (%s), got %s", name, dtype_name(dtype),
                what, dtype_name(tensor.dtype));
  }
  return FA_OK;
}

fa_status check_last_contiguous(const char* name, const fa_tensor& tensor) {
  const int32_t last = tensor.ndim - 1;
  if (tensor.shape[last] > 1 && tensor.stride[last] != 1) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: the last dimension must be contiguous (stride 1), got strides %s", name,
                strides_string(tensor).c_str());
  }
  return FA_OK;
}

fa_status check_no_overlap(const char* name, const fa_tensor& tensor, uint32_t reducible_dims) {
  if (element_count(tensor) == 0) return FA_OK;
  // Sorted by stride, each dim must step past everything the smaller dims reach.
  std::vector<int32_t> dims;
  for (int32_t d = 0; d < tensor.ndim; ++d) {
    const bool reduced = (reducible_dims >> d) & 1u && tensor.stride[d] == 0;
    if (tensor.shape[d] > 1 && !reduced) dims.push_back(d);
  }
  std::sort(dims.begin(), dims.end(),
            [&](int32_t a, int32_t b) { return tensor.stride[a] < tensor.stride[b]; });
  int64_t reach = 0;  // largest offset spanned by the dims checked so far
  for (int32_t d : dims) {
    if (tensor.stride[d] <= reach) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: strides %s make distinct elements of shape %s share memory (dimension %d); "
                  "an output needs one address per element",
                  name, strides_string(tensor).c_str(), shape_string(tensor).c_str(), d);
    }
    reach += (tensor.shape[d] - 1) * tensor.stride[d];
  }
  return FA_OK;
}

bool byte_extent(const fa_tensor& tensor, uint64_t* first, uint64_t* last) {
  if (tensor.data == 0 || element_count(tensor) == 0) return false;
  int64_t reach = 0;
  for (int32_t d = 0; d < tensor.ndim; ++d) reach += (tensor.shape[d] - 1) * tensor.stride[d];
  *first = tensor.data;
  *last = tensor.data + uint64_t((reach + 1) * dtype_size(tensor.dtype)) - 1;
  return true;
}

fa_status check_disjoint(const char* name, const fa_tensor& tensor,
                         const std::vector<NamedTensor>& all) {
  uint64_t first = 0, last = 0;
  if (!byte_extent(tensor, &first, &last)) return FA_OK;
  for (const NamedTensor& named : all) {
    if (named.tensor == &tensor) continue;
    uint64_t other_first = 0, other_last = 0;
    if (!byte_extent(*named.tensor, &other_first, &other_last)) continue;
    if (first <= other_last && other_first <= last) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: its memory [0x%" PRIx64 ", 0x%" PRIx64 "] overlaps %s's; an output "
                  "may not share memory with another tensor of the call",
                  name, first, last, named.name);
    }
  }
  return FA_OK;
}

fa_status check_alignment(const char* name, const fa_tensor& tensor, int64_t base_bytes,
                          int64_t stride_elements) {
  if (element_count(tensor) == 0) return FA_OK;
  if (tensor.data % uint64_t(base_bytes) != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: address 0x%" PRIx64 " is not %" PRId64 "-byte aligned", name, tensor.data,
                base_bytes);
  }
  for (int32_t d = 0; d + 1 < tensor.ndim; ++d) {
    if (tensor.shape[d] > 1 && tensor.stride[d] % stride_elements != 0) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: stride of dimension %d must be a multiple of %" PRId64
                  " elements, got strides %s",
                  name, d, stride_elements, strides_string(tensor).c_str());
    }
  }
  return FA_OK;
}

}  // namespace fa
