// tma.cu: tensor-map encoding through the driver's cuTensorMapEncodeTiled, reached with
// cudaGetDriverEntryPointByVersion (the library links the runtime statically and not
// libcuda, so it still loads on machines without a driver).
#include "sm90/tma.h"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <mutex>

#include "common/status.h"

namespace fa {
namespace sm90 {
namespace {

fa_status encode_function(PFN_cuTensorMapEncodeTiled_v12000* out) {
  static std::once_flag once;
  static void* function = nullptr;
  static cudaError_t error = cudaSuccess;
  static cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSuccess;
  std::call_once(once, [] {
    error = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000,
                                             cudaEnableDefault, &query);
  });
  FA_CUDA_CHECK(error);
  if (query != cudaDriverEntryPointSuccess || function == nullptr) {
    return fail(FA_ERR_CUDA, "cuda: the driver has no cuTensorMapEncodeTiled (status %d)",
                int(query));
  }
  *out = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  return FA_OK;
}

bool tma_stride(int64_t bytes) {
  return bytes > 0 && bytes % 16 == 0 && bytes < (int64_t(1) << 40);
}

}  // namespace

fa_status encode_tensor_map(CUtensorMap* map, const sm80::TensorView& view, bool bf16,
                            int head_dim, int64_t rows, int64_t heads, int64_t batch,
                            int box_rows, bool* encoded) {
  *encoded = false;
  // A dimension of size 1 (e.g. the batch of a nested operand) is never stepped: it gets
  // the stride of a packed layout, whatever the caller's (possibly 0) was.
  auto stride = [](int64_t size, int64_t elements, int64_t packed_bytes) {
    return size == 1 ? packed_bytes : elements * 2;
  };
  const int64_t row_bytes = stride(rows, view.sr, (int64_t(head_dim) * 2 + 15) / 16 * 16);
  const int64_t head_bytes = stride(heads, view.sh, row_bytes * rows);
  const int64_t batch_bytes = stride(batch, view.sb, head_bytes * heads);
  if (reinterpret_cast<uintptr_t>(view.ptr) % 16 != 0 || !tma_stride(row_bytes) ||
      !tma_stride(head_bytes) || !tma_stride(batch_bytes) || rows < 1 ||
      rows > (int64_t(1) << 32)) {
    return FA_OK;
  }
  PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (const fa_status s = encode_function(&encode)) return s;

  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(rows), cuuint64_t(heads),
                              cuuint64_t(batch)};
  const cuuint64_t strides[3] = {cuuint64_t(row_bytes), cuuint64_t(head_bytes),
                                 cuuint64_t(batch_bytes)};
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUresult result = encode(
      map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
      view.ptr, dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return fail(FA_ERR_CUDA,
                "cuda: cuTensorMapEncodeTiled refused an operand (error %d; dims %lld x %lld x "
                "%lld x %lld, strides %lld, %lld, %lld bytes)",
                int(result), static_cast<long long>(dims[0]), static_cast<long long>(dims[1]),
                static_cast<long long>(dims[2]), static_cast<long long>(dims[3]),
                static_cast<long long>(strides[0]), static_cast<long long>(strides[1]),
                static_cast<long long>(strides[2]));
  }
  *encoded = true;
  return FA_OK;
}

}  // namespace sm90
}  // namespace fa
