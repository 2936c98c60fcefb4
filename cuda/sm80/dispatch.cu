// dispatch.cu: the sm80 backend's entry points. Checks the device, turns the validated
// AttentionParams into KernelParams, picks the head-dim bucket and launches.
//
// Buckets: head_dim <= 64, <= 128, <= 256 (a smaller head dim runs in the next bucket up,
// zero-filled on load and masked on store). Causal, bias, dropout, nested batches and GQA
// are runtime flags of the same kernels.
#include <cuda_runtime.h>

#include <cmath>
#include <mutex>

#include "common/philox.h"
#include "common/status.h"
#include "sm80/bwd_plan.h"
#include "sm80/launch.h"
#include "sm80/params_build.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

namespace fa {
namespace {

using sm80::KernelParams;
using sm80::LaunchContext;
using sm80::make_params;

struct DeviceProps {
  int major = 0, minor = 0;
  int max_smem_optin = 0;
};

// Compute capability and shared memory limit, queried once per device.
fa_status device_props(int device, DeviceProps* out) {
  static std::mutex mutex;
  static DeviceProps cache[64];
  static bool known[64] = {};
  const bool cacheable = device >= 0 && device < 64;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mutex);
    if (known[device]) {
      *out = cache[device];
      return FA_OK;
    }
  }
  DeviceProps props;
  FA_CUDA_CHECK(cudaDeviceGetAttribute(&props.major, cudaDevAttrComputeCapabilityMajor, device));
  FA_CUDA_CHECK(cudaDeviceGetAttribute(&props.minor, cudaDevAttrComputeCapabilityMinor, device));
  FA_CUDA_CHECK(cudaDeviceGetAttribute(&props.max_smem_optin,
                                       cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mutex);
    cache[device] = props;
    known[device] = true;
  }
  *out = props;
  return FA_OK;
}

// Makes `device` current for the duration of a call, restoring the caller's device.
class DeviceGuard {
 public:
  fa_status enter(int device) {
    FA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      FA_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
    return FA_OK;
  }
  ~DeviceGuard() {
    if (switched_) (void)cudaSetDevice(previous_);
  }

 private:
  int previous_ = 0;
  bool switched_ = false;
};

fa_status prepare(const AttentionParams& ap, DeviceGuard* guard, LaunchContext* ctx) {
  if (const fa_status s = guard->enter(ap.device)) return s;
  DeviceProps props;
  if (const fa_status s = device_props(ap.device, &props)) return s;
  if (props.major < 8) {
    return fail(FA_ERR_UNSUPPORTED,
                "q: device %d has compute capability %d.%d; the CUDA kernels need 8.0 or newer",
                ap.device, props.major, props.minor);
  }
  if (ap.dtype != FA_FLOAT16 && ap.dtype != FA_BFLOAT16) {
    return fail(FA_ERR_INVALID_ARGUMENT, "q: dtype %d is not float16 or bfloat16", ap.dtype);
  }
  if (ap.head_dim < 8 || ap.head_dim > 256 || ap.head_dim % 8 != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "q: head dim %lld is not a multiple of 8 in [8, 256]",
                static_cast<long long>(ap.head_dim));
  }
  if (ap.heads_q > 65535 || ap.batch > 65535) {
    return fail(FA_ERR_UNSUPPORTED, "q: %lld heads x %lld sequences exceed the CUDA grid (65535)",
                static_cast<long long>(ap.heads_q), static_cast<long long>(ap.batch));
  }
  if (ap.seqlen_q > (int64_t(1) << 30) || ap.seqlen_k > (int64_t(1) << 30)) {
    return fail(FA_ERR_UNSUPPORTED, "q: sequence lengths above 2^30 are not supported");
  }
  ctx->device = ap.device;
  ctx->max_smem_optin = props.max_smem_optin;
  ctx->compute_capability = props.major * 10 + props.minor;
  ctx->stream = static_cast<cudaStream_t>(ap.stream);
  return FA_OK;
}

}  // namespace

fa_status sm80_forward(const AttentionParams& ap) {
  DeviceGuard guard;
  LaunchContext ctx;
  if (const fa_status s = prepare(ap, &guard, &ctx)) return s;
  if (ap.batch == 0 || ap.heads_q == 0 || ap.seqlen_q == 0) return FA_OK;
  const KernelParams p = make_params(ap);
  const bool bf16 = ap.dtype == FA_BFLOAT16;
  // Hopper: the wgmma/TMA kernels take the cases they support (sm90/dispatch.cu).
  bool on_sm90 = false;
  if (const fa_status s = sm90::try_forward(p, bf16, ctx, &on_sm90)) return s;
  if (on_sm90) return FA_OK;
  if (p.head_dim <= 64) return sm80::launch_fwd_d64(p, bf16, ctx);
  if (p.head_dim <= 128) return sm80::launch_fwd_d128(p, bf16, ctx);
  return sm80::launch_fwd_d256(p, bf16, ctx);
}

fa_status sm80_backward_workspace_size(const AttentionParams& ap, uint64_t* bytes) {
  *bytes = sm80::plan_backward(make_params(ap), ap.deterministic).total_bytes;
  return FA_OK;
}

fa_status sm80_backward(const AttentionParams& ap) {
  DeviceGuard guard;
  LaunchContext ctx;
  if (const fa_status s = prepare(ap, &guard, &ctx)) return s;
  KernelParams p = make_params(ap);
  if (ap.batch == 0 || ap.heads_q == 0) return FA_OK;
  return sm80::run_backward(p, ap.dtype == FA_BFLOAT16, ap.deterministic, ap.workspace,
                            ap.workspace_bytes, ctx);
}

}  // namespace fa
