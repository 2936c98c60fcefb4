// attention.cpp: the attention ABI entry points: validate, then dispatch on the device.
#include "api/abi_guard.h"
#include "api/cuda_devices.h"
#include "api/validate.h"
#include "common/backends.h"
#include "common/status.h"

extern "C" {

FA_API int32_t fa_forward(const fa_forward_args* args) {
  return fa::guarded("fa_forward", [&]() -> fa_status {
    fa::AttentionParams params;
    if (const fa_status s = fa::validate_forward(args, &params)) return s;
    if (params.device == FA_DEVICE_CPU) return fa::cpu_forward(params);
    if (const fa_status s = fa::use_cuda_device(params.device)) return s;
    return fa::cuda_forward(params);
  });
}

FA_API int32_t fa_backward(const fa_backward_args* args) {
  return fa::guarded("fa_backward", [&]() -> fa_status {
    fa::AttentionParams params;
    if (const fa_status s = fa::validate_backward(args, &params)) return s;
    if (params.device == FA_DEVICE_CPU) return fa::cpu_backward(params);
    if (const fa_status s = fa::use_cuda_device(params.device)) return s;
    return fa::cuda_backward(params);
  });
}

FA_API int32_t fa_backward_workspace_size(const fa_backward_args* args, uint64_t* bytes) {
  return fa::guarded("fa_backward_workspace_size", [&]() -> fa_status {
    if (bytes == nullptr) return fa::fail(FA_ERR_INVALID_ARGUMENT, "bytes: null pointer");
    fa::AttentionParams params;
    if (const fa_status s = fa::validate_backward(args, &params)) return s;
    if (params.device == FA_DEVICE_CPU) {
      *bytes = 0;  // the CPU backend needs no caller-provided scratch
      return FA_OK;
    }
    if (const fa_status s = fa::use_cuda_device(params.device)) return s;
    return fa::cuda_backward_workspace_size(params, bytes);
  });
}

}  // extern "C"
