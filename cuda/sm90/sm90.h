// sm90.h: the Hopper kernels (wgmma/TMA, sm_90a code) and which cases they take; the
// dispatcher (cuda/api/cuda_dispatch.cu) asks takes_*() on a compute capability 9.0
// device, then calls the bucket's launcher, which may still decline (*launched false:
// operands the TMA cannot address, too little shared memory), and sm80 runs the case.
#pragma once

#include "common/kernel_params.h"
#include "common/launch.h"
#include "flashattn.h"

namespace fa {
namespace sm90 {

// Forward: every feature; not a dropout probability so close to 1 that its threshold is
// 65536 (the kernels compare 16-bit halves against a 16-bit threshold), and not a nested
// batch whose key sequences are all empty (nothing for a tensor map to describe).
bool takes_forward(const KernelParams& p);

// Backward main kernel (dK, dV, dQ accumulation): head-dim buckets 64 and 128, no bias or
// dbias, the atomic (non-deterministic) dQ accumulation, some query and key rows; softcap
// and ALiBi, but not together with dropout at head dim 128.
bool takes_backward(const KernelParams& p);

// Forward per head-dim bucket (both dtypes), in fwd_d{64,128,256}.cu.
fa_status launch_fwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched);
fa_status launch_fwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                          bool* launched);
fa_status launch_fwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                          bool* launched);

// Backward main kernel per head-dim bucket (both dtypes), in bwd_d{64,128}.cu.
fa_status launch_bwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched);
fa_status launch_bwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                          bool* launched);

}  // namespace sm90
}  // namespace fa
