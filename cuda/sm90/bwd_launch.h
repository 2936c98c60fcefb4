// bwd_launch.h: launches the sm90 backward main kernel of one configuration.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "common/launch.h"
#include "sm90/bwd_kernel.h"
#include "sm90/sm90.h"
#include "sm90/tma.h"

namespace fa {
namespace sm90 {

// Raises one kernel's shared-memory limit and launches it.
template <class Cfg, bool kDropout, bool kScoreMods>
fa_status launch_bwd_variant(const BwdParams& params, const LaunchContext& ctx, bool* launched) {
  constexpr auto kernel = bwd_kernel<Cfg, kDropout, kScoreMods>;
  if (const fa_status s = ensure_smem<kernel>(ctx.device, Cfg::kSmemBytes)) return s;
  *launched = true;
  const KernelParams& p = params.p;
  const dim3 grid = BwdScheduler::grid(ceil_div(p.seqlen_k, Cfg::kBN), p.heads_kv, p.batch);
  if (empty_grid(grid)) return FA_OK;
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, ctx.stream>>>(params);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

// *launched is false (and the status FA_OK) where this configuration cannot run the case:
// too little shared memory, another head-dim bucket, no 8-byte aligned dQ accumulator (the
// kernel adds pairs with red.global.add.v2.f32), or operands the TMA cannot address. sm80
// then runs it.
// kScoreMods: the score-feature kernels (softcap or ALiBi on; the caller picks the
// configuration by it). kWithDropout false: no dropout kernel is built and dropout cases are
// declined (takes_backward excludes them already).
template <class Cfg, bool kScoreMods, bool kWithDropout = true>
fa_status launch_bwd(const KernelParams& p, const LaunchContext& ctx, bool* launched) {
  *launched = false;
  if (Cfg::kSmemBytes > ctx.max_smem_optin) return FA_OK;
  if (p.head_dim_pad != Cfg::kD || p.dq_accum == nullptr ||
      reinterpret_cast<uintptr_t>(p.dq_accum) % 8 != 0) {
    return FA_OK;
  }
  const bool bf16 = std::is_same_v<typename Cfg::T, __nv_bfloat16>;
  const bool nested = p.cu_q != nullptr;
  const int64_t batch = nested ? 1 : p.batch;
  const int64_t rows_q = nested ? p.total_q : p.seqlen_q;
  const int64_t rows_k = nested ? p.total_k : p.seqlen_k;
  BwdParams params;
  params.p = p;
  bool ok[4] = {false, false, false, false};
  struct Operand {
    CUtensorMap* map;
    const TensorView& view;
    int64_t rows, heads;
    int box_rows;
  };
  const Operand operands[4] = {
      {&params.q, p.q, rows_q, p.heads_q, Cfg::kBM},
      {&params.dout, p.dout, rows_q, p.heads_q, Cfg::kBM},
      {&params.k, p.k, rows_k, p.heads_kv, Cfg::kBN},
      {&params.v, p.v, rows_k, p.heads_kv, Cfg::kBN},
  };
  for (int i = 0; i < 4; ++i) {
    const Operand& o = operands[i];
    if (const fa_status s = encode_tensor_map(o.map, o.view, bf16, p.head_dim, o.rows, o.heads,
                                              batch, o.box_rows, &ok[i]))
      return s;
    if (!ok[i]) return FA_OK;
  }

  if constexpr (kWithDropout) {
    if (p.has_dropout) return launch_bwd_variant<Cfg, true, kScoreMods>(params, ctx, launched);
  } else if (p.has_dropout) {
    return FA_OK;
  }
  return launch_bwd_variant<Cfg, false, kScoreMods>(params, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
