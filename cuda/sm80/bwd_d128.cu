// bwd_d128.cu: backward kernels for head dims up to 128 (fp16 and bf16).
#include "sm80/bwd_launch.h"

namespace fa {
namespace sm80 {

// Main kernel: BM query rows x BN keys, warps along M for S/dP, along N for dK/dV, along M
// for dQ, Q/dO buffers, a folded-softcap kernel (BwdMods; the 64 x 128 one spills without).
template <typename T>
using BwdD128 = BwdConfig<T, 128, 64, 128, 2, 2, 2, 2, true>;  // 162 KB: A100, H100
template <typename T>
using BwdD128Small = BwdConfig<T, 128, 64, 64, 4, 4, 2, 1>;  // 82 KB: RTX 30/40 (99 KB)
// Deterministic dQ: BM query rows x BN keys, K/V buffers.
template <typename T>
using DqD128 = DqConfig<T, 128, 64, 64, 2>;

fa_status launch_bwd_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  if (ctx.max_smem_optin < BwdD128<__half>::kSmemBytes) {
    return bf16 ? launch_bwd_main<BwdD128Small<__nv_bfloat16>>(p, ctx)
                : launch_bwd_main<BwdD128Small<__half>>(p, ctx);
  }
  return bf16 ? launch_bwd_main<BwdD128<__nv_bfloat16>>(p, ctx)
              : launch_bwd_main<BwdD128<__half>>(p, ctx);
}

fa_status launch_bwd_dq_d128(const KernelParams& p, bool bf16, const LaunchContext& ctx) {
  return bf16 ? launch_bwd_dq<DqD128<__nv_bfloat16>>(p, ctx)
              : launch_bwd_dq<DqD128<__half>>(p, ctx);
}

}  // namespace sm80
}  // namespace fa
