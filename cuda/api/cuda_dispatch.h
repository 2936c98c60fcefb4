// cuda_dispatch.h: the CUDA backend's dispatcher (cuda_dispatch.cu), called by
// cuda_backend.cpp once the operands are staged: device checks, kernel parameters, and
// which architecture's kernels run each case.
#pragma once

#include <cstdint>

#include "common/launch.h"
#include "common/params.h"
#include "flashattn.h"

namespace fa {

// The device a call runs on (properties queried once per device): compute capability 8.0
// or newer, else FA_ERR_UNSUPPORTED naming q. The device must already be current.
fa_status launch_context(int device, void* stream, LaunchContext* ctx);

fa_status dispatch_forward(const AttentionParams& params);
fa_status dispatch_backward(const AttentionParams& params);
fa_status dispatch_backward_workspace_size(const AttentionParams& params, uint64_t* bytes);

}  // namespace fa
