// bwd_plan.h: the backward's workspace layout and how dbias is produced, decided on the
// host from the problem alone (so fa_backward_workspace_size and fa_backward agree).
//
// Workspace (fp32, 256-byte aligned pieces); R = query rows per head (dense B * Sq,
// nested total_q), row of (b, h, i) as in KernelParams::ws_sb / ws_sh:
//   dsum      [Hq * R]             rowsum(dO * O)
//   lse_log2  [Hq * R]             lse * log2(e), +inf for rows that saw nothing
//   dq_accum  [Hq * R * Dbucket]   non-deterministic only
//   dbias     atomic:  [B', H', R', Sk]  (' = 1 where dbias sums over that dimension)
//             partial: [B, Hx, R', Sk]   (Hx = Hkv when heads are summed, else Hq)
// (dbias buffers use dbias's logical shape, i.e. the maximum lengths when nested.)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/kernel_params.h"

namespace fa {

struct BwdPlan {
  int head_dim_pad = 0;
  int64_t ws_sb = 0, ws_sh = 0;
  int dbias_mode = kDbiasNone;
  bool sum_b = false, sum_h = false, sum_row = false;
  uint64_t dsum_offset = 0, lse_offset = 0, dq_offset = 0, dbias_offset = 0;
  uint64_t dbias_elements = 0;
  uint64_t total_bytes = 0;
};

inline int head_dim_bucket(int head_dim) {
  return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256;
}

inline BwdPlan plan_backward(const KernelParams& p, bool deterministic) {
  BwdPlan plan;
  plan.head_dim_pad = head_dim_bucket(p.head_dim);
  const bool nested = p.cu_q != nullptr;
  const int64_t rows_per_head = nested ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  plan.ws_sb = nested ? 0 : int64_t(p.heads_q) * p.seqlen_q;
  plan.ws_sh = nested ? p.total_q : p.seqlen_q;
  auto align = [](uint64_t x) { return (x + 255) / 256 * 256; };
  const uint64_t rows = uint64_t(p.heads_q) * uint64_t(rows_per_head);
  uint64_t offset = 0;
  plan.dsum_offset = offset;
  offset = align(offset + rows * 4);
  plan.lse_offset = offset;
  offset = align(offset + rows * 4);
  if (!deterministic) {
    plan.dq_offset = offset;
    offset = align(offset + rows * uint64_t(plan.head_dim_pad) * 4);
  }
  // A dbias with no elements (nested, all query or all key sequences empty) is not written.
  if (p.dbias.ptr != nullptr && p.seqlen_q > 0 && p.seqlen_k > 0) {
    plan.sum_b = p.dbias.sb == 0 && p.batch > 1;
    plan.sum_h = p.dbias.sh == 0 && p.heads_q > 1;
    plan.sum_row = p.dbias.sr == 0 && p.seqlen_q > 1;
    const uint64_t r = plan.sum_row ? 1 : uint64_t(p.seqlen_q);
    const uint64_t sk = uint64_t(p.seqlen_k);
    if (!plan.sum_b && !plan.sum_h) {
      plan.dbias_mode = kDbiasDirect;
    } else if (!deterministic) {
      plan.dbias_mode = kDbiasAtomic;
      plan.dbias_elements = (plan.sum_b ? 1 : uint64_t(p.batch)) *
                            (plan.sum_h ? 1 : uint64_t(p.heads_q)) * r * sk;
    } else {
      plan.dbias_mode = kDbiasPartial;
      plan.dbias_elements = uint64_t(p.batch) *
                            (plan.sum_h ? uint64_t(p.heads_kv) : uint64_t(p.heads_q)) * r * sk;
    }
    if (plan.dbias_elements > 0) {
      plan.dbias_offset = offset;
      offset = align(offset + plan.dbias_elements * 4);
    }
  }
  plan.total_bytes = offset;
  return plan;
}

// Points the kernel parameters at the workspace `ws` laid out by `plan`.
inline void apply_plan(KernelParams& p, const BwdPlan& plan, char* ws, bool deterministic) {
  p.ws_sb = plan.ws_sb;
  p.ws_sh = plan.ws_sh;
  p.head_dim_pad = plan.head_dim_pad;
  p.dsum = reinterpret_cast<float*>(ws + plan.dsum_offset);
  p.lse_log2 = reinterpret_cast<float*>(ws + plan.lse_offset);
  p.accumulate_dq = !deterministic;
  p.dq_accum = deterministic ? nullptr : reinterpret_cast<float*>(ws + plan.dq_offset);
  p.dbias_mode = plan.dbias_mode;
  p.dbias_sum_b = plan.sum_b;
  p.dbias_sum_h = plan.sum_h;
  p.dbias_sum_row = plan.sum_row;
  p.dbias_accum =
      plan.dbias_elements > 0 ? reinterpret_cast<float*>(ws + plan.dbias_offset) : nullptr;
}

}  // namespace fa
