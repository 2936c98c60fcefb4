// tile.h: shared-memory tiles and register fragments of the sm80 kernels.
//
//   SmemTile          a row-major tile of 16-bit elements with XOR-swizzled 16-byte chunks
//   load_tile_async   global -> SmemTile with cp.async, zero-filled outside the valid box
// Register fragments (pack2 / unpack2, quad reductions, acc_to_a) are common/fragments.h's
// and the PTX wrappers (ldmatrix, mma, cp.async) common/ptx.h's, whose fragment layouts
// are documented there. The accumulators of two neighbouring n8 tiles are, packed to 16 bits,
// exactly the A fragment of one k16 step: that is how P goes from softmax to P V without
// shared memory.
#pragma once

#include "common/fragments.h"
#include "common/ptx.h"

namespace fa {
namespace sm80 {

// ---------------------------------------------------------------------------------------
// Shared memory tiles.
//
// ROWS x COLS 16-bit elements, row-major, COLS * 2 bytes per row (a power of two, >= 128).
// Chunk c (16 bytes = 8 elements) of row r is stored at chunk c ^ (r % 8): the 8 row
// addresses of one ldmatrix (same logical chunk, 8 consecutive rows) and the 8 chunks a
// group of lanes copies in are then spread over all 32 banks.
//
// The swizzle only touches address bits 4..6 and tiles start at multiples of the row
// size, so moving a lane's address by (16 * rows, 2 * chunks) is
//   (lane_address + rows * kRowBytes) ^ (chunks * 32)
// which is what the `at()` helpers below compute.
template <int ROWS, int COLS>
struct SmemTile {
  static constexpr int kRows = ROWS;
  static constexpr int kCols = COLS;
  static constexpr int kRowBytes = COLS * 2;
  static constexpr int kChunks = COLS / 8;
  static constexpr int kBytes = ROWS * kRowBytes;
  static_assert(kChunks >= 8 && (kChunks & (kChunks - 1)) == 0, "rows of 2^k >= 8 chunks");
  static_assert(ROWS % 16 == 0, "whole 16-row slabs");

  __device__ static __forceinline__ uint32_t offset(int row, int chunk) {
    return uint32_t(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
  }

  // Lane address for an x4 ldmatrix whose four matrices are (rows 0-7, chunk 0),
  // (rows 8-15, chunk 0), (rows 0-7, chunk 1), (rows 8-15, chunk 1): the A operand of a
  // row-major 16x16 tile, and (with .trans) the B operand of two n8 tiles stored k-major.
  __device__ static __forceinline__ uint32_t lane_rows16(uint32_t base, int lane) {
    const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
    return base + uint32_t(row * kRowBytes + (((lane >> 4) ^ (lane & 7)) << 4));
  }

  // Lane address for an x4 ldmatrix whose four matrices are (rows 0-7, chunk 0),
  // (rows 0-7, chunk 1), (rows 8-15, chunk 0), (rows 8-15, chunk 1): the B operands of
  // two n8 tiles stored n-major (rows = n, chunks = k).
  __device__ static __forceinline__ uint32_t lane_cols16(uint32_t base, int lane) {
    const int row = (lane & 7) + (lane >> 4) * 8;
    return base + uint32_t(row * kRowBytes + ((((lane >> 3) & 1) ^ (lane & 7)) << 4));
  }

  // A lane address moved by `row16` 16-row slabs and `chunk2` pairs of chunks.
  __device__ static __forceinline__ uint32_t at(uint32_t lane_address, int row16, int chunk2) {
    return (lane_address + uint32_t(row16 * 16 * kRowBytes)) ^ uint32_t(chunk2 * 32);
  }
};

// Copies rows [0, rows_valid) x columns [0, cols_valid) of a ROWS x COLS global tile
// (row stride `stride` elements, columns contiguous) into a swizzled SmemTile with
// cp.async; everything outside is zero-filled. All THREADS threads of the block call it.
template <int ROWS, int COLS, int THREADS, typename T>
__device__ __forceinline__ void load_tile_async(uint32_t dst, const T* src, int64_t stride,
                                                int rows_valid, int cols_valid, int tid) {
  using Tile = SmemTile<ROWS, COLS>;
  constexpr int kChunks = Tile::kChunks;
  static_assert(THREADS % kChunks == 0, "a thread keeps its column chunk");
  constexpr int kRowsPerPass = THREADS / kChunks;
  static_assert(ROWS % kRowsPerPass == 0, "whole passes");
  const int chunk = tid % kChunks;
  const int row0 = tid / kChunks;
  const bool col_ok = chunk * 8 < cols_valid;
  const T* p = src + int64_t(row0) * stride + chunk * 8;
  const int64_t step = int64_t(kRowsPerPass) * stride;
#pragma unroll
  for (int pass = 0; pass < ROWS / kRowsPerPass; ++pass) {
    const int row = row0 + pass * kRowsPerPass;
    const bool ok = col_ok && row < rows_valid;
    cp_async_16(dst + Tile::offset(row, chunk), ok ? static_cast<const void*>(p)
                                                   : static_cast<const void*>(src), ok);
    p += step;
  }
}

}  // namespace sm80
}  // namespace fa
