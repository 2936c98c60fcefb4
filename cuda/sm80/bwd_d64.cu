// bwd_d64.cu: backward kernels for head dims up to 64 (fp16 and bf16).
#include "sm80/bwd_launch.h"

namespace fa {
namespace sm80 {

// Main kernel: BM query rows x BN keys, warps along M for S/dP, along N for dK/dV, along M
// for dQ, Q/dO buffers.
template <typename T>
using BwdD64 = BwdConfig<T, 64, 64, 128, 2, 4, 2, 2>;
// Deterministic dQ: BM query rows x BN keys, K/V buffers.
template <typename T>
using DqD64 = DqConfig<T, 64, 64, 64, 2>;

fa_status launch_bwd_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_bwd_main<BwdD64<__nv_bfloat16>>(p, ctx)
              : launch_bwd_main<BwdD64<__half>>(p, ctx);
}

fa_status launch_bwd_dq_d64(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_bwd_dq<DqD64<__nv_bfloat16>>(p, ctx)
              : launch_bwd_dq<DqD64<__half>>(p, ctx);
}

}  // namespace sm80
}  // namespace fa
