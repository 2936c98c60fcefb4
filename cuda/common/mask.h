// mask.h: which keys a query row sees. The one visibility rule of every backend (CPU, sm80,
// sm90): per element, per row, per row block and per key block, so a tile loop, a mask
// and a key-range computation can never disagree.
//
// A sliding window [left, right] (-1 = unbounded on that side) around the bottom-right
// aligned diagonal: with d = seqlen_k - seqlen_q, query row i sees key j iff
//   0 <= j < seqlen_k,  i + d - left <= j (left >= 0),  j <= i + d + right (right >= 0).
// Causal is the window (-1, 0); no mask at all is (-1, -1). Rows whose range is empty see
// nothing (O = 0, LSE = -inf, or the sink's logit when a sink is given).
#pragma once

#include <cstdint>

#include "common/philox.h"  // FA_HOST_DEVICE

namespace fa {

template <typename I>
struct BasicWindow {
  I left = -1;   // keys before the diagonal a row sees; -1 = all
  I right = -1;  // keys after the diagonal a row sees; -1 = all (causal: 0)
};

// The key range of query rows inside one sequence of seqlen_q x seqlen_k. I is int64_t on
// the host and int on the GPU, where the lengths are below 2^30 and the window sides are
// clamped first (kernel_params_build.h: a side as wide as the sequence is unbounded), so
// every expression below stays below 2^31.
template <typename I>
struct BasicKeyRange {
  using Index = I;
  BasicWindow<I> window;
  I seqlen_q = 0, seqlen_k = 0;

  FA_HOST_DEVICE I diagonal(I i) const { return i + seqlen_k - seqlen_q; }

  // First key row i sees (may be >= key_end(i): nothing visible).
  FA_HOST_DEVICE I key_begin(I i) const {
    if (window.left < 0) return 0;
    const I begin = diagonal(i) - window.left;
    return begin > 0 ? begin : 0;
  }

  // One past the last key row i sees (may be <= 0).
  FA_HOST_DEVICE I key_end(I i) const {
    if (window.right < 0) return seqlen_k;
    const I end = diagonal(i) + window.right + 1;
    return end < seqlen_k ? end : seqlen_k;
  }

  FA_HOST_DEVICE bool visible(I i, I j) const {
    return j >= key_begin(i) && j < key_end(i);
  }

  // Keys any of rows [row_begin, row_end) sees: [key_begin(row_begin), key_end(row_end - 1)),
  // both bounds being non-decreasing in i. Empty (end <= begin) when no row sees a key.
  FA_HOST_DEVICE I block_key_begin(I row_begin) const { return key_begin(row_begin); }
  FA_HOST_DEVICE I block_key_end(I row_end) const {
    const I last = (row_end < seqlen_q ? row_end : seqlen_q) - 1;
    return key_end(last);
  }

  // Query rows that see at least one of keys [key_begin, key_end): [row_begin, row_end).
  // Row i sees some key of the range iff key_begin(i) < key_end and key_end(i) > key_begin.
  FA_HOST_DEVICE I block_row_begin(I first_key) const {
    if (window.right < 0) return 0;
    const I row = first_key - window.right - (seqlen_k - seqlen_q);
    return row > 0 ? row : 0;
  }
  FA_HOST_DEVICE I block_row_end(I key_stop) const {
    if (window.left < 0) return seqlen_q;
    const I row = key_stop - 1 + window.left - (seqlen_k - seqlen_q) + 1;
    return row < seqlen_q ? (row > 0 ? row : 0) : seqlen_q;
  }

  // Whether every element of rows [row0, row0 + rows) x keys [col0, col0 + cols) is
  // visible (then a tile needs no element mask).
  FA_HOST_DEVICE bool tile_fully_visible(I row0, int rows, I col0, int cols) const {
    if (col0 + cols > seqlen_k) return false;
    return key_begin(row0 + rows - 1) <= col0 && key_end(row0) >= col0 + cols;
  }
};

using Window = BasicWindow<int64_t>;
using KeyRange = BasicKeyRange<int64_t>;

// Key blocks [first, last) of size block_n a row block [row_begin, row_end) must visit,
// and, when the keys are split across num_splits blocks (split-KV), split `split`'s share.
struct KeyBlocks {
  int first = 0, last = 0;  // empty when last <= first
};

template <typename I>
FA_HOST_DEVICE KeyBlocks key_blocks(const BasicKeyRange<I>& range, I row_begin, I row_end,
                                    int block_n, int split = 0, int num_splits = 1) {
  KeyBlocks blocks;
  const I begin = range.block_key_begin(row_begin);
  const I end = range.block_key_end(row_end);
  if (end <= begin) return blocks;
  const int first = int(begin / block_n), last = int((end + block_n - 1) / block_n);
  if (num_splits <= 1) {
    blocks.first = first;
    blocks.last = last;
    return blocks;
  }
  const int per_split = (last - first + num_splits - 1) / num_splits;
  const int split_first = first + split * per_split;
  const int split_last = split_first + per_split < last ? split_first + per_split : last;
  blocks.first = split_first;
  blocks.last = split_last > split_first ? split_last : split_first;
  return blocks;
}

// Query blocks [first, last) of size block_m that see at least one key of key block
// [key_begin, key_begin + block_n) (the backward's loop over query blocks).
struct QueryBlocks {
  int first = 0, last = 0;
};

template <typename I>
FA_HOST_DEVICE QueryBlocks query_blocks(const BasicKeyRange<I>& range, I key_begin,
                                        int block_n, int block_m) {
  QueryBlocks blocks;
  const I key_stop =
      key_begin + block_n < range.seqlen_k ? key_begin + block_n : range.seqlen_k;
  const I begin = range.block_row_begin(key_begin);
  const I end = range.block_row_end(key_stop);
  if (end <= begin) return blocks;
  blocks.first = int(begin / block_m);
  blocks.last = int((end + block_m - 1) / block_m);
  return blocks;
}

}  // namespace fa
