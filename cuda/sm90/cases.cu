// cases.cu: which cases the sm90 kernels take (see sm90.h).
#include "sm90/sm90.h"

namespace fa {
namespace sm90 {

bool takes_forward(const KernelParams& p) {
  if (p.has_dropout && p.dropout_threshold > 0xffffu) return false;
  return p.seqlen_k > 0 && (p.cu_k == nullptr || p.total_k > 0);
}

bool takes_backward(const KernelParams& p) {
  if (p.has_bias || p.dbias_mode != kDbiasNone || !p.accumulate_dq) return false;
  // 256: the K, V, Q and dO stages would not fit next to dS and dQ.
  if (p.head_dim_pad != 64 && p.head_dim_pad != 128) return false;
  if (p.seqlen_q == 0 || p.seqlen_k == 0) return false;
  // Softcap or ALiBi with dropout at head dim 128: no kernel (it would spill, bwd_d128.cu).
  const bool score_mods = p.has_score_mods();
  if (score_mods && p.has_dropout && p.head_dim_pad == 128) return false;
  return p.cu_q == nullptr || (p.total_q > 0 && p.total_k > 0);
}

}  // namespace sm90
}  // namespace fa
