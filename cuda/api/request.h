// request.h: what validation works on: both ABI argument structs seen through one lens,
// and the problem sizes the shape checks establish.
#pragma once

#include <cstdint>

#include "flashattn.h"

namespace fa {

// Both argument structs seen through one lens; tensors a struct lacks are nullptr.
struct Request {
  bool backward = false;
  const fa_tensor *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *lse = nullptr;
  const fa_tensor *bias = nullptr, *cu_seqlens_q = nullptr, *cu_seqlens_k = nullptr;
  const fa_tensor *dout = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  const fa_tensor* dbias = nullptr;
  // ABI 2 score features (common/score.h); dsinks in the backward only.
  const fa_tensor *sinks = nullptr, *alibi_slopes = nullptr, *dsinks = nullptr;
  int32_t window_left = -1, window_right = -1, reserved2 = 0;
  float softcap = 0;
  float scale = 0, dropout_p = 0;
  uint64_t seed = 0, offset = 0;
  uint32_t flags = 0;
  int32_t max_seqlen_q = 0, max_seqlen_k = 0, reserved = 0;
  uint64_t stream = 0, workspace = 0, workspace_bytes = 0;
};

struct NamedTensor {
  const char* name;
  const fa_tensor* tensor;
};

inline bool present(const fa_tensor* tensor) { return tensor != nullptr && tensor->data != 0; }

// Sizes of the problem, read from q and k.
struct Problem {
  bool nested = false;
  int32_t dtype = 0, device = 0;
  int64_t batch = 0, heads_q = 0, heads_kv = 0, head_dim = 0;
  int64_t seqlen_q = 0, seqlen_k = 0;  // dense lengths; nested: max lengths (set later)
  int64_t rows_q = 0, rows_k = 0;      // nested: packed lengths
};

}  // namespace fa
