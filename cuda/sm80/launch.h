// launch.h: host-side helpers shared by the per-bucket translation units.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "common/status.h"
#include "sm80/kernel_params.h"

// Kernel launch; the CPU emulator (selftest/emu) runs the same launches on fibers.
#if defined(FA_EMULATOR)
#define FA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::emu::launch(kernel, dim3(grid), dim3(block), smem, __VA_ARGS__)
#else
#define FA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

namespace fa {
namespace sm80 {

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

}  // namespace sm80
}  // namespace fa
