// seqlens.cpp: cu_seqlens value checks.
#include "api/seqlens.h"

#include <cinttypes>

#include "common/status.h"

namespace fa {

fa_status check_cu_seqlens_values(const char* name, const int32_t* values, int64_t batch,
                                  int64_t rows, const char* rows_owner, int64_t* longest) {
  if (values[0] != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: first value must be 0, got %d", name, values[0]);
  }
  int64_t max_length = 0;
  for (int64_t index = 1; index <= batch; ++index) {
    if (values[index] < values[index - 1]) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "%s: not non-decreasing at index %" PRId64 " (%d after %d)", name, index,
                  values[index], values[index - 1]);
    }
    const int64_t length = int64_t(values[index]) - values[index - 1];
    if (length > max_length) max_length = length;
  }
  if (values[batch] > rows) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: last value %d exceeds the %" PRId64 " packed rows of %s", name,
                values[batch], rows, rows_owner);
  }
  *longest = max_length;
  return FA_OK;
}

fa_status resolve_max_seqlen(const char* name, int32_t given, int64_t longest,
                             int64_t* max_seqlen) {
  if (given < 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected >= 0 (0 = computed), got %d", name, given);
  }
  if (given > 0 && given < longest) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: %d is less than the longest sequence (%" PRId64 ")", name, given, longest);
  }
  *max_seqlen = given > 0 ? given : longest;
  return FA_OK;
}

}  // namespace fa
