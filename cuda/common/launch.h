// launch.h: what a kernel launcher needs besides the kernel parameters, shared by the
// per-bucket translation units of sm80 and sm90.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "common/status.h"
#include "common/kernel_params.h"

#define FA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)

namespace fa {

// The device a call runs on, as the dispatcher (cuda/api/cuda_dispatch.cu) found it.
struct LaunchContext {
  int device = 0;
  int max_smem_optin = 0;      // bytes per block
  int compute_capability = 0;  // major * 10 + minor
  int multiprocessors = 0;
  cudaStream_t stream = nullptr;
};

// Raises kKernel's dynamic shared memory limit to `bytes` (the most it is ever launched
// with on this device) once per device; the kernel itself keys the cache.
template <auto kKernel>
fa_status ensure_smem(int device, int bytes) {
  static std::atomic<uint64_t> done{0};  // one bit per device ordinal < 64
  const uint64_t bit = device >= 0 && device < 64 ? (uint64_t(1) << device) : 0;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit) != 0) return FA_OK;
  if (bytes > 48 * 1024) {
    FA_CUDA_CHECK(
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  }
  if (bit != 0) done.fetch_or(bit, std::memory_order_acq_rel);
  return FA_OK;
}

inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// A grid with no blocks (e.g. every sequence of a nested batch empty): nothing to launch.
inline bool empty_grid(const dim3& grid) { return grid.x == 0 || grid.y == 0 || grid.z == 0; }

}  // namespace fa
