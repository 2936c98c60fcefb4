// cuda_dispatch.cu: the CUDA backend's one dispatcher. Checks the device, turns the
// validated AttentionParams into KernelParams (common/kernel_params_build.h) and picks,
// per case, the architecture (sm90 where the device is compute capability 9.0, the case is
// one sm90 takes and its launcher accepts the operands; else sm80) and the head-dim bucket.
// sm80/ and sm90/ know nothing of each other; the backward's steps around its main kernel
// are in cuda_backward.cu.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "api/cuda_dispatch.h"
#include "api/cuda_steps.h"
#include "common/bwd_plan.h"
#include "common/kernel_params_build.h"
#include "common/launch.h"
#include "common/status.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

namespace fa {
namespace {

struct DeviceProps {
  int major = 0, minor = 0;
  int max_smem_optin = 0;
  int multiprocessors = 0;
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
  FA_CUDA_CHECK(cudaDeviceGetAttribute(&props.multiprocessors,
                                       cudaDevAttrMultiProcessorCount, device));
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mutex);
    cache[device] = props;
    known[device] = true;
  }
  *out = props;
  return FA_OK;
}

}  // namespace

fa_status launch_context(int device, void* stream, LaunchContext* ctx) {
  DeviceProps props;
  if (const fa_status s = device_props(device, &props)) return s;
  if (props.major < 8) {
    return fail(FA_ERR_UNSUPPORTED,
                "q: device %d has compute capability %d.%d; the CUDA kernels need 8.0 or newer",
                device, props.major, props.minor);
  }
  ctx->device = device;
  ctx->max_smem_optin = props.max_smem_optin;
  ctx->compute_capability = props.major * 10 + props.minor;
  ctx->multiprocessors = props.multiprocessors;
  ctx->stream = static_cast<cudaStream_t>(stream);
  return FA_OK;
}

namespace {

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
  if (const fa_status s = launch_context(ap.device, ap.stream, ctx)) return s;
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
  return FA_OK;
}

// Whether the sm90 kernels may run at all: a compute capability 9.0 device (the code is
// sm_90a) and no FLASHATTN_SM90=0 in the environment (read once; sends everything to sm80
// for A/B timing and the A100-path tests).
bool sm90_enabled(const LaunchContext& ctx) {
  static const bool enabled = [] {
    const char* value = std::getenv("FLASHATTN_SM90");
    return value == nullptr || std::strcmp(value, "0") != 0;
  }();
  return enabled && ctx.compute_capability == 90;
}

fa_status launch_forward(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  if (sm90_enabled(ctx) && sm90::takes_forward(p)) {
    bool launched = false;
    const fa_status s = p.head_dim <= 64    ? sm90::launch_fwd_d64(p, bf16, ctx, &launched)
                        : p.head_dim <= 128 ? sm90::launch_fwd_d128(p, bf16, ctx, &launched)
                                            : sm90::launch_fwd_d256(p, bf16, ctx, &launched);
    if (s != FA_OK || launched) return s;
  }
  if (p.head_dim <= 64) return sm80::launch_fwd_d64(p, bf16, ctx);
  if (p.head_dim <= 128) return sm80::launch_fwd_d128(p, bf16, ctx);
  return sm80::launch_fwd_d256(p, bf16, ctx);
}

}  // namespace

fa_status launch_backward_main(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  if (sm90_enabled(ctx) && sm90::takes_backward(p)) {
    bool launched = false;
    const fa_status s = p.head_dim_pad == 64 ? sm90::launch_bwd_d64(p, bf16, ctx, &launched)
                                             : sm90::launch_bwd_d128(p, bf16, ctx, &launched);
    if (s != FA_OK || launched) return s;
  }
  const int bucket = p.head_dim_pad;
  return bucket == 64    ? sm80::launch_bwd_d64(p, bf16, ctx)
         : bucket == 128 ? sm80::launch_bwd_d128(p, bf16, ctx)
                         : sm80::launch_bwd_d256(p, bf16, ctx);
}

fa_status launch_backward_dq(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  const int bucket = p.head_dim_pad;
  return bucket == 64    ? sm80::launch_bwd_dq_d64(p, bf16, ctx)
         : bucket == 128 ? sm80::launch_bwd_dq_d128(p, bf16, ctx)
                         : sm80::launch_bwd_dq_d256(p, bf16, ctx);
}

fa_status dispatch_forward(const AttentionParams& ap) {
  DeviceGuard guard;
  LaunchContext ctx;
  if (const fa_status s = prepare(ap, &guard, &ctx)) return s;
  if (ap.batch == 0 || ap.heads_q == 0 || ap.seqlen_q == 0) return FA_OK;
  return launch_forward(make_params(ap), ap.dtype == FA_BFLOAT16, ctx);
}

fa_status dispatch_backward_workspace_size(const AttentionParams& ap, uint64_t* bytes) {
  *bytes = plan_backward(make_params(ap), ap.deterministic).total_bytes;
  return FA_OK;
}

fa_status dispatch_backward(const AttentionParams& ap) {
  DeviceGuard guard;
  LaunchContext ctx;
  if (const fa_status s = prepare(ap, &guard, &ctx)) return s;
  KernelParams p = make_params(ap);
  if (ap.batch == 0 || ap.heads_q == 0) return FA_OK;
  return run_backward(p, ap.dtype == FA_BFLOAT16, ap.deterministic, ap.workspace,
                      ap.workspace_bytes, ctx);
}

}  // namespace fa
