// bwd_d256.cu: backward kernels for head dims up to 256 (fp16 and bf16).
#include "sm80/bwd_launch.h"

namespace fa {
namespace sm80 {

// Main kernel: BM query rows x BN keys, warps along M for S/dP, along N for dK/dV, along M
// for dQ, Q/dO buffers.
template <typename T>
using BwdD256 = BwdConfig<T, 256, 64, 64, 4, 4, 2, 1>;
// Deterministic dQ: BM query rows x BN keys, K/V buffers.
template <typename T>
using DqD256 = DqConfig<T, 256, 64, 32, 2>;

fa_status launch_bwd_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_bwd_main<BwdD256<__nv_bfloat16>>(p, ctx)
              : launch_bwd_main<BwdD256<__half>>(p, ctx);
}

fa_status launch_bwd_dq_d256(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_bwd_dq<DqD256<__nv_bfloat16>>(p, ctx)
              : launch_bwd_dq<DqD256<__half>>(p, ctx);
}

}  // namespace sm80
}  // namespace fa
