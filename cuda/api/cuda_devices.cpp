// cuda_devices.cpp: device count, ordinal and pointer checks through the CUDA runtime.
#include "api/cuda_devices.h"

#include <cuda_runtime_api.h>

#include <cinttypes>

#include "common/status.h"

namespace fa {

fa_status cuda_device_count(int32_t* count) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver ||
      status == cudaErrorStubLibrary) {
    // No GPU, no driver, or only the toolkit's stub driver: a CPU-only machine, not an error.
    (void)cudaGetLastError();
    *count = 0;
    return FA_OK;
  }
  FA_CUDA_CHECK(status);
  *count = devices;
  return FA_OK;
}

int32_t cached_cuda_device_count() {
  static const int32_t cached = [] {
    int32_t count = 0;
    if (cuda_device_count(&count) != FA_OK) {
      clear_error();  // a broken driver means "no CUDA" here, not a failed call
      return int32_t(0);
    }
    return count;
  }();
  return cached;
}

fa_status check_host_pointer(const char* name, uint64_t address) {
  cudaPointerAttributes attributes{};
  const cudaError_t status =
      cudaPointerGetAttributes(&attributes, reinterpret_cast<const void*>(address));
  if (status != cudaSuccess) {
    // CUDA cannot say (older drivers answer so for plain host memory): nothing to refuse.
    (void)cudaGetLastError();
    return FA_OK;
  }
  if (attributes.type == cudaMemoryTypeDevice) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: pointer is CUDA device memory on cuda:%d, tensor says cpu", name,
                attributes.device);
  }
  return FA_OK;  // unregistered or pinned host memory, or managed memory
}

fa_status check_cuda_ordinal(const char* name, int32_t device) {
  int32_t count = 0;
  if (const fa_status status = cuda_device_count(&count)) return status;
  if (count == 0) {
    return fail(FA_ERR_NO_DEVICE, "%s: cuda:%d requested, but no CUDA device is available", name,
                device);
  }
  if (device < 0 || device >= count) {
    return fail(FA_ERR_NO_DEVICE, "%s: CUDA device ordinal %d out of range (%d device%s)", name,
                device, count, count == 1 ? "" : "s");
  }
  return FA_OK;
}

fa_status check_device_pointer(const char* name, uint64_t address, int32_t device) {
  cudaPointerAttributes attributes{};
  const cudaError_t status =
      cudaPointerGetAttributes(&attributes, reinterpret_cast<const void*>(address));
  if (status == cudaErrorInvalidValue) {
    (void)cudaGetLastError();
    attributes.type = cudaMemoryTypeUnregistered;
  } else {
    FA_CUDA_CHECK(status);
  }
  switch (attributes.type) {
    case cudaMemoryTypeManaged:
      return FA_OK;
    case cudaMemoryTypeDevice:
      if (attributes.device != device) {
        return fail(FA_ERR_INVALID_ARGUMENT, "%s: pointer belongs to cuda:%d, tensor says cuda:%d",
                    name, attributes.device, device);
      }
      return FA_OK;
    case cudaMemoryTypeHost:
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: not a device pointer (0x%" PRIx64 " is pinned host memory)", name, address);
    default:
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: not a device pointer (0x%" PRIx64 " is not CUDA device memory)", name,
                  address);
  }
}

fa_status use_cuda_device(int32_t device) {
  FA_CUDA_CHECK(cudaSetDevice(device));
  return FA_OK;
}

fa_status copy_int32_to_host(int32_t device, void* stream, uint64_t source, int64_t count,
                             int32_t* host) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  FA_CUDA_CHECK(cudaSetDevice(device));
  FA_CUDA_CHECK(cudaMemcpyAsync(host, reinterpret_cast<const void*>(source),
                                size_t(count) * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                cuda_stream));
  FA_CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
  return FA_OK;
}

}  // namespace fa
