// kvcache.cpp: the KV-cache and merge ABI entry points: validate, then dispatch on the device.
#include <memory>

#include "api/abi_guard.h"
#include "api/cuda_devices.h"
#include "api/kvcache_validate.h"
#include "common/backends.h"
#include "common/status.h"

extern "C" {

FA_API int32_t fa_kvcache_forward(const fa_kvcache_args* args) {
  return fa::guarded("fa_kvcache_forward", [&]() -> fa_status {
    fa::KvCacheParams params;
    if (const fa_status s = fa::validate_kvcache(args, &params)) return s;
    if (params.device == FA_DEVICE_CPU) return fa::cpu_kvcache_forward(params);
    if (const fa_status s = fa::use_cuda_device(params.device)) return s;
    return fa::cuda_kvcache_forward(params);
  });
}

FA_API int32_t fa_kvcache_workspace_size(const fa_kvcache_args* args, uint64_t* bytes) {
  return fa::guarded("fa_kvcache_workspace_size", [&]() -> fa_status {
    if (bytes == nullptr) return fa::fail(FA_ERR_INVALID_ARGUMENT, "bytes: null pointer");
    *bytes = 0;
    fa::KvCacheParams params;
    if (const fa_status s = fa::validate_kvcache(args, &params)) return s;
    if (params.device == FA_DEVICE_CPU) return FA_OK;  // the CPU needs no caller scratch
    if (const fa_status s = fa::use_cuda_device(params.device)) return s;
    return fa::cuda_kvcache_workspace_size(params, bytes);
  });
}

FA_API int32_t fa_merge(const fa_merge_args* args) {
  return fa::guarded("fa_merge", [&]() -> fa_status {
    // MergeParams holds up to 256 parts: keep it off the (possibly small) caller stack.
    const auto params = std::make_unique<fa::MergeParams>();
    if (const fa_status s = fa::validate_merge(args, params.get())) return s;
    if (params->device == FA_DEVICE_CPU) return fa::cpu_merge(*params);
    if (const fa_status s = fa::use_cuda_device(params->device)) return s;
    return fa::cuda_merge(*params);
  });
}

}  // extern "C"
