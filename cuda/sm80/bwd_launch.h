// bwd_launch.h: launches the backward's main kernel and deterministic dQ kernel of one
// configuration.
#pragma once

#include "common/launch.h"
#include "common/status.h"
#include "sm80/bias.h"
#include "sm80/bwd_dq_kernel.h"
#include "sm80/bwd_kernel.h"
#include "sm80/score_transform.h"
#include "sm80/sm80.h"

namespace fa {
namespace sm80 {

inline fa_status smem_unsupported(const KernelParams& p, int need, int have) {
  return fail(FA_ERR_UNSUPPORTED,
              "q: the backward for head dim %d needs %d bytes of shared memory per block, the "
              "device allows %d",
              p.head_dim, need, have);
}

// One kernel of the compile-time flags: shared-memory limit, then the launch.
template <auto kKernel>
fa_status launch_bwd_kernel(const KernelParams& p, dim3 grid, int threads, int smem,
                            const LaunchContext& ctx) {
  if (const fa_status s = ensure_smem<kKernel>(ctx.device, smem)) return s;
  if (empty_grid(grid)) return FA_OK;
  auto kernel = kKernel;
  FA_LAUNCH(kernel, grid, threads, smem, ctx.stream, p);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

template <class Cfg>
fa_status launch_bwd_main(const KernelParams& params, const LaunchContext& ctx) {
  KernelParams p = params;
  int smem = Cfg::kSmemBytes;
  if (smem > ctx.max_smem_optin) return smem_unsupported(p, smem, ctx.max_smem_optin);
  const BwdMods mods = bwd_mods<Cfg>(p);
  // Stage the bias through shared memory (one tile per Q/dO stage) where its rows are
  // 16-byte aligned and the device has the room; otherwise, and with score mods (no kernel
  // has both flags), it is read directly.
  const int bias_tiles = Cfg::kStages * Cfg::kBiasStageBytes;
  p.bias_staged = p.has_bias && mods == BwdMods::kNone && p.bias.async16 &&
                  smem + bias_tiles <= ctx.max_smem_optin;
  if (p.bias_staged) smem += bias_tiles;
  const dim3 grid = BwdScheduler::grid(ceil_div(p.seqlen_k, Cfg::kBN), p.heads_kv, p.batch);
  constexpr int kThreads = Cfg::kThreads;
  if constexpr (Cfg::kFoldSoftcap) {  // bwd_mods picks kFolded only there
    if (mods == BwdMods::kFolded) {
      return launch_bwd_kernel<bwd_kernel<Cfg, false, BwdMods::kFolded>>(p, grid, kThreads, smem,
                                                                          ctx);
    }
  }
  if (mods == BwdMods::kKept) {
    return launch_bwd_kernel<bwd_kernel<Cfg, false, BwdMods::kKept>>(p, grid, kThreads, smem, ctx);
  }
  return p.bias_staged
             ? launch_bwd_kernel<bwd_kernel<Cfg, true, BwdMods::kNone>>(p, grid, kThreads, smem, ctx)
             : launch_bwd_kernel<bwd_kernel<Cfg, false, BwdMods::kNone>>(p, grid, kThreads, smem,
                                                                          ctx);
}

template <class Cfg>
fa_status launch_bwd_dq(const KernelParams& p, const LaunchContext& ctx) {
  const int smem = Cfg::kSmemBytes;
  if (smem > ctx.max_smem_optin) return smem_unsupported(p, smem, ctx.max_smem_optin);
  const dim3 grid = DqScheduler::grid(ceil_div(p.seqlen_q, Cfg::kBM), p.heads_q, p.batch);
  if (p.has_score_mods()) {
    return launch_bwd_kernel<bwd_dq_kernel<Cfg, true>>(p, grid, Cfg::kThreads, smem, ctx);
  }
  return launch_bwd_kernel<bwd_dq_kernel<Cfg, false>>(p, grid, Cfg::kThreads, smem, ctx);
}

}  // namespace sm80
}  // namespace fa
