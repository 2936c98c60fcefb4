// strided_copy.cu: the 4-d gather/scatter kernel behind strided_copy.h.
// One thread per element in a grid-stride loop; indices and offsets in 64 bits, so any view
// the validation accepts (element offsets below 2^62) is addressed without wrapping.
#include <cuda_runtime.h>

#include "api/strided_copy.h"
#include "common/status.h"

namespace fa {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride beyond this

struct CopyArgs {
  const uint16_t* src;
  uint16_t* dst;
  int64_t shape[4];
  int64_t src_stride[4];
  int64_t dst_stride[4];
  int64_t count;
};

__global__ void __launch_bounds__(kThreads) strided_copy_kernel(const CopyArgs a) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.count; i += step) {
    int64_t rest = i;
    int64_t src_off = 0, dst_off = 0;
#pragma unroll
    for (int d = 3; d >= 0; --d) {
      const int64_t index = rest % a.shape[d];
      rest /= a.shape[d];
      src_off += index * a.src_stride[d];
      dst_off += index * a.dst_stride[d];
    }
    a.dst[dst_off] = a.src[src_off];
  }
}

}  // namespace

fa_status strided_copy_2byte(const char* name, const StridedView& src, const StridedView& dst,
                             void* stream) {
  CopyArgs args;
  args.src = static_cast<const uint16_t*>(src.ptr);
  args.dst = static_cast<uint16_t*>(dst.ptr);
  args.count = 1;
  for (int d = 0; d < 4; ++d) {
    if (src.shape[d] != dst.shape[d]) {
      return fail(FA_ERR_INTERNAL, "%s: strided copy between different shapes", name);
    }
    if (src.shape[d] == 0) return FA_OK;
    args.shape[d] = src.shape[d];
    args.src_stride[d] = src.stride[d];
    args.dst_stride[d] = dst.stride[d];
    args.count *= src.shape[d];  // fits: the caller allocated count * 2 bytes
  }
  const int64_t blocks_needed = (args.count + kThreads - 1) / kThreads;
  const unsigned blocks = unsigned(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  strided_copy_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(args);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

}  // namespace fa
