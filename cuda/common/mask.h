// mask.h: which keys a query row sees. Shared by every backend.
#pragma once

#include <cstdint>

#include "philox.h"  // FA_HOST_DEVICE

namespace fa {

// Bottom-right aligned causal mask: row i of a (seqlen_q x seqlen_k) problem sees key j
// iff j <= i + (seqlen_k - seqlen_q). With seqlen_q > seqlen_k the first rows see nothing.
FA_HOST_DEVICE bool causal_visible(int64_t i, int64_t j, int64_t seqlen_q, int64_t seqlen_k) {
  return j <= i + (seqlen_k - seqlen_q);
}

// One past the last key row i sees: keys [0, causal_key_end) are visible. May be <= 0.
FA_HOST_DEVICE int64_t causal_key_end(int64_t i, int64_t seqlen_q, int64_t seqlen_k) {
  const int64_t end = i + (seqlen_k - seqlen_q) + 1;
  return end < seqlen_k ? end : seqlen_k;
}

}  // namespace fa
