// seqlen.h: one sequence of the batch as a block sees it (offsets, lengths, key range).
#pragma once

#include <cstdint>

#include "common/kernel_params.h"
#include "common/mask.h"

namespace fa {

// One sequence of the batch as a block sees it.
//
// Nested batches: cu_seqlens may be caller-promised rather than checked (common/params.h),
// so each sequence is clamped to the packed rows and to the maximum length; broken
// promises then give wrong numbers, never accesses outside the tensors or the grid.
struct SeqInfo {
  int q_row0, k_row0;  // first global row (0 for dense batches; cu_seqlens are int32)
  int sq, sk;          // lengths

  __device__ static void clamp_sequence(const int32_t* cu, int b, int64_t total, int max_len,
                                        int& row0, int& len) {
    int64_t start = cu[b], end = cu[b + 1];
    start = start < 0 ? 0 : (start > total ? total : start);
    const int64_t limit = start + max_len < total ? start + max_len : total;
    end = end < start ? start : (end > limit ? limit : end);
    row0 = int(start);
    len = int(end - start);
  }

  __device__ SeqInfo(const KernelParams& p, int b) {
    if (p.cu_q != nullptr) {
      clamp_sequence(p.cu_q, b, p.total_q, p.seqlen_q, q_row0, sq);
      clamp_sequence(p.cu_k, b, p.total_k, p.seqlen_k, k_row0, sk);
    } else {
      q_row0 = 0;
      k_row0 = 0;
      sq = p.seqlen_q;
      sk = p.seqlen_k;
      if (p.seqused_k != nullptr) {  // a KV cache's length, on the device, clamped
        const int64_t used = int64_t(p.seqused_k[b]) + p.seqused_k_add;
        sk = used < 0 ? 0 : (used > p.seqlen_k ? p.seqlen_k : int(used));
      }
    }
  }

  // The visibility rule of this sequence (common/mask.h). Built where it is used, so the
  // window stays in the kernel's constant parameters instead of in registers.
  __device__ BasicKeyRange<int> range(const KernelParams& p) const { return p.key_range(sq, sk); }
};

}  // namespace fa
