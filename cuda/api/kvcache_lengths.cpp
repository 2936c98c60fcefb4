// kvcache_lengths.cpp: the untrusted path's checks of cache_seqlens and block_table values
// (host copies); see kvcache_validate.h.
#include <cinttypes>
#include <unordered_map>
#include <unordered_set>

#include "api/kvcache_validate.h"
#include "common/status.h"

namespace fa {
namespace {

// The physical row (page * page_size + offset) that row r of sequence b lives in.
int64_t physical_row(const KvCacheParams& p, const int32_t* table, int64_t stride, int64_t b,
                     int64_t r) {
  if (table == nullptr) return b * p.capacity + r;
  return int64_t(table[b * stride + r / p.page_size]) * p.page_size + r % p.page_size;
}

// Rows written by the append: two writers of one row (or a row written by one sequence and
// read by another) would make the result depend on the order the sequences run in.
fa_status check_written_rows(const KvCacheParams& p, const int32_t* seqlens,
                             const int32_t* table, int64_t stride) {
  std::unordered_map<int64_t, int64_t> writer;  // physical row -> sequence
  std::unordered_set<int64_t> written_pages;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t r = seqlens[b]; r < seqlens[b] + p.seqlen_new; ++r) {
      const int64_t row = physical_row(p, table, stride, b, r);
      const auto [it, fresh] = writer.emplace(row, b);
      if (!fresh) {
        return fail(FA_ERR_INVALID_ARGUMENT,
                    "block_table: sequences %" PRId64 " and %" PRId64 " both append to row %" PRId64
                    " of page %" PRId64 " (appended rows may not share memory)",
                    it->second, b, row % p.page_size, row / p.page_size);
      }
      written_pages.insert(row / p.page_size);
    }
  }
  // Pages shared between sequences are fine for rows nobody writes.
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t r = 0; r < seqlens[b]; ++r) {
      const int64_t row = physical_row(p, table, stride, b, r);
      if (written_pages.count(row / p.page_size) == 0) {
        r = (r / p.page_size + 1) * p.page_size - 1;  // the whole page is read-only
        continue;
      }
      const auto it = writer.find(row);
      if (it != writer.end()) {
        return fail(FA_ERR_INVALID_ARGUMENT,
                    "block_table: sequence %" PRId64 " appends to row %" PRId64 " of page %" PRId64
                    ", which sequence %" PRId64 " reads (a written row may not be shared)",
                    it->second, row % p.page_size, row / p.page_size, b);
      }
    }
  }
  return FA_OK;
}

}  // namespace

fa_status check_cache_lengths(const KvCacheParams& p, const int32_t* seqlens,
                              const int32_t* table, int64_t stride, int64_t* longest) {
  *longest = 0;
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t length = seqlens[b];
    if (length < 0) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "cache_seqlens: expected lengths >= 0, got %" PRId64 " for sequence %" PRId64,
                  length, b);
    }
    if (length + p.seqlen_new > p.capacity) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "cache_seqlens: sequence %" PRId64 " holds %" PRId64 " rows; with %" PRId64
                  " new rows that exceeds the cache capacity %" PRId64,
                  b, length, p.seqlen_new, p.capacity);
    }
    if (length + p.seqlen_new > *longest) *longest = length + p.seqlen_new;
  }
  if (table != nullptr) {
    for (int64_t b = 0; b < p.batch; ++b) {
      const int64_t used_rows = seqlens[b] + (p.appends() ? p.seqlen_new : 0);
      const int64_t used_pages = (used_rows + p.page_size - 1) / p.page_size;
      for (int64_t page = 0; page < used_pages; ++page) {
        const int64_t index = table[b * stride + page];
        if (index < 0 || index >= p.num_pages) {
          return fail(FA_ERR_INVALID_ARGUMENT,
                      "block_table: entry [%" PRId64 ", %" PRId64 "] is %" PRId64
                      ", expected a page index in [0, %" PRId64 ") (num_pages of k_cache)",
                      b, page, index, p.num_pages);
        }
      }
    }
  }
  if (!p.appends()) return FA_OK;
  return check_written_rows(p, seqlens, table, stride);
}

}  // namespace fa
