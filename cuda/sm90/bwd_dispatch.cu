// bwd_dispatch.cu: which backward main kernels run on sm90 (called by sm80's run_backward,
// step 4; the preprocess and dQ conversion stay sm80's).
//
// Taken: compute capability 9.0, head-dim buckets 64 and 128, no bias / dbias, the atomic
// (non-deterministic) dQ accumulation, operands the TMA can address, unless
// FLASHATTN_SM90=0 (the forward's switch).
#include <cuda_runtime.h>

#include "common/status.h"
#include "sm90/sm90.h"

namespace fa {
namespace sm90 {

fa_status try_backward_main(const sm80::KernelParams& p, bool bf16,
                            const sm80::LaunchContext& ctx, bool* launched) {
  *launched = false;
  if (!available(ctx)) return FA_OK;
  if (p.has_bias || p.dbias_mode != sm80::kDbiasNone || !p.accumulate_dq) return FA_OK;
  // Nothing for a tensor map to describe (nested, every sequence empty): sm80.
  if (p.seqlen_q == 0 || p.seqlen_k == 0) return FA_OK;
  if (p.cu_q != nullptr && (p.total_q == 0 || p.total_k == 0)) return FA_OK;
  if (p.head_dim_pad == 64) return launch_bwd_d64(p, bf16, ctx, launched);
  if (p.head_dim_pad == 128) return launch_bwd_d128(p, bf16, ctx, launched);
  return FA_OK;  // 256: sm80 (K, V, Q and dO stages would not fit next to dS and dQ)
}

}  // namespace sm90
}  // namespace fa
