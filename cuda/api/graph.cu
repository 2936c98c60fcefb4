// graph.cu: CUDA graph capture and replay (fa_graph_*): a decode step's launches captured
// once on a stream, then replayed with one launch. Host code only.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "api/abi_guard.h"
#include "api/cuda_devices.h"
#include "common/status.h"

namespace {

fa_status use_device(int32_t device) {
  if (const fa_status s = fa::check_cuda_ordinal("device", device)) return s;
  FA_CUDA_CHECK(cudaSetDevice(device));
  return FA_OK;
}

// The legacy default stream synchronizes with every other stream and cannot be captured.
fa_status check_capturable(uint64_t stream) {
  if (stream == 0 || stream == reinterpret_cast<uintptr_t>(cudaStreamLegacy)) {
    return fa::fail(FA_ERR_INVALID_ARGUMENT,
                    "stream: the legacy default stream cannot be captured (create a stream)");
  }
  return FA_OK;
}

cudaStream_t as_stream(uint64_t value) {
  return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(value));
}

cudaGraphExec_t as_graph(uint64_t value) {
  return reinterpret_cast<cudaGraphExec_t>(static_cast<uintptr_t>(value));
}

}  // namespace

extern "C" {

FA_API int32_t fa_graph_begin_capture(int32_t device, uint64_t stream) {
  return fa::guarded("fa_graph_begin_capture", [&]() -> fa_status {
    if (const fa_status s = check_capturable(stream)) return s;
    if (const fa_status s = use_device(device)) return s;
    // Thread-local: only this thread's unsafe calls (sync, malloc) break the capture, so
    // other threads using the library meanwhile are unaffected.
    FA_CUDA_CHECK(cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeThreadLocal));
    return FA_OK;
  });
}

FA_API int32_t fa_graph_end_capture(int32_t device, uint64_t stream, uint64_t* graph) {
  return fa::guarded("fa_graph_end_capture", [&]() -> fa_status {
    if (graph == nullptr) return fa::fail(FA_ERR_INVALID_ARGUMENT, "graph: null pointer");
    *graph = 0;
    if (const fa_status s = check_capturable(stream)) return s;
    if (const fa_status s = use_device(device)) return s;
    cudaGraph_t captured = nullptr;
    FA_CUDA_CHECK(cudaStreamEndCapture(as_stream(stream), &captured));
    if (captured == nullptr) {
      return fa::fail(FA_ERR_CUDA, "stream: the capture produced no graph (was it invalidated?)");
    }
    cudaGraphExec_t executable = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&executable, captured, 0);
    // The executable graph keeps what it needs; the template is not needed any more.
    cudaGraphDestroy(captured);
    FA_CUDA_CHECK(instantiated);
    *graph = reinterpret_cast<uintptr_t>(executable);
    return FA_OK;
  });
}

FA_API int32_t fa_graph_launch(int32_t device, uint64_t graph, uint64_t stream) {
  return fa::guarded("fa_graph_launch", [&]() -> fa_status {
    if (graph == 0) return fa::fail(FA_ERR_INVALID_ARGUMENT, "graph: null handle");
    if (const fa_status s = use_device(device)) return s;
    FA_CUDA_CHECK(cudaGraphLaunch(as_graph(graph), as_stream(stream)));
    return FA_OK;
  });
}

FA_API int32_t fa_graph_destroy(int32_t device, uint64_t graph) {
  return fa::guarded("fa_graph_destroy", [&]() -> fa_status {
    if (graph == 0) return fa::fail(FA_ERR_INVALID_ARGUMENT, "graph: null handle");
    if (const fa_status s = use_device(device)) return s;
    FA_CUDA_CHECK(cudaGraphExecDestroy(as_graph(graph)));
    return FA_OK;
  });
}

}  // extern "C"
