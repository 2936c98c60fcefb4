// cuda_backend.cpp: the CUDA backend entry points, served by the sm80 kernels
// (mma.sync; they also run on sm_90 until the Hopper path exists).
#include "common/backends.h"
#include "sm80/sm80.h"

namespace fa {

fa_status cuda_forward(const AttentionParams& params) { return sm80_forward(params); }

fa_status cuda_backward(const AttentionParams& params) { return sm80_backward(params); }

fa_status cuda_backward_workspace_size(const AttentionParams& params, uint64_t* bytes) {
  return sm80_backward_workspace_size(params, bytes);
}

}  // namespace fa
