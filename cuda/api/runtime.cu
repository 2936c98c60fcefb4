// runtime.cu: device, memory, stream and event ABI functions (host code only).
// Every function validates the ordinal and makes that device current before acting, so
// callers never depend on which device a thread last used.
#include <cuda_runtime_api.h>

#include <cinttypes>
#include <cstring>

#include "api/abi_guard.h"
#include "api/cuda_devices.h"
#include "common/status.h"

namespace {

fa_status use_device(int32_t device) {
  if (const fa_status s = fa::check_cuda_ordinal("device", device)) return s;
  FA_CUDA_CHECK(cudaSetDevice(device));
  return FA_OK;
}

fa_status null_pointer(const char* name) {
  return fa::fail(FA_ERR_INVALID_ARGUMENT, "%s: null pointer", name);
}

template <class Handle>
Handle as_handle(uint64_t value) {
  return reinterpret_cast<Handle>(static_cast<uintptr_t>(value));
}

void* as_pointer(uint64_t address) { return reinterpret_cast<void*>(static_cast<uintptr_t>(address)); }

}  // namespace

extern "C" {

// ---- devices ----

FA_API int32_t fa_device_count(int32_t* count) {
  return fa::guarded("fa_device_count", [&]() -> fa_status {
    if (count == nullptr) return null_pointer("count");
    return fa::cuda_device_count(count);
  });
}

FA_API int32_t fa_device_info_get(int32_t device, fa_device_info* info) {
  return fa::guarded("fa_device_info_get", [&]() -> fa_status {
    if (info == nullptr) return null_pointer("info");
    if (const fa_status s = use_device(device)) return s;
    cudaDeviceProp properties;
    FA_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
    int clock_khz = 0;
    FA_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
    size_t free_bytes = 0, total_bytes = 0;
    FA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));

    fa_device_info result;
    std::memset(&result, 0, sizeof(result));
    std::strncpy(result.name, properties.name, sizeof(result.name) - 1);
    result.major = properties.major;
    result.minor = properties.minor;
    result.multiprocessors = properties.multiProcessorCount;
    result.total_memory = properties.totalGlobalMem;
    result.free_memory = free_bytes;
    result.l2_cache_bytes = uint64_t(properties.l2CacheSize);
    result.max_shared_per_block = int32_t(properties.sharedMemPerBlockOptin);
    result.clock_khz = clock_khz;
    *info = result;
    return FA_OK;
  });
}

FA_API int32_t fa_device_synchronize(int32_t device) {
  return fa::guarded("fa_device_synchronize", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    FA_CUDA_CHECK(cudaDeviceSynchronize());
    return FA_OK;
  });
}

// ---- device memory ----

FA_API int32_t fa_malloc(int32_t device, uint64_t bytes, uint64_t* ptr) {
  return fa::guarded("fa_malloc", [&]() -> fa_status {
    if (ptr == nullptr) return null_pointer("ptr");
    *ptr = 0;
    if (const fa_status s = use_device(device)) return s;
    if (bytes == 0) return FA_OK;  // nothing to allocate: address 0
    void* address = nullptr;
    const cudaError_t status = cudaMalloc(&address, bytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return fa::fail(FA_ERR_OUT_OF_MEMORY,
                      "bytes: out of memory allocating %" PRIu64 " bytes on cuda:%d", bytes,
                      device);
    }
    FA_CUDA_CHECK(status);
    *ptr = reinterpret_cast<uintptr_t>(address);
    return FA_OK;
  });
}

FA_API int32_t fa_free(int32_t device, uint64_t ptr) {
  return fa::guarded("fa_free", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (ptr == 0) return FA_OK;
    FA_CUDA_CHECK(cudaFree(as_pointer(ptr)));
    return FA_OK;
  });
}

// Synchronous copies on the legacy default stream: they do not wait for work queued on
// non-blocking streams, so callers synchronize those first.
FA_API int32_t fa_memcpy_htod(int32_t device, uint64_t dst, const void* src, uint64_t bytes) {
  return fa::guarded("fa_memcpy_htod", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (bytes == 0) return FA_OK;
    if (dst == 0) return null_pointer("dst");
    if (src == nullptr) return null_pointer("src");
    FA_CUDA_CHECK(cudaMemcpy(as_pointer(dst), src, bytes, cudaMemcpyHostToDevice));
    return FA_OK;
  });
}

FA_API int32_t fa_memcpy_dtoh(int32_t device, void* dst, uint64_t src, uint64_t bytes) {
  return fa::guarded("fa_memcpy_dtoh", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (bytes == 0) return FA_OK;
    if (dst == nullptr) return null_pointer("dst");
    if (src == 0) return null_pointer("src");
    FA_CUDA_CHECK(cudaMemcpy(dst, as_pointer(src), bytes, cudaMemcpyDeviceToHost));
    return FA_OK;
  });
}

