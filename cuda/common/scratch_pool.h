// scratch_pool.h: stream-ordered device memory for the library's temporaries (the
// backward's workspace, aligned copies of unaligned operands).
//
// cudaMallocAsync's default pool has a release threshold of 0: at every synchronize it
// hands its free memory back to the driver, so the next call maps it again, on the host,
// while the GPU waits (tens of microseconds for a backward's dQ accumulator). The library's
// own pool per device keeps what it has reserved (at most the largest set of temporaries
// in use at once) for the life of the process, and is trimmed only when an allocation
// would otherwise fail.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "flashattn.h"

namespace fa {

// Allocates `bytes` on `stream` for use on `device` (the current device). Returns
// cudaErrorMemoryAllocation when the device has no room even after trimming the pool.
cudaError_t scratch_allocate(void** ptr, uint64_t bytes, int device, cudaStream_t stream);

// Returns memory from scratch_allocate, stream-ordered after the work already on `stream`.
cudaError_t scratch_free(void* ptr, cudaStream_t stream);

// A library-allocated temporary, returned to the pool on its stream when it goes out of
// scope (after the work queued on that stream by then).
class StreamBuffer {
 public:
  StreamBuffer(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (ptr_ != nullptr) (void)scratch_free(ptr_, stream_);
  }
  // cudaErrorMemoryAllocation when the device has no room (see scratch_allocate).
  cudaError_t allocate(uint64_t bytes) { return scratch_allocate(&ptr_, bytes, device_, stream_); }
  void* get() const { return ptr_; }

 private:
  int device_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

}  // namespace fa
