// no_cuda.cpp: the CUDA side of the library in a build without the CUDA toolkit
// (`make lib-cpu`, which `make lib` picks where no nvcc is found). It stands in for the
// CUDA-only sources (CUDA_CPP_SRCS in the Makefile, every .cu file): the device count is 0
// (FA_OK), and every function that needs a CUDA device returns FA_ERR_NO_DEVICE after the
// same argument checks as the CUDA build's (runtime.cu, graph.cu). Validation and the CPU
// backend are the same objects as in the full library. Needs no CUDA header.
#include <cstdint>

#include "api/abi_guard.h"
#include "api/cuda_devices.h"
#include "common/backends.h"
#include "common/status.h"

namespace fa {
namespace {

fa_status no_cuda(const char* name, int32_t device) {
  return fail(FA_ERR_NO_DEVICE,
              "%s: cuda:%d requested, but no CUDA device is available (this library was built "
              "without CUDA, `make lib-cpu`; build it with nvcc for GPU support)",
              name, device);
}

// The CUDA backends are reached only after validation accepted a CUDA device, which this
// build never does; these answer like a device that vanished in between.
fa_status no_cuda_backend(const char* function) {
  return fail(FA_ERR_NO_DEVICE, "%s: this library was built without CUDA (`make lib-cpu`)",
              function);
}

}  // namespace

// ---- cuda_devices.h ----

fa_status cuda_device_count(int32_t* count) {
  *count = 0;
  return FA_OK;
}

int32_t cached_cuda_device_count() { return 0; }

fa_status check_host_pointer(const char*, uint64_t) { return FA_OK; }

fa_status check_cuda_ordinal(const char* name, int32_t device) { return no_cuda(name, device); }

fa_status check_device_pointer(const char* name, uint64_t, int32_t device) {
  return no_cuda(name, device);
}

fa_status use_cuda_device(int32_t device) { return no_cuda("device", device); }

fa_status copy_int32_to_host(int32_t device, void*, uint64_t, int64_t, int32_t*) {
  return no_cuda("device", device);
}

// ---- backends.h: the CUDA backends ----

fa_status cuda_forward(const AttentionParams&) { return no_cuda_backend("fa_forward"); }

fa_status cuda_backward(const AttentionParams&) { return no_cuda_backend("fa_backward"); }

fa_status cuda_backward_workspace_size(const AttentionParams&, uint64_t* bytes) {
  *bytes = 0;
  return no_cuda_backend("fa_backward_workspace_size");
}

fa_status cuda_kvcache_forward(const KvCacheParams&) {
  return no_cuda_backend("fa_kvcache_forward");
}

fa_status cuda_kvcache_workspace_size(const KvCacheParams&, uint64_t* bytes) {
  *bytes = 0;
  return no_cuda_backend("fa_kvcache_workspace_size");
}

fa_status cuda_merge(const MergeParams&) { return no_cuda_backend("fa_merge"); }

}  // namespace fa

namespace {

fa_status use_device(int32_t device) { return fa::check_cuda_ordinal("device", device); }

fa_status null_pointer(const char* name) {
  return fa::fail(FA_ERR_INVALID_ARGUMENT, "%s: null pointer", name);
}

// graph.cu's check, with cudaStreamLegacy's value (the handle 0x1).
fa_status check_capturable(uint64_t stream) {
  if (stream == 0 || stream == 1) {
    return fa::fail(FA_ERR_INVALID_ARGUMENT,
                    "stream: the legacy default stream cannot be captured (create a stream)");
  }
  return FA_OK;
}

}  // namespace

