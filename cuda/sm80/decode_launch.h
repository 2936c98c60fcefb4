// decode_launch.h: launch and occupancy of one decode_kernel configuration.
#pragma once

#include "sm80/decode.h"
#include "sm80/decode_kernel.h"

namespace fa {
namespace sm80 {

template <class Cfg>
fa_status decode_occupancy(const LaunchContext& ctx, DecodeOccupancy* occupancy) {
  constexpr int smem = Cfg::kSmemBytes;
  if (smem > ctx.max_smem_optin) {
    return fail(FA_ERR_UNSUPPORTED,
                "q: head dim %d needs %d bytes of shared memory per block, the device allows %d",
                Cfg::kHeadDim, smem, ctx.max_smem_optin);
  }
  if (const fa_status s = ensure_smem<decode_kernel<Cfg>>(ctx.device, smem)) return s;
  // The most shared memory per multiprocessor, so that the blocks the persistent grid is
  // sized for are all resident at once (the default carveout may hold only one). A hint:
  // a device that refuses it still runs the kernel, so its error is not the call's.
  if (cudaFuncSetAttribute(decode_kernel<Cfg>, cudaFuncAttributePreferredSharedMemoryCarveout,
                           int(cudaSharedmemCarveoutMaxShared)) != cudaSuccess) {
    (void)cudaGetLastError();
  }
  int blocks = 0;
  FA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, decode_kernel<Cfg>,
                                                              Cfg::kThreads, smem));
  occupancy->blocks_per_sm = blocks > 0 ? blocks : 1;
  return FA_OK;
}

template <class Cfg>
fa_status launch_decode_kernel(const DecodeParams& p, int num_items, int grid,
                               const LaunchContext& ctx) {
  if (num_items <= 0 || grid <= 0) return FA_OK;
  if (const fa_status s = ensure_smem<decode_kernel<Cfg>>(ctx.device, Cfg::kSmemBytes)) return s;
  FA_LAUNCH(decode_kernel<Cfg>, dim3(grid), Cfg::kThreads, Cfg::kSmemBytes, ctx.stream, p,
            num_items);
  FA_CUDA_CHECK(cudaGetLastError());
  return FA_OK;
}

}  // namespace sm80
}  // namespace fa

// One bucket's two entry points (both dtypes), for decode_d{64,128,256}.cu.
#define FA_DECODE_BUCKET(D)                                                                  \
  namespace fa {                                                                             \
  namespace sm80 {                                                                           \
  fa_status launch_decode_d##D(const DecodeParams& p, bool bf16, int num_items, int grid,    \
                               const LaunchContext& ctx) {                                   \
    return bf16 ? launch_decode_kernel<DecodeConfig<__nv_bfloat16, D>>(p, num_items, grid,   \
                                                                        ctx)                 \
                : launch_decode_kernel<DecodeConfig<__half, D>>(p, num_items, grid, ctx);    \
  }                                                                                          \
  fa_status decode_occupancy_d##D(bool bf16, const LaunchContext& ctx,                       \
                                  DecodeOccupancy* occupancy) {                              \
    return bf16 ? decode_occupancy<DecodeConfig<__nv_bfloat16, D>>(ctx, occupancy)           \
                : decode_occupancy<DecodeConfig<__half, D>>(ctx, occupancy);                 \
  }                                                                                          \
  }                                                                                          \
  }
