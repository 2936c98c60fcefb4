// cuda_backend_stub.cpp: stands in for the GPU kernels until cuda/sm80/ provides them.
#include "common/backends.h"
#include "common/status.h"

namespace fa {
namespace {

fa_status no_kernels() {
  return fail(FA_ERR_UNSUPPORTED,
              "q: attention is not yet supported on CUDA devices (this build has no GPU kernels)");
}

}  // namespace

fa_status cuda_forward(const AttentionParams&) { return no_kernels(); }
fa_status cuda_backward(const AttentionParams&) { return no_kernels(); }
fa_status cuda_backward_workspace_size(const AttentionParams&, uint64_t*) { return no_kernels(); }

}  // namespace fa
