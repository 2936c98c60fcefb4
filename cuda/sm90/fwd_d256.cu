// fwd_d256.cu: sm90 forward kernels for head dims up to 256 (fp16 and bf16).
#include "sm90/fwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, keys per tile, K/V stages, consumer warpgroups (64 query rows each).
template <typename T>
using FwdD256 = FwdConfig<T, 256, 64, 2, 2>;

fa_status launch_fwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched) {
  if (p.has_bias) {  // the bias ring fits next to the K/V stages
    return bf16 ? launch_fwd<FwdD256<__nv_bfloat16>, true>(p, ctx, launched)
                : launch_fwd<FwdD256<__half>, true>(p, ctx, launched);
  }
  return bf16 ? launch_fwd<FwdD256<__nv_bfloat16>, false>(p, ctx, launched)
              : launch_fwd<FwdD256<__half>, false>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
