// scratch_pool.cpp: one retaining cudaMemPool per device (see common/scratch_pool.h).
#include "common/scratch_pool.h"

#include <cstdint>
#include <mutex>

namespace fa {
namespace {

constexpr int kMaxDevices = 64;

// The pool of `device`, created on first use; nullptr where it cannot be made (the
// default pool is used then).
cudaMemPool_t pool_of(int device) {
  static std::mutex mutex;
  static cudaMemPool_t pools[kMaxDevices] = {};
  static bool tried[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (!tried[device]) {
    tried[device] = true;
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool = nullptr;
    if (cudaMemPoolCreate(&pool, &props) == cudaSuccess) {
      uint64_t keep_all = UINT64_MAX;
      if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all) ==
          cudaSuccess) {
        pools[device] = pool;
      } else {
        (void)cudaMemPoolDestroy(pool);
      }
    }
    (void)cudaGetLastError();  // a failed creation leaves the default pool in use
  }
  return pools[device];
}

}  // namespace

cudaError_t scratch_allocate(void** ptr, uint64_t bytes, int device, cudaStream_t stream) {
  cudaMemPool_t pool = pool_of(device);
  if (pool == nullptr) return cudaMallocAsync(ptr, size_t(bytes), stream);
  cudaError_t status = cudaMallocFromPoolAsync(ptr, size_t(bytes), pool, stream);
  if (status == cudaErrorMemoryAllocation) {
    // Memory this pool holds but nothing uses may be what the device lacks.
    (void)cudaGetLastError();
    if (cudaMemPoolTrimTo(pool, 0) == cudaSuccess) {
      status = cudaMallocFromPoolAsync(ptr, size_t(bytes), pool, stream);
    }
  }
  return status;
}

cudaError_t scratch_free(void* ptr, cudaStream_t stream) { return cudaFreeAsync(ptr, stream); }

}  // namespace fa
