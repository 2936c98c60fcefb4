// fwd_d64.cu: sm90 forward kernels for head dims up to 64 (fp16 and bf16).
#include "sm90/fwd_launch.h"

namespace fa {
namespace sm90 {

// Head-dim bucket, keys per tile, K/V stages, consumer warpgroups (64 query rows each).
template <typename T>
using FwdD64 = FwdConfig<T, 64, 128, 3, 2>;

fa_status launch_fwd_d64(const KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                         bool* launched) {
  return bf16 ? launch_fwd<FwdD64<__nv_bfloat16>>(p, ctx, launched)
              : launch_fwd<FwdD64<__half>>(p, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