FA_API int32_t fa_memcpy_dtod(int32_t device, uint64_t dst, uint64_t src, uint64_t bytes) {
  return fa::guarded("fa_memcpy_dtod", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (bytes == 0) return FA_OK;
    if (dst == 0) return null_pointer("dst");
    if (src == 0) return null_pointer("src");
    FA_CUDA_CHECK(cudaMemcpy(as_pointer(dst), as_pointer(src), bytes, cudaMemcpyDeviceToDevice));
    return FA_OK;
  });
}

FA_API int32_t fa_memset(int32_t device, uint64_t dst, int32_t byte_value, uint64_t bytes) {
  return fa::guarded("fa_memset", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (bytes == 0) return FA_OK;
    if (dst == 0) return null_pointer("dst");
    FA_CUDA_CHECK(cudaMemset(as_pointer(dst), byte_value, bytes));
    return FA_OK;
  });
}

// ---- streams and events ----

FA_API int32_t fa_stream_create(int32_t device, uint64_t* stream) {
  return fa::guarded("fa_stream_create", [&]() -> fa_status {
    if (stream == nullptr) return null_pointer("stream");
    *stream = 0;
    if (const fa_status s = use_device(device)) return s;
    // Non-blocking: work on it never serializes with the legacy default stream.
    cudaStream_t created = nullptr;
    FA_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    *stream = reinterpret_cast<uintptr_t>(created);
    return FA_OK;
  });
}

FA_API int32_t fa_stream_destroy(int32_t device, uint64_t stream) {
  return fa::guarded("fa_stream_destroy", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (stream == 0) {
      return fa::fail(FA_ERR_INVALID_ARGUMENT,
                      "stream: 0 is the default stream and cannot be destroyed");
    }
    FA_CUDA_CHECK(cudaStreamDestroy(as_handle<cudaStream_t>(stream)));
    return FA_OK;
  });
}

FA_API int32_t fa_stream_synchronize(int32_t device, uint64_t stream) {
  return fa::guarded("fa_stream_synchronize", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    FA_CUDA_CHECK(cudaStreamSynchronize(as_handle<cudaStream_t>(stream)));
    return FA_OK;
  });
}

FA_API int32_t fa_event_create(int32_t device, uint64_t* event) {
  return fa::guarded("fa_event_create", [&]() -> fa_status {
    if (event == nullptr) return null_pointer("event");
    *event = 0;
    if (const fa_status s = use_device(device)) return s;
    cudaEvent_t created = nullptr;
    FA_CUDA_CHECK(cudaEventCreate(&created));  // default flags: timing enabled
    *event = reinterpret_cast<uintptr_t>(created);
    return FA_OK;
  });
}

FA_API int32_t fa_event_destroy(int32_t device, uint64_t event) {
  return fa::guarded("fa_event_destroy", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (event == 0) return null_pointer("event");
    FA_CUDA_CHECK(cudaEventDestroy(as_handle<cudaEvent_t>(event)));
    return FA_OK;
  });
}

FA_API int32_t fa_event_record(int32_t device, uint64_t event, uint64_t stream) {
  return fa::guarded("fa_event_record", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (event == 0) return null_pointer("event");
    FA_CUDA_CHECK(cudaEventRecord(as_handle<cudaEvent_t>(event), as_handle<cudaStream_t>(stream)));
    return FA_OK;
  });
}

FA_API int32_t fa_event_synchronize(int32_t device, uint64_t event) {
  return fa::guarded("fa_event_synchronize", [&]() -> fa_status {
    if (const fa_status s = use_device(device)) return s;
    if (event == 0) return null_pointer("event");
    FA_CUDA_CHECK(cudaEventSynchronize(as_handle<cudaEvent_t>(event)));
    return FA_OK;
  });
}

FA_API int32_t fa_event_elapsed_ms(int32_t device, uint64_t start, uint64_t end, float* ms) {
  return fa::guarded("fa_event_elapsed_ms", [&]() -> fa_status {
    if (ms == nullptr) return null_pointer("ms");
    if (const fa_status s = use_device(device)) return s;
    if (start == 0) return null_pointer("start");
    if (end == 0) return null_pointer("end");
    FA_CUDA_CHECK(cudaEventElapsedTime(ms, as_handle<cudaEvent_t>(start),
                                       as_handle<cudaEvent_t>(end)));
    return FA_OK;
  });
}

}  // extern "C"
