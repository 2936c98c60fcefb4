// sm90.h: the Hopper backend's entry point (called by sm80_forward before its own kernels)
// and the per-bucket launchers it picks from.
#pragma once

#include "flashattn.h"
#include "sm80/kernel_params.h"
#include "sm80/sm80.h"

namespace fa {
namespace sm90 {

// Whether the sm90 kernels may run: a compute capability 9.0 device (the code is sm_90a) and
// no FLASHATTN_SM90=0 in the environment (read once; sends everything to sm80).
bool available(const sm80::LaunchContext& ctx);

// Runs the forward on the sm90 kernels where available() and the case allow it. *launched
// says whether it did; if not, the caller runs sm80.
fa_status try_forward(const sm80::KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                      bool* launched);

// Forward per head-dim bucket (both dtypes), in fwd_d{64,128,256}.cu.
fa_status launch_fwd_d64(const sm80::KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                         bool* launched);
fa_status launch_fwd_d128(const sm80::KernelParams& p, bool bf16,
                          const sm80::LaunchContext& ctx, bool* launched);
fa_status launch_fwd_d256(const sm80::KernelParams& p, bool bf16,
                          const sm80::LaunchContext& ctx, bool* launched);

// Backward (bwd_dispatch.cu): runs the backward's main kernel (sm80 run_backward's step 4:
// dK, dV, dQ accumulation) on sm90 where the device (compute capability 9.0), the case and
// FLASHATTN_SM90 allow it; *launched says whether it did, otherwise the caller runs sm80's.
fa_status try_backward_main(const sm80::KernelParams& p, bool bf16,
                            const sm80::LaunchContext& ctx, bool* launched);

// Backward main kernel per head-dim bucket (both dtypes), in bwd_d{64,128}.cu.
fa_status launch_bwd_d64(const sm80::KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                         bool* launched);
fa_status launch_bwd_d128(const sm80::KernelParams& p, bool bf16,
                          const sm80::LaunchContext& ctx, bool* launched);

}  // namespace sm90
}  // namespace fa
