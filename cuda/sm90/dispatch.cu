// dispatch.cu: which forward calls the sm90 kernels take, and the head-dim bucket.
//
// Taken: compute capability 9.0 (sm_90a code: H100, H200), operands (and a bias) the TMA
// can address (tma.h), unless FLASHATTN_SM90=0. Left to sm80: a dropout probability so
// close to 1 that its threshold is 65536 (nothing kept; the sm90 kernels compare 16-bit
// halves against a 16-bit threshold).
// Buckets as in sm80: head_dim <= 64, <= 128, <= 256, smaller dims zero-padded.
#include <cstdlib>
#include <cstring>

#include "sm90/sm90.h"

namespace fa {
namespace sm90 {

bool available(const sm80::LaunchContext& ctx) {
  // FLASHATTN_SM90=0 forces sm80 (A/B timing, tests); read once.
  static const bool enabled = [] {
    const char* value = std::getenv("FLASHATTN_SM90");
    return value == nullptr || std::strcmp(value, "0") != 0;
  }();
  return enabled && ctx.compute_capability == 90;
}

fa_status try_forward(const sm80::KernelParams& p, bool bf16, const sm80::LaunchContext& ctx,
                      bool* launched) {
  *launched = false;
  if (!available(ctx)) return FA_OK;
  if (p.has_dropout && p.dropout_threshold > 0xffffu) return FA_OK;
  // Every key sequence empty (nested): nothing for the TMA to describe; sm80 writes the
  // zeros and -inf.
  if (p.seqlen_k == 0 || (p.cu_k != nullptr && p.total_k == 0)) return FA_OK;
  if (p.head_dim <= 64) return launch_fwd_d64(p, bf16, ctx, launched);
  if (p.head_dim <= 128) return launch_fwd_d128(p, bf16, ctx, launched);
  return launch_fwd_d256(p, bf16, ctx, launched);
}

}  // namespace sm90
}  // namespace fa
