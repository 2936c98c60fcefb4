// cuda_backward.cu: the backward pass end to end on CUDA: the architecture-neutral small
// kernels (common/bwd_aux_kernels.h) around the main kernel the dispatcher picks.
//
// Order on the stream:
//   1. workspace: params.workspace when it is large enough, else the library's scratch
//      pool on the stream (common/scratch_pool.h; returned after the last kernel,
//      stream-ordered, no sync)
//   2. dbias: zero the fp32 buffer (atomic / partial), or zero dbias itself where the main
//      kernel will not write every element (a window or causal mask, or nested; direct
//      mode)
//   3. preprocess: D = rowsum(dO * O), lse in log2 units, zeroed dQ accumulator; then
//      the sinks' gradient from them
//   4. main kernel: dK, dV, (dQ accumulation), dbias
//   5. dq: convert the accumulator, or (deterministic) the dQ kernel
//   6. dbias: finish from the buffer
#include <cuda_runtime.h>

#include "api/cuda_steps.h"
#include "common/bwd_aux_kernels.h"
#include "common/bwd_plan.h"
#include "common/launch.h"
#include "common/scratch_pool.h"
#include "common/status.h"

namespace fa {
namespace {

int dbias_finish_blocks(const KernelParams& p) {
  const int64_t total = int64_t(p.dbias_sum_b ? 1 : p.batch) * (p.dbias_sum_h ? 1 : p.heads_q) *
                        (p.dbias_sum_row ? 1 : p.seqlen_q) * int64_t(p.seqlen_k);
  const int64_t blocks = (total + kAuxThreads - 1) / kAuxThreads;
  return int(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace

fa_status run_backward(KernelParams& p, bool bf16, bool deterministic, void* workspace,
                       uint64_t workspace_bytes, const LaunchContext& ctx) {
  const BwdPlan plan = plan_backward(p, deterministic);
  StreamBuffer owned(ctx.device, ctx.stream);
  char* ws = static_cast<char*>(workspace);
  if (plan.total_bytes > 0 && (ws == nullptr || workspace_bytes < plan.total_bytes)) {
    FA_CUDA_CHECK(owned.allocate(plan.total_bytes));
    ws = static_cast<char*>(owned.get());
  }

  apply_plan(p, plan, ws, deterministic);

  const dim3 aux_grid(ceil_div(p.seqlen_q, kAuxRows), p.heads_q, p.batch);

  // 2. dbias buffers.
  if (plan.dbias_elements > 0) {
    FA_CUDA_CHECK(cudaMemsetAsync(p.dbias_accum, 0, plan.dbias_elements * 4, ctx.stream));
  } else if (plan.dbias_mode == kDbiasDirect && (p.windowed() || p.cu_q != nullptr)) {
    FA_LAUNCH(dbias_finish_kernel, dbias_finish_blocks(p), kAuxThreads, 0, ctx.stream, p,
              kDbiasZero);
    FA_CUDA_CHECK(cudaGetLastError());
  }

  const bool any_rows = !empty_grid(aux_grid);  // nested: some query sequence is non-empty

  // 3. preprocess.
  if (any_rows) {
    if (bf16) {
      FA_LAUNCH(bwd_preprocess_kernel<__nv_bfloat16>, aux_grid, kAuxThreads, 0, ctx.stream, p);
    } else {
      FA_LAUNCH(bwd_preprocess_kernel<__half>, aux_grid, kAuxThreads, 0, ctx.stream, p);
    }
    FA_CUDA_CHECK(cudaGetLastError());
  }

  // 3b. the sinks' gradient, from the preprocess's D and lse.
  if (p.dsinks != nullptr) {
    FA_LAUNCH(dsinks_kernel, p.heads_q, kAuxThreads, 0, ctx.stream, p);
    FA_CUDA_CHECK(cudaGetLastError());
  }

  // 4. main kernel; 5. dQ.
  if (const fa_status s = launch_backward_main(p, bf16, ctx)) return s;
  if (deterministic) {
    if (const fa_status s = launch_backward_dq(p, bf16, ctx)) return s;
  } else if (any_rows) {
    if (bf16) {
      FA_LAUNCH(dq_convert_kernel<__nv_bfloat16>, aux_grid, kAuxThreads, 0, ctx.stream, p);
    } else {
      FA_LAUNCH(dq_convert_kernel<__half>, aux_grid, kAuxThreads, 0, ctx.stream, p);
    }
    FA_CUDA_CHECK(cudaGetLastError());
  }

  // 6. dbias from the buffer.
  if (plan.dbias_elements > 0) {
    const int what = plan.dbias_mode == kDbiasAtomic ? kDbiasFromAccum : kDbiasFromPartials;
    FA_LAUNCH(dbias_finish_kernel, dbias_finish_blocks(p), kAuxThreads, 0, ctx.stream, p, what);
    FA_CUDA_CHECK(cudaGetLastError());
  }
  return FA_OK;
}

}  // namespace fa
