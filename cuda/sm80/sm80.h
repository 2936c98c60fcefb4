// sm80.h: the sm80 kernels' launchers, one per head-dim bucket (both dtypes), which
// cuda/api/cuda_dispatch.cu picks from. Buckets: head_dim <= 64, <= 128, <= 256 (a smaller
// head dim runs in the next bucket up, zero-filled on load and masked on store); the other
// features are runtime flags, or pick one of a few kernels compiled per bucket (dropout,
// softcap/ALiBi, a staged bias: fwd_kernel.h, bwd_kernel.h).
#pragma once

#include "common/kernel_params.h"
#include "common/launch.h"
#include "flashattn.h"

namespace fa {
namespace sm80 {

// Forward, in fwd_d{64,128,256}.cu.
fa_status launch_fwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_fwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_fwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx);

// Backward, in bwd_d{64,128,256}.cu: the main kernel (dK, dV, dQ accumulation, dbias) and
// the deterministic dQ kernel.
fa_status launch_bwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_bwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_bwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_bwd_dq_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_bwd_dq_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_bwd_dq_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx);

}  // namespace sm80
}  // namespace fa
