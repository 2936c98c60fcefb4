// sm80.h: the sm80 backend's entry points (same contracts as fa::cuda_* in
// common/backends.h) and the per-bucket launchers dispatch.cu picks from.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/params.h"
#include "flashattn.h"
#include "sm80/kernel_params.h"

namespace fa {

fa_status sm80_forward(const AttentionParams& params);
fa_status sm80_backward(const AttentionParams& params);
fa_status sm80_backward_workspace_size(const AttentionParams& params, uint64_t* bytes);

namespace sm80 {

// What a launcher needs besides the kernel parameters.
struct LaunchContext {
  int device = 0;
  int max_smem_optin = 0;  // bytes per block
  int compute_capability = 0;  // major * 10 + minor
  cudaStream_t stream = nullptr;
};

// Forward, one per head-dim bucket (both dtypes), in fwd_d{64,128,256}.cu.
fa_status launch_fwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_fwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_fwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx);

}  // namespace sm80
}  // namespace fa
