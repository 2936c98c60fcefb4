// sm90.h: the Hopper backend's entry point (called by sm80_forward before its own kernels)
// and the per-bucket launchers it picks from.
#pragma once

#include "flashattn.h"
#include "sm80/kernel_params.h"
#include "sm80/sm80.h"

namespace fa {
namespace sm90 {

// Runs the forward on the sm90 kernels where the device (compute capability 9.0), the case
// and the environment (FLASHATTN_SM90=0 turns the path off) allow it. *launched says
// whether it did; if not, the caller runs sm80.
fa_status try_forward(const sm80::KernelParams& p, bool bf16, int cc_major, int cc_minor,
                      const sm80::LaunchContext& ctx, bool* launched);

// Forward per head-dim bucket (both dtypes), in fwd_d{64,128,256}.cu.
fa_status launch_fwd_d64(const sm80::KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                         bool* launched);
fa_status launch_fwd_d128(const sm80::KernelParams& p, bool bf16,
                          const sm80::LaunchContext& ctx, bool* launched);
fa_status launch_fwd_d256(const sm80::KernelParams& p, bool bf16,
                          const sm80::LaunchContext& ctx, bool* launched);

}  // namespace sm90
}  // namespace fa
