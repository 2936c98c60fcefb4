// fwd_launch.h: launches the sm90 forward kernel of one configuration.
#pragma once

#include "common/status.h"
#include "sm80/launch.h"
#include "sm90/fwd_kernel.h"
#include "sm90/sm90.h"
#include "sm90/tma.h"

namespace fa {
namespace sm90 {

// *launched is false (and the status FA_OK) where this configuration cannot run the case:
// too little shared memory, or operands the TMA cannot address.
template <class Cfg>
fa_status launch_fwd(const KernelParams& p, const sm80::LaunchContext& ctx, bool* launched) {
  *launched = false;
  if (Cfg::kSmemBytes > ctx.max_smem_optin) return FA_OK;
  const bool bf16 = std::is_same_v<typename Cfg::T, __nv_bfloat16>;
  const bool nested = p.cu_q != nullptr;
  const int64_t batch = nested ? 1 : p.batch;
  const int64_t rows_q = nested ? p.total_q : p.seqlen_q;
  const int64_t rows_k = nested ? p.total_k : p.seqlen_k;
  FwdParams params;
  params.p = p;
  bool q_ok = false, k_ok = false, v_ok = false;
  if (const fa_status s = encode_tensor_map(&params.q, p.q, bf16, p.head_dim, rows_q, p.heads_q,
                                            batch, Cfg::kBM, &q_ok))
    return s;
  if (const fa_status s = encode_tensor_map(&params.k, p.k, bf16, p.head_dim, rows_k,
                                            p.heads_kv, batch, Cfg::kBN, &k_ok))
    return s;
  if (const fa_status s = encode_tensor_map(&params.v, p.v, bf16, p.head_dim, rows_k,
                                            p.heads_kv, batch, Cfg::kBN, &v_ok))
    return s;
  if (!q_ok || !k_ok || !v_ok) return FA_OK;

  struct WithDropout {};
  const auto kernel = p.has_dropout ? fwd_kernel<Cfg, true> : fwd_kernel<Cfg, false>;
  const fa_status s = p.has_dropout
                          ? sm80::ensure_smem<WithDropout>(kernel, ctx.device, Cfg::kSmemBytes)
                          : sm80::ensure_smem<Cfg>(kernel, ctx.device, Cfg::kSmemBytes);
  if (s != FA_OK) return s;
  *launched = true;
  const dim3 grid(sm80::ceil_div(p.seqlen_q, Cfg::kBM), p.heads_q, p.batch);
  if (sm80::empty_grid(grid)) return FA_OK;
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, ctx.stream>>>(params);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

}  // namespace sm90
}  // namespace fa
