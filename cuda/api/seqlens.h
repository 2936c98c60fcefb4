// seqlens.h: checks of a nested batch's cu_seqlens values (host copies).
#pragma once

#include <cstdint>

#include "flashattn.h"

namespace fa {

// values[0..batch] must start at 0, never decrease and end at most at `rows` (the packed
// length of `rows_owner`). On success *longest is the longest sequence.
fa_status check_cu_seqlens_values(const char* name, const int32_t* values, int64_t batch,
                                  int64_t rows, const char* rows_owner, int64_t* longest);

// A caller-given max_seqlen: >= 0, and (when given, i.e. > 0) at least the longest sequence.
// The given value wins over the computed one so that bias shapes follow the caller's.
fa_status resolve_max_seqlen(const char* name, int32_t given, int64_t longest,
                             int64_t* max_seqlen);

}  // namespace fa
