// score_checks.h: the score features of ABI 2 (sliding window, softcap, ALiBi slopes,
// attention sinks and their gradient): values, shapes and dtypes, each failing with a
// message that names the argument ("window", "softcap", "sinks", "alibi_slopes", "dsinks").
#pragma once

#include <vector>

#include "api/request.h"

namespace fa {

// window_left/right >= -1, and with FA_FLAG_CAUSAL a right of -1 or 0; softcap finite, >= 0.
fa_status check_score_scalars(const Request& request);

// sinks float32 [Hq]; alibi_slopes float32 [Hq] or [B, Hq]; dsinks float32 [Hq], present
// exactly when sinks is. Needs the problem's batch and heads (after check_shapes).
fa_status check_score_tensors(const Request& request, const Problem& problem);

// dsinks, an output, shares no byte with any other tensor of the call (the existing
// per-tensor overlap check covers the elements of one tensor only).
fa_status check_dsinks_disjoint(const Request& request, const std::vector<NamedTensor>& all);

}  // namespace fa
