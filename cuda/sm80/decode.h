// decode.h: the launch interface of the KV-cache attention kernel (decode_kernel.h; sm80
// instructions, the kernel of every GPU from sm80 on), one entry per head-dim bucket
// (decode_d{64,128,256}.cu, both dtypes), which cuda/api/cuda_kvcache.cu drives: append
// first (its own kernel), then this kernel, then the split combine.
#pragma once

#include <cuda_runtime.h>

#include "common/decode_params.h"
#include "common/launch.h"
#include "common/status.h"

namespace fa {
namespace sm80 {

// What the split heuristic needs to know of a bucket's kernel on this device.
struct DecodeOccupancy {
  int blocks_per_sm = 0;  // resident blocks per multiprocessor
};

// Queues the attention of p (the cache already holds any appended rows) over work items
// [0, num_items) on a persistent grid of `grid` blocks (grid <= num_items).
using DecodeLaunchFn = fa_status (*)(const DecodeParams& p, bool bf16, int num_items, int grid,
                                     const LaunchContext& ctx);
using DecodeOccupancyFn = fa_status (*)(bool bf16, const LaunchContext& ctx,
                                        DecodeOccupancy* occupancy);

fa_status launch_decode_d64(const DecodeParams&, bool, int, int, const LaunchContext&);
fa_status launch_decode_d128(const DecodeParams&, bool, int, int, const LaunchContext&);
fa_status launch_decode_d256(const DecodeParams&, bool, int, int, const LaunchContext&);
fa_status decode_occupancy_d64(bool, const LaunchContext&, DecodeOccupancy*);
fa_status decode_occupancy_d128(bool, const LaunchContext&, DecodeOccupancy*);
fa_status decode_occupancy_d256(bool, const LaunchContext&, DecodeOccupancy*);

}  // namespace sm80
}  // namespace fa
