// backends.h: what cuda/api/ dispatches to, after validation.
#pragma once

#include <cstdint>

#include "common/params.h"
#include "flashattn.h"

namespace fa {

// CPU reference backend (cuda/cpu/): host pointers, float32 accumulation.
fa_status cpu_forward(const AttentionParams& params);
fa_status cpu_backward(const AttentionParams& params);

// CUDA backend (cuda/sm80/, cuda/sm90/): device pointers, launched on params.stream.
fa_status cuda_forward(const AttentionParams& params);
fa_status cuda_backward(const AttentionParams& params);
fa_status cuda_backward_workspace_size(const AttentionParams& params, uint64_t* bytes);

}  // namespace fa
