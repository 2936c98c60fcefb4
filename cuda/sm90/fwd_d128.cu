// fwd_d128.cu: sm90 forward kernels for head dims up to 128 (fp16 and bf16).
#include "sm90/fwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, keys per tile, K/V stages, consumer warpgroups (64 query rows each).
template <typename T>
using FwdD128 = FwdConfig<T, 128, 128, 3, 2>;
// With a bias: 2 K/V stages, to leave room for the bias ring (fwd_kernel.h).
template <typename T>
using FwdD128Bias = FwdConfig<T, 128, 128, 2, 2>;

fa_status launch_fwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx,
                         bool* launched) {
  if (p.has_bias) {
    return bf16 ? launch_fwd<FwdD128Bias<__nv_bfloat16>, true>(p, ctx, launched)
                : launch_fwd<FwdD128Bias<__half>, true>(p, ctx, launched);
  }
  return bf16 ? launch_fwd<FwdD128<__nv_bfloat16>, false>(p, ctx, launched)
              : launch_fwd<FwdD128<__half>, false>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
