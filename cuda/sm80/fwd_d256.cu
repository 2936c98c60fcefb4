// fwd_d256.cu: forward kernels for head dims up to 256 (fp16 and bf16).
#include "sm80/fwd_launch.h"

namespace fa {
namespace sm80 {

// Block: BM query rows x BN keys, warps, min blocks per SM.
template <typename T>
using FwdD256 = FwdConfig<T, 256, 64, 64, 4, 2>;

fa_status launch_fwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_fwd<FwdD256<__nv_bfloat16>>(p, ctx) : launch_fwd<FwdD256<__half>>(p, ctx);
}

}  // namespace sm80
}  // namespace fa
