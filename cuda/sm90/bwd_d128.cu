// bwd_d128.cu: sm90 backward main kernels for head dims up to 128 (fp16 and bf16).
#include "sm90/bwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, query rows per step, Q/dO stages, lse/D waited for with Q and dO. BM = 64: the
// S^T / dP^T tiles are 64 keys x 64 queries per consumer (dK and dV take 128 registers), dQ is
// split between the consumers by columns (64 x 64 each). 197 KB of shared memory: no room for a
// third stage next to the two dS^T buffers.
template <typename T>
using BwdD128 = BwdConfig<T, 128, 64, 2, false>;

fa_status launch_bwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                          bool* launched) {
  // Softcap and ALiBi: the score-feature kernels, without dropout (with it they spill 28
  // bytes: P^T's early A fragments next to dK and dV; sm80 takes those cases, cases.cu).
  const bool mods = p.has_score_mods();
  if (mods) {
    return bf16 ? launch_bwd<BwdD128<__nv_bfloat16>, true, false>(p, ctx, launched)
                : launch_bwd<BwdD128<__half>, true, false>(p, ctx, launched);
  }
  return bf16 ? launch_bwd<BwdD128<__nv_bfloat16>, false>(p, ctx, launched)
              : launch_bwd<BwdD128<__half>, false>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
