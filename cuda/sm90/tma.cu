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

// The operand's byte strides, or false where the TMA cannot address it. A dimension of
// size 1 (e.g. the batch of a nested operand) is never stepped: it gets the stride of a
// packed layout, whatever the caller's (possibly 0) was.
bool operand_strides(const TensorView& view, int head_dim, int64_t rows, int64_t heads,
                     int64_t batch, int64_t* row_bytes, int64_t* head_bytes,
                     int64_t* batch_bytes) {
  auto stride = [](int64_t size, int64_t elements, int64_t packed_bytes) {
    return size == 1 ? packed_bytes : elements * 2;
  };
  *row_bytes = stride(rows, view.sr, (int64_t(head_dim) * 2 + 15) / 16 * 16);
  *head_bytes = stride(heads, view.sh, *row_bytes * rows);
  *batch_bytes = stride(batch, view.sb, *head_bytes * heads);
  return reinterpret_cast<uintptr_t>(view.ptr) % 16 == 0 && tma_stride(*row_bytes) &&
         tma_stride(*head_bytes) && tma_stride(*batch_bytes) && rows >= 1 &&
         rows <= (int64_t(1) << 32);
}

// 16-bit tiles in 128-byte swizzled boxes; rank 4 or 5 (dims and box innermost first).
fa_status encode_operand(CUtensorMap* map, const TensorView& view, bool bf16, int rank,
                         const cuuint64_t* dims, const cuuint64_t* strides,
                         const cuuint32_t* box, const cuuint32_t* element_strides) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (const fa_status s = encode_function(&encode)) return s;
  const CUresult result = encode(
      map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
      cuuint32_t(rank), view.ptr, dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return fail(FA_ERR_CUDA,
                "cuda: cuTensorMapEncodeTiled refused an operand (error %d; rank %d, dims %lld "
                "x %lld x %lld x %lld, strides %lld, %lld, %lld bytes)",
                int(result), rank, static_cast<long long>(dims[0]),
                static_cast<long long>(dims[1]), static_cast<long long>(dims[2]),
                static_cast<long long>(dims[3]), static_cast<long long>(strides[0]),
                static_cast<long long>(strides[1]), static_cast<long long>(strides[2]));
  }
  return FA_OK;
}

}  // namespace

fa_status encode_tensor_map(CUtensorMap* map, const TensorView& view, bool bf16,
                            int head_dim, int64_t rows, int64_t heads, int64_t batch,
                            int box_rows, bool* encoded) {
  *encoded = false;
  int64_t row_bytes, head_bytes, batch_bytes;
  if (!operand_strides(view, head_dim, rows, heads, batch, &row_bytes, &head_bytes,
                       &batch_bytes)) {
    return FA_OK;
  }
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(rows), cuuint64_t(heads),
                              cuuint64_t(batch)};
  const cuuint64_t strides[3] = {cuuint64_t(row_bytes), cuuint64_t(head_bytes),
                                 cuuint64_t(batch_bytes)};
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  if (const fa_status s = encode_operand(map, view, bf16, 4, dims, strides, box, element_strides))
    return s;
  *encoded = true;
  return FA_OK;
}

fa_status encode_permuted_maps(CUtensorMap* groups, CUtensorMap* halves,
                               const TensorView& view, bool bf16, int head_dim,
                               int64_t rows, int64_t heads, int64_t batch, bool* encoded) {
  *encoded = false;
  int64_t row_bytes, head_bytes, batch_bytes;
  if (!operand_strides(view, head_dim, rows, heads, batch, &row_bytes, &head_bytes,
                       &batch_bytes) ||
      !tma_stride(8 * row_bytes)) {
    return FA_OK;
  }
  {  // (dim, row, head, batch), boxes of 64 rows traversed 8 apart: 8 rows each
    const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(rows), cuuint64_t(heads),
                                cuuint64_t(batch)};
    const cuuint64_t strides[3] = {cuuint64_t(row_bytes), cuuint64_t(head_bytes),
                                   cuuint64_t(batch_bytes)};
    const cuuint32_t box[4] = {64, 64, 1, 1};
    const cuuint32_t element_strides[4] = {1, 8, 1, 1};
    if (const fa_status s =
            encode_operand(groups, view, bf16, 4, dims, strides, box, element_strides))
      return s;
  }
  {  // (dim, row / 8, row % 8 (+ up to 7 of a start offset), head, batch), boxes 8 x 8
    const cuuint64_t dims[5] = {cuuint64_t(head_dim), cuuint64_t((rows + 7) / 8), 16,
                                cuuint64_t(heads), cuuint64_t(batch)};
    const cuuint64_t strides[4] = {cuuint64_t(8 * row_bytes), cuuint64_t(row_bytes),
                                   cuuint64_t(head_bytes), cuuint64_t(batch_bytes)};
    const cuuint32_t box[5] = {64, 8, 8, 1, 1};
    const cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
    if (const fa_status s =
            encode_operand(halves, view, bf16, 5, dims, strides, box, element_strides))
      return s;
  }
  *encoded = true;
  return FA_OK;
}

fa_status encode_bias_map(CUtensorMap* map, const BiasView& bias, int64_t keys,
                          int64_t rows, int64_t heads, int64_t batch, int box_rows,
                          bool* encoded) {
  *encoded = false;
  const int64_t esize = bias.dtype == FA_FLOAT32 ? 4 : 2;
  // Broadcast dimensions come as size 1 (bias_broadcast): never stepped, they get a stride
  // the TMA accepts, whatever the caller's (0) was.
  const int64_t packed_row = (keys * esize + 15) / 16 * 16;
  const int64_t row_bytes = rows == 1 ? packed_row : bias.sr * esize;
  const int64_t head_bytes = heads == 1 ? packed_row : bias.sh * esize;
  const int64_t batch_bytes = batch == 1 ? packed_row : bias.sb * esize;
  if (reinterpret_cast<uintptr_t>(bias.ptr) % 16 != 0 || !tma_stride(row_bytes) ||
      !tma_stride(head_bytes) || !tma_stride(batch_bytes) || keys < 1 ||
      keys > (int64_t(1) << 32) || rows < 1 || rows > (int64_t(1) << 32)) {
    return FA_OK;
  }
  PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (const fa_status s = encode_function(&encode)) return s;

  const cuuint64_t dims[4] = {cuuint64_t(keys), cuuint64_t(rows), cuuint64_t(heads),
                              cuuint64_t(batch)};
  const cuuint64_t strides[3] = {cuuint64_t(row_bytes), cuuint64_t(head_bytes),
                                 cuuint64_t(batch_bytes)};
  const cuuint32_t box[4] = {cuuint32_t(128 / esize), cuuint32_t(rows == 1 ? 1 : box_rows), 1,
                             1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = bias.dtype == FA_FLOAT32    ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                                   : bias.dtype == FA_BFLOAT16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                               : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult result = encode(map, type, 4, bias.ptr, dims, strides, box, element_strides,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return fail(FA_ERR_CUDA,
                "cuda: cuTensorMapEncodeTiled refused the bias (error %d; dims %lld x %lld x "
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
