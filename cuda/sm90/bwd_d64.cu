// bwd_d64.cu: sm90 backward main kernels for head dims up to 64 (fp16 and bf16).
#include "sm90/bwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, query rows per step, Q/dO stages, lse/D waited for with Q and dO. BM = 128: the
// S^T / dP^T tiles are 64 keys x 128 queries per consumer, dQ is split between the consumers by
// rows. (BM = 64 with dQ split by columns, 64 x 32 each, measured 8% slower at (1,16,8192,64).)
template <typename T>
using BwdD64 = BwdConfig<T, 64, 128, 2, true>;

// Softcap and ALiBi (score-feature kernels, bwd_kernel.h): BM = 64, which leaves room for the
// NS * 2 registers of P^T's early A fragments (bwd_scores.h probs_t_mods); at BM = 128 they
// spill 160-264 bytes. dQ is split by columns as in BwdD128.
template <typename T>
using BwdD64Mods = BwdConfig<T, 64, 64, 2, false>;

fa_status launch_bwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched) {
  if (p.has_score_mods()) {
    return bf16 ? launch_bwd<BwdD64Mods<__nv_bfloat16>, true>(p, ctx, launched)
                : launch_bwd<BwdD64Mods<__half>, true>(p, ctx, launched);
  }
  return bf16 ? launch_bwd<BwdD64<__nv_bfloat16>, false>(p, ctx, launched)
              : launch_bwd<BwdD64<__half>, false>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
