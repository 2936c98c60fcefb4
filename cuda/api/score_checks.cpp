// score_checks.cpp: checks of the score features (see score_checks.h).
#include "api/score_checks.h"

#include <cinttypes>
#include <cmath>
#include <cstdint>

#include "api/tensor_checks.h"
#include "common/status.h"

namespace fa {
namespace {

// One float32 per query head: sinks and dsinks.
fa_status check_per_head(const char* name, const fa_tensor& tensor, const Problem& problem) {
  if (const fa_status s = check_ndim(name, tensor, 1, "[Hq]")) return s;
  if (const fa_status s = check_dtype_is(name, tensor, FA_FLOAT32, "one float32 per query head"))
    return s;
  const int64_t shape[] = {problem.heads_q};
  return check_shape(name, tensor, shape, "[Hq] from q");
}

fa_status check_alibi_slopes(const fa_tensor& slopes, const Problem& problem) {
  const char* name = "alibi_slopes";
  if (slopes.ndim != 1 && slopes.ndim != 2) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: expected 1 dimension [Hq] or 2 [B, Hq], got %d (shape %s)", name,
                slopes.ndim, shape_string(slopes).c_str());
  }
  if (const fa_status s = check_dtype_is(name, slopes, FA_FLOAT32, "slopes are float32"))
    return s;
  if (slopes.ndim == 1) {
    const int64_t shape[] = {problem.heads_q};
    return check_shape(name, slopes, shape, "[Hq] from q");
  }
  const int64_t shape[] = {problem.batch, problem.heads_q};
  if (const fa_status s = check_shape(name, slopes, shape, "[B, Hq] from q")) return s;
  // The kernels keep the batch stride in 32 bits.
  if (slopes.stride[0] > INT32_MAX || slopes.stride[0] < INT32_MIN) {
    return fail(FA_ERR_UNSUPPORTED, "%s: batch stride %lld does not fit in 32 bits", name,
                static_cast<long long>(slopes.stride[0]));
  }
  return FA_OK;
}

}  // namespace

fa_status check_score_scalars(const Request& request) {
  if (request.reserved2 != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "reserved2: must be 0, got %d", request.reserved2);
  }
  if (request.window_left < -1 || request.window_right < -1) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "window: expected left and right >= -1 (-1 = unbounded), got (%d, %d)",
                request.window_left, request.window_right);
  }
  if ((request.flags & FA_FLAG_CAUSAL) != 0 && request.window_right > 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "window: causal means right = 0; with FA_FLAG_CAUSAL right must be -1 or 0, "
                "got (%d, %d)",
                request.window_left, request.window_right);
  }
  if (!std::isfinite(request.softcap) || request.softcap < 0.0f) {
    return fail(FA_ERR_INVALID_ARGUMENT, "softcap: expected 0 (off) or a finite value > 0, got %g",
                double(request.softcap));
  }
  return FA_OK;
}

fa_status check_score_tensors(const Request& request, const Problem& problem) {
  if (present(request.sinks)) {
    if (const fa_status s = check_per_head("sinks", *request.sinks, problem)) return s;
  }
  if (present(request.alibi_slopes)) {
    if (const fa_status s = check_alibi_slopes(*request.alibi_slopes, problem)) return s;
  }
  if (!request.backward) return FA_OK;
  if (present(request.sinks) && !present(request.dsinks)) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "dsinks: required when sinks is given (float32 [Hq], the sinks' gradient)");
  }
  if (present(request.dsinks)) {
    if (!present(request.sinks)) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "dsinks: given without sinks (dsinks is the sinks' gradient)");
    }
    if (const fa_status s = check_per_head("dsinks", *request.dsinks, problem)) return s;
  }
  return FA_OK;
}

fa_status check_dsinks_disjoint(const Request& request, const std::vector<NamedTensor>& all) {
  if (!present(request.dsinks)) return FA_OK;
  return check_disjoint("dsinks", *request.dsinks, all);
}

}  // namespace fa
