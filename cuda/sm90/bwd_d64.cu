// bwd_d64.cu: sm90 backward main kernels for head dims up to 64 (fp16 and bf16).
#include "sm90/bwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, query rows per step, Q/dO stages, lse/D waited for with Q and dO. BM = 128: the
// S^T / dP^T tiles are 64 keys x 128 queries per consumer, dQ is split between the consumers by
// rows. (BM = 64 with dQ split by columns, 64 x 32 each, measured 8% slower at (1,16,8192,64).)
template <typename T>
using BwdD64 = BwdConfig<T, 64, 128, 2, true>;

fa_status launch_bwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched) {
  return bf16 ? launch_bwd<BwdD64<__nv_bfloat16>>(p, ctx, launched)
              : launch_bwd<BwdD64<__half>>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
