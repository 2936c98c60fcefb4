// decode.h: the launch interface of the KV-cache attention kernel (decode_kernel.h; sm80
// instructions, the kernel of every GPU from sm80 to sm90), which cuda/api/cuda_kvcache.cu
// drives: append first (its own kernel), then this kernel, then the split combine.
//
// One block attends `rows_per_block` packed rows of one (batch, kv head) over one split of
// the sequence's keys: packed row r = i * G + g is query row i of query head
// kv_head * G + g (G = Hq / Hkv), so a GQA group reads its K/V once. The key range of the
// block's rows comes from common/mask.h (key_blocks with split / num_splits), lengths from
// cache_seqlens on the device, clamped to [0, max_seqlen_k], page indices to [0, num_pages).
#pragma once

#include <cuda_runtime.h>

#include "common/kvcache_params.h"
#include "common/status.h"

namespace fa {
namespace sm80 {

// The kernel's tile shape for these parameters, for the split heuristic and the workspace.
struct DecodeTiling {
  int rows_per_block = 16;  // packed rows (i, g) per block
  int keys_per_block = 64;  // keys per pipeline stage (key_blocks' block_n)
  int blocks_per_sm = 1;    // resident blocks per multiprocessor
};
DecodeTiling decode_tiling(const KvCacheParams& p);

// Where a split launch leaves its parts: float32, part s of row (b, h, i) at
//   out:  part_out + (((s * B + b) * Hq + h) * Snew + i) * D
//   lse:  part_lse + ((s * B + b) * Hq + h) * Snew + i
// An empty split (no visible key) writes lse = -inf and leaves out unwritten.
struct DecodeLaunch {
  int num_splits = 1;        // 1: the kernel writes p.out / p.lse itself, sink included
  float* part_out = nullptr;  // num_splits > 1: the parts, sink not included
  float* part_lse = nullptr;
};

// Queues the attention of p (the cache already holds the appended rows) on `stream`.
// Rotary (when p.rotary.cos) is applied to q at load, in float32, rounded to the dtype.
fa_status launch_decode(const KvCacheParams& p, const DecodeLaunch& launch,
                        cudaStream_t stream);

}  // namespace sm80
}  // namespace fa
