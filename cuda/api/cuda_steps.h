// cuda_steps.h: the pieces the dispatcher (cuda_dispatch.cu) and the backward's step
// sequence (cuda_backward.cu) share.
#pragma once

#include <cstdint>

#include "common/kernel_params.h"
#include "common/launch.h"
#include "flashattn.h"

namespace fa {

// The backward's main kernel (dK, dV, dQ accumulation, dbias) on the architecture that
// takes the case, and the deterministic dQ kernel (sm80). p's workspace fields are set.
fa_status launch_backward_main(const KernelParams& p, bool bf16, const LaunchContext& ctx);
fa_status launch_backward_dq(const KernelParams& p, bool bf16, const LaunchContext& ctx);

// The whole backward (workspace, preprocess, main kernel, dQ, dbias) on ctx.stream.
fa_status run_backward(KernelParams& p, bool bf16, bool deterministic, void* workspace,
                       uint64_t workspace_bytes, const LaunchContext& ctx);

}  // namespace fa
