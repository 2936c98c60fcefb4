// fwd_launch.h: launches the sm90 forward kernel of one configuration.
#pragma once

#include "common/status.h"
#include "common/launch.h"
#include "sm90/fwd_kernel.h"
#include "sm90/sm90.h"
#include "sm90/tma.h"

namespace fa {
namespace sm90 {

// Keys one bias box brings (128 bytes of them).
inline int bias_box_keys(int dtype) { return dtype == FA_FLOAT32 ? 32 : 64; }

// Raises one kernel's shared-memory limit and launches it.
template <class Cfg, bool kDropout, bool kBias, bool kScoreMods>
fa_status launch_variant(const FwdParams& params, int smem_bytes, const LaunchContext& ctx,
                         bool* launched) {
  constexpr auto kernel = fwd_kernel<Cfg, kDropout, kBias, kScoreMods>;
  if (const fa_status s = ensure_smem<kernel>(ctx.device, smem_bytes)) return s;
  *launched = true;
  const KernelParams& p = params.p;
  const dim3 grid = FwdScheduler::grid(ceil_div(p.seqlen_q, Cfg::kBM), p.heads_q, p.batch);
  if (empty_grid(grid)) return FA_OK;
  kernel<<<grid, Cfg::kThreads, smem_bytes, ctx.stream>>>(params);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

// *launched is false (and the status FA_OK) where this configuration cannot run the case:
// too little shared memory, or operands the TMA cannot address. kBias must be p.has_bias
// (the caller picks the configuration by it).
template <class Cfg, bool kBias>
fa_status launch_fwd(const KernelParams& p, const LaunchContext& ctx, bool* launched) {
  *launched = false;
  const int smem_bytes = Cfg::smem_bytes(kBias);
  if (smem_bytes > ctx.max_smem_optin) return FA_OK;
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
  // Dropout kernels load K and V in the permuted key order (fwd_scores.h).
  if (p.has_dropout) {
    if (const fa_status s = encode_permuted_maps(&params.k, &params.k_halves, p.k, bf16,
                                                 p.head_dim, rows_k, p.heads_kv, batch, &k_ok))
      return s;
    if (const fa_status s = encode_permuted_maps(&params.v, &params.v_halves, p.v, bf16,
                                                 p.head_dim, rows_k, p.heads_kv, batch, &v_ok))
      return s;
  } else {
    if (const fa_status s = encode_tensor_map(&params.k, p.k, bf16, p.head_dim, rows_k,
                                              p.heads_kv, batch, Cfg::kBN, &k_ok))
      return s;
    if (const fa_status s = encode_tensor_map(&params.v, p.v, bf16, p.head_dim, rows_k,
                                              p.heads_kv, batch, Cfg::kBN, &v_ok))
      return s;
  }
  if (!q_ok || !k_ok || !v_ok) return FA_OK;
  params.kv_rows = int(rows_k);
  if (p.has_dropout) {
    params.threshold2 = p.dropout_threshold | (p.dropout_threshold << 16);
    params.keys = philox_keys(p.seed);
  }
  if constexpr (kBias) {
    // Bias [B, Hq, Sq, Sk] with local rows (nested: the maxima), broadcast dims as size 1.
    const BiasBroadcast bc = bias_broadcast(p.bias, p.seqlen_q, p.heads_q, p.batch);
    bool bias_ok = false;
    if (const fa_status s = encode_bias_map(&params.bias, p.bias, p.seqlen_k,
                                            bc.row ? 1 : p.seqlen_q, bc.head ? 1 : p.heads_q,
                                            bc.batch ? 1 : p.batch, Cfg::kBM, &bias_ok))
      return s;
    if (!bias_ok) return FA_OK;
    const int esize = p.bias.dtype == FA_FLOAT32 ? 4 : 2;
    params.bias_box_keys = bias_box_keys(p.bias.dtype);
    params.bias_boxes = Cfg::kBN / params.bias_box_keys;
    params.bias_tile_bytes = uint32_t((bc.row ? 1 : Cfg::kBM) * Cfg::kBN * esize);
    params.bias_stage_shift = esize == 2 ? 1 : 0;
    params.bias_row_step = bc.row ? 0 : 1;
    params.bias_head_step = bc.head ? 0 : 1;
    params.bias_batch_step = bc.batch ? 0 : 1;
  }

  // Softcap and ALiBi run in kernels of their own (fwd_kernel.h), so that the others carry
  // no trace of them.
  const bool mods = p.has_score_mods();
  if (mods) {
    return p.has_dropout
               ? launch_variant<Cfg, true, kBias, true>(params, smem_bytes, ctx, launched)
               : launch_variant<Cfg, false, kBias, true>(params, smem_bytes, ctx, launched);
  }
  return p.has_dropout
             ? launch_variant<Cfg, true, kBias, false>(params, smem_bytes, ctx, launched)
             : launch_variant<Cfg, false, kBias, false>(params, smem_bytes, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
