// fwd_launch.h: launches the forward kernel of one configuration.
#pragma once

#include "common/status.h"
#include "sm80/fwd_kernel.h"
#include "sm80/launch.h"
#include "sm80/sm80.h"

namespace fa {
namespace sm80 {

template <class Cfg>
fa_status launch_fwd(const KernelParams& p, const LaunchContext& ctx) {
  const int smem = Cfg::kSmemBytes;
  if (smem > ctx.max_smem_optin) {
    return fail(FA_ERR_UNSUPPORTED,
                "q: head dim %d needs %d bytes of shared memory per block, the device allows %d",
                p.head_dim, smem, ctx.max_smem_optin);
  }
  auto kernel = fwd_kernel<Cfg>;
  if (const fa_status s = ensure_smem<Cfg>(kernel, ctx.device, smem)) return s;
  const dim3 grid(ceil_div(p.seqlen_q, Cfg::kBM), p.heads_q, p.batch);
  if (empty_grid(grid)) return FA_OK;
  FA_LAUNCH(kernel, grid, Cfg::kThreads, smem, ctx.stream, p);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

}  // namespace sm80
}  // namespace fa
