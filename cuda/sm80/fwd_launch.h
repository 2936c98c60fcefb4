// fwd_launch.h: launches the forward kernel of one configuration.
#pragma once

#include "common/launch.h"
#include "common/status.h"
#include "sm80/fwd_kernel.h"
#include "sm80/score_transform.h"
#include "sm80/sm80.h"

namespace fa {
namespace sm80 {

// One of the kernels of the compile-time flags (fwd_kernel.h): its shared-memory limit, set
// once per device to the most it may ever be launched with here, then the launch.
template <class Cfg, bool kDropout, bool kScoreMods>
fa_status launch_fwd_kernel(const KernelParams& p, int smem, int smem_max,
                            const LaunchContext& ctx) {
  const fa_status s = ensure_smem<fwd_kernel<Cfg, kDropout, kScoreMods>>(ctx.device, smem_max);
  if (s != FA_OK) return s;
  const dim3 grid = FwdScheduler::grid(ceil_div(p.seqlen_q, Cfg::kBM), p.heads_q, p.batch);
  if (empty_grid(grid)) return FA_OK;
  auto kernel = fwd_kernel<Cfg, kDropout, kScoreMods>;
  FA_LAUNCH(kernel, grid, Cfg::kThreads, smem, ctx.stream, p);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

template <class Cfg>
fa_status launch_fwd(const KernelParams& params, const LaunchContext& ctx) {
  KernelParams p = params;
  int smem = Cfg::kSmemBytes;
  // Stage the bias through shared memory where its rows are 16-byte aligned and the
  // device has the room (bias.h); otherwise it is read directly.
  const int bias_tile = Cfg::kBM * Cfg::kBN * bias_element_size(p.bias.dtype);
  p.bias_staged = p.has_bias && p.bias.async16 && smem + bias_tile <= ctx.max_smem_optin;
  if (p.bias_staged) smem += bias_tile;
  if (smem > ctx.max_smem_optin) {
    return fail(FA_ERR_UNSUPPORTED,
                "q: head dim %d needs %d bytes of shared memory per block, the device allows %d",
                p.head_dim, smem, ctx.max_smem_optin);
  }
  // The largest staged bias tile that fits.
  int smem_max = Cfg::kSmemBytes;
  for (const int size : {2, 4}) {
    const int with_tile = Cfg::kSmemBytes + Cfg::kBM * Cfg::kBN * size;
    if (with_tile <= ctx.max_smem_optin) smem_max = with_tile;
  }
  if (p.has_score_mods()) return launch_fwd_kernel<Cfg, true, true>(p, smem, smem_max, ctx);
  return p.has_dropout ? launch_fwd_kernel<Cfg, true, false>(p, smem, smem_max, ctx)
                       : launch_fwd_kernel<Cfg, false, false>(p, smem, smem_max, ctx);
}

}  // namespace sm80
}  // namespace fa
