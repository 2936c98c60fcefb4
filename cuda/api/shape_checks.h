// shape_checks.h: ranks, dtypes and shapes of the attention tensors, with messages that
// name the dimension ("k: head dim 40 differs from q's 64").
#pragma once

#include "api/request.h"

namespace fa {

// q, k, v: ranks and dtypes; fills the problem's sizes (problem->nested and, for nested
// batches, problem->batch must be set).
fa_status check_qkv(const Request& request, Problem* problem);

// A tensor shaped and typed like q (out, dout, dq: reference_name "q") or like k (dk, dv).
fa_status check_like(const char* name, const fa_tensor& tensor, const char* reference_name,
                     const fa_tensor& reference, const fa_tensor& q, bool nested);

fa_status check_lse(const fa_tensor& lse, const Problem& problem);

// bias and dbias: rank and dtype (before the max lengths are known) ...
fa_status check_bias_kind(const char* name, const fa_tensor& bias);
// ... and the exact shape [B, Hq, Sq, Sk] (nested: max lengths) after.
fa_status check_bias_shape(const char* name, const fa_tensor& bias, const Problem& problem);

// int32 [B + 1], contiguous.
fa_status check_cu_seqlens_tensor(const char* name, const fa_tensor& tensor);

}  // namespace fa