extern "C" {

// ---- runtime.cu: devices, memory, streams, events ----

FA_API int32_t fa_device_count(int32_t* count) {
  return fa::guarded("fa_device_count", [&]() -> fa_status {
    if (count == nullptr) return null_pointer("count");
    return fa::cuda_device_count(count);
  });
}

FA_API int32_t fa_device_info_get(int32_t device, fa_device_info* info) {
  return fa::guarded("fa_device_info_get", [&]() -> fa_status {
    if (info == nullptr) return null_pointer("info");
    return use_device(device);
  });
}

FA_API int32_t fa_device_synchronize(int32_t device) {
  return fa::guarded("fa_device_synchronize", [&]() { return use_device(device); });
}

FA_API int32_t fa_malloc(int32_t device, uint64_t, uint64_t* ptr) {
  return fa::guarded("fa_malloc", [&]() -> fa_status {
    if (ptr == nullptr) return null_pointer("ptr");
    *ptr = 0;
    return use_device(device);
  });
}

FA_API int32_t fa_free(int32_t device, uint64_t) {
  return fa::guarded("fa_free", [&]() { return use_device(device); });
}

FA_API int32_t fa_memcpy_htod(int32_t device, uint64_t, const void*, uint64_t) {
  return fa::guarded("fa_memcpy_htod", [&]() { return use_device(device); });
}

FA_API int32_t fa_memcpy_dtoh(int32_t device, void*, uint64_t, uint64_t) {
  return fa::guarded("fa_memcpy_dtoh", [&]() { return use_device(device); });
}

FA_API int32_t fa_memcpy_dtod(int32_t device, uint64_t, uint64_t, uint64_t) {
  return fa::guarded("fa_memcpy_dtod", [&]() { return use_device(device); });
}

FA_API int32_t fa_memset(int32_t device, uint64_t, int32_t, uint64_t) {
  return fa::guarded("fa_memset", [&]() { return use_device(device); });
}

FA_API int32_t fa_stream_create(int32_t device, uint64_t* stream) {
  return fa::guarded("fa_stream_create", [&]() -> fa_status {
    if (stream == nullptr) return null_pointer("stream");
    *stream = 0;
    return use_device(device);
  });
}

FA_API int32_t fa_stream_destroy(int32_t device, uint64_t) {
  return fa::guarded("fa_stream_destroy", [&]() { return use_device(device); });
}

FA_API int32_t fa_stream_synchronize(int32_t device, uint64_t) {
  return fa::guarded("fa_stream_synchronize", [&]() { return use_device(device); });
}

FA_API int32_t fa_event_create(int32_t device, uint64_t* event) {
  return fa::guarded("fa_event_create", [&]() -> fa_status {
    if (event == nullptr) return null_pointer("event");
    *event = 0;
    return use_device(device);
  });
}

FA_API int32_t fa_event_destroy(int32_t device, uint64_t) {
  return fa::guarded("fa_event_destroy", [&]() { return use_device(device); });
}

FA_API int32_t fa_event_record(int32_t device, uint64_t, uint64_t) {
  return fa::guarded("fa_event_record", [&]() { return use_device(device); });
}

FA_API int32_t fa_event_synchronize(int32_t device, uint64_t) {
  return fa::guarded("fa_event_synchronize", [&]() { return use_device(device); });
}

FA_API int32_t fa_event_elapsed_ms(int32_t device, uint64_t, uint64_t, float* ms) {
  return fa::guarded("fa_event_elapsed_ms", [&]() -> fa_status {
    if (ms == nullptr) return null_pointer("ms");
    return use_device(device);
  });
}

// ---- graph.cu: CUDA graphs ----

FA_API int32_t fa_graph_begin_capture(int32_t device, uint64_t stream) {
  return fa::guarded("fa_graph_begin_capture", [&]() -> fa_status {
    if (const fa_status s = check_capturable(stream)) return s;
    return use_device(device);
  });
}

FA_API int32_t fa_graph_end_capture(int32_t device, uint64_t stream, uint64_t* graph) {
  return fa::guarded("fa_graph_end_capture", [&]() -> fa_status {
    if (graph == nullptr) return null_pointer("graph");
    *graph = 0;
    if (const fa_status s = check_capturable(stream)) return s;
    return use_device(device);
  });
}

FA_API int32_t fa_graph_launch(int32_t device, uint64_t graph, uint64_t) {
  return fa::guarded("fa_graph_launch", [&]() -> fa_status {
    if (graph == 0) return fa::fail(FA_ERR_INVALID_ARGUMENT, "graph: null handle");
    return use_device(device);
  });
}

FA_API int32_t fa_graph_destroy(int32_t device, uint64_t graph) {
  return fa::guarded("fa_graph_destroy", [&]() -> fa_status {
    if (graph == 0) return fa::fail(FA_ERR_INVALID_ARGUMENT, "graph: null handle");
    return use_device(device);
  });
}

}  // extern "C"
