// wgmma.h: warpgroup matrix multiply-accumulate (wgmma.mma_async m64nNk16, fp32 accumulators)
// and the shared-memory descriptors of its operands.
//
// Accumulators: a warpgroup computes a 64 x N tile; warp w of the group holds rows
// 16w..16w+15 as `float d[N/8][4]`, exactly the sm80 mma.sync m16n8 C layout of N/8 n8
// tiles (d[j][0..1] = row g, columns 8j+2t, 8j+2t+1; d[j][2..3] = row g+8; g = lane/4,
// t = lane%4). So an sm80 warp tile `float[1][N/8][4]` and its helpers (masking, softmax,
// conversion to A fragments) apply to each warp unchanged.
// A from registers: four 32-bit registers per k16 step, the mma.sync m16n8k16 A fragment of
// the warp's 16 rows (sm80 acc_to_a builds it from two n8 accumulator tiles).
//
// Shared-memory operands are tiles as the TMA writes them with 128-byte swizzling: rows of
// 64 elements (128 bytes), 16-byte chunk c of row r stored at chunk c ^ (r % 8), the tile
// 1024-byte aligned; a head dim above 64 is split into column blocks of 64 stored one
// after another ([block][rows][64]).
//   K-major (rows = M or N, k contiguous), e.g. Q and K in Q K^T: the k16 step kk starts
//     32 (kk % 4) bytes into column block kk / 4; 8-row groups are 1024 bytes apart.
//   MN-major (rows = k, n contiguous), e.g. V in P V (no transposed copy: the transpose
//     bit of the instruction): step kk starts 16 rows = 2048 bytes further; 8-row groups
//     are 1024 bytes apart, and the 64-column blocks of n `block_bytes` apart.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace fa {
namespace sm90 {

// ---------------------------------------------------------------------------------------
// Descriptors (PTX ISA "Matrix Descriptor Format"): start address, leading-dimension byte
// offset and stride-dimension byte offset, each >> 4, and the swizzle mode.

__device__ __forceinline__ uint64_t sw128_descriptor(uint32_t address, uint32_t leading_bytes) {
  constexpr uint64_t kGroupBytes = 1024;  // stride between 8-row groups
  constexpr uint64_t kSwizzle128B = uint64_t(1) << 62;
  return uint64_t((address & 0x3FFFF) >> 4) | (uint64_t(leading_bytes >> 4) << 16) |
         ((kGroupBytes >> 4) << 32) | kSwizzle128B;
}

// K-major tile (the leading offset is unused with swizzling: 16 by convention).
__device__ __forceinline__ uint64_t k_major_descriptor(uint32_t tile) {
  return sw128_descriptor(tile, 16);
}

// MN-major tile of `rows` k-rows: the leading offset is the column-block stride.
__device__ __forceinline__ uint64_t mn_major_descriptor(uint32_t tile, int rows) {
  return sw128_descriptor(tile, uint32_t(rows) * 128u);
}

// A descriptor moved by `bytes` (a multiple of 16; addresses stay below 2^18, so the
// start-address field never carries into its neighbour).
__device__ __forceinline__ uint64_t advance(uint64_t descriptor, uint32_t bytes) {
  return descriptor + (bytes >> 4);
}

// Offset of k16 step kk in a K-major tile of `rows` rows.
__device__ __forceinline__ uint32_t k_major_step(int kk, int rows) {
  return uint32_t((kk % 4) * 32 + (kk / 4) * rows * 128);
}

// Offset of k16 step kk in an MN-major tile.
__device__ __forceinline__ uint32_t mn_major_step(int kk) { return uint32_t(kk * 16 * 128); }

// ---------------------------------------------------------------------------------------
// Instructions. The operand lists are spelled out by the macros below (PTX takes the
// accumulators as one brace list of N/2 registers).

// "%x0, %x1, ..., %x9"
#define FA_R10(x)                                                                             \
  "%" #x "0, %" #x "1, %" #x "2, %" #x "3, %" #x "4, %" #x "5, %" #x "6, %" #x "7, %" #x "8, " \
  "%" #x "9"
#define FA_ACC_LIST_32 "{" FA_R10() ", " FA_R10(1) ", " FA_R10(2) ", %30, %31}"
#define FA_ACC_LIST_64 \
  "{" FA_R10() ", " FA_R10(1) ", " FA_R10(2) ", " FA_R10(3) ", " FA_R10(4) ", " FA_R10(5) \
  ", %60, %61, %62, %63}"
#define FA_ACC_LIST_128                                                                   \
  "{" FA_R10() ", " FA_R10(1) ", " FA_R10(2) ", " FA_R10(3) ", " FA_R10(4) ", " FA_R10(5) \
  ", " FA_R10(6) ", " FA_R10(7) ", " FA_R10(8) ", " FA_R10(9) ", " FA_R10(10) ", "        \
  FA_R10(11) ", %120, %121, %122, %123, %124, %125, %126, %127}"

// Accumulator operands: flat register i is d[i / 4][i % 4].
#define FA_D(i) "+f"(d[(i) / 4][(i) % 4])
#define FA_D8(i) \
  FA_D(i), FA_D(i + 1), FA_D(i + 2), FA_D(i + 3), FA_D(i + 4), FA_D(i + 5), FA_D(i + 6), FA_D(i + 7)
#define FA_D32(i) FA_D8(i), FA_D8(i + 8), FA_D8(i + 16), FA_D8(i + 24)
#define FA_ACC_OPS_32 FA_D32(0)
#define FA_ACC_OPS_64 FA_D32(0), FA_D32(32)
#define FA_ACC_OPS_128 FA_D32(0), FA_D32(32), FA_D32(64), FA_D32(96)

// D (64 x N) (+)= A (descriptor) B (descriptor), both K-major. ABREG: "%n, %n+1" and PREG
// "%n+2" for n = REGS accumulator registers.
#define FA_WGMMA_SS(N, REGS, TYPES, ABREG, PREG)                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PREG ", 0;\n"                          \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32" TYPES " " FA_ACC_LIST_##REGS \
               ", " ABREG ", p, 1, 1, 0, 0;\n}\n"                                         \
               : FA_ACC_OPS_##REGS                                                        \
               : "l"(a_desc), "l"(b_desc), "r"(scale_d))

// D (64 x N) (+)= A (registers) B (descriptor, MN-major: transpose bit set).
#define FA_WGMMA_RS(N, REGS, TYPES, ABREG, PREG)                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PREG ", 0;\n"                          \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32" TYPES " " FA_ACC_LIST_##REGS \
               ", " ABREG ", p, 1, 1, 1;\n}\n"                                            \
               : FA_ACC_OPS_##REGS                                                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(scale_d))

// d (64 x 8 NT per warpgroup) = A B + (accumulate ? d : 0), A and B K-major in shared memory.
template <typename T, int NT>
__device__ __forceinline__ void wgmma_ss(float (&d)[NT][4], uint64_t a_desc, uint64_t b_desc,
                                         bool accumulate) {
  const int scale_d = accumulate ? 1 : 0;
  constexpr bool kHalf = std::is_same_v<T, __half>;
  static_assert(NT == 8 || NT == 16, "N = 64 or 128");
  if constexpr (NT == 8) {
    if constexpr (kHalf) {
      FA_WGMMA_SS(64, 32, ".f16.f16", "%32, %33", "%34");
    } else {
      FA_WGMMA_SS(64, 32, ".bf16.bf16", "%32, %33", "%34");
    }
  } else {
    if constexpr (kHalf) {
      FA_WGMMA_SS(128, 64, ".f16.f16", "%64, %65", "%66");
    } else {
      FA_WGMMA_SS(128, 64, ".bf16.bf16", "%64, %65", "%66");
    }
  }
}

// d (64 x 8 NT per warpgroup) = A B + (accumulate ? d : 0), A a register fragment (k16),
// B MN-major in shared memory.
template <typename T, int NT>
__device__ __forceinline__ void wgmma_rs(float (&d)[NT][4], const uint32_t (&a)[4],
                                         uint64_t b_desc, bool accumulate) {
  const int scale_d = accumulate ? 1 : 0;
  constexpr bool kHalf = std::is_same_v<T, __half>;
  static_assert(NT == 8 || NT == 16 || NT == 32, "N = 64, 128 or 256");
  if constexpr (NT == 8) {
    if constexpr (kHalf) {
      FA_WGMMA_RS(64, 32, ".f16.f16", "{%32, %33, %34, %35}, %36", "%37");
    } else {
      FA_WGMMA_RS(64, 32, ".bf16.bf16", "{%32, %33, %34, %35}, %36", "%37");
    }
  } else if constexpr (NT == 16) {
    if constexpr (kHalf) {
      FA_WGMMA_RS(128, 64, ".f16.f16", "{%64, %65, %66, %67}, %68", "%69");
    } else {
      FA_WGMMA_RS(128, 64, ".bf16.bf16", "{%64, %65, %66, %67}, %68", "%69");
    }
  } else {
    if constexpr (kHalf) {
      FA_WGMMA_RS(256, 128, ".f16.f16", "{%128, %129, %130, %131}, %132", "%133");
    } else {
      FA_WGMMA_RS(256, 128, ".bf16.bf16", "{%128, %129, %130, %131}, %132", "%133");
    }
  }
}

#undef FA_WGMMA_RS
#undef FA_WGMMA_SS
#undef FA_ACC_OPS_128
#undef FA_ACC_OPS_64
#undef FA_ACC_OPS_32
#undef FA_D32
#undef FA_D8
#undef FA_D
#undef FA_ACC_LIST_128
#undef FA_ACC_LIST_64
#undef FA_ACC_LIST_32
#undef FA_R10

// ---------------------------------------------------------------------------------------
// Backward addition (bwd_kernel.h): both operands MN-major in shared memory (the transpose
// bits of A and B set). A (64 x k16) is then stored k-rows x 64 m, one 128-byte swizzled
// row per k, exactly like an MN-major B: `mn_major_descriptor` and `mn_major_step` address
// it. Used for dQ = dS K with dS^T and K stored as they are produced / loaded.

// d (64 x 8 NT per warpgroup, N = 32 or 64) = A B + (accumulate ? d : 0).
template <typename T, int NT>
__device__ __forceinline__ void wgmma_ss_mn(float (&d)[NT][4], uint64_t a_desc, uint64_t b_desc,
                                            bool accumulate) {
  static_assert(NT == 4 || NT == 8, "N = 32 or 64");
  const int scale_d = accumulate ? 1 : 0;
#define FA_BWD_D(i) "+f"(d[(i) / 4][(i) % 4])
#define FA_BWD_D8(i)                                                                        \
  FA_BWD_D(i), FA_BWD_D(i + 1), FA_BWD_D(i + 2), FA_BWD_D(i + 3), FA_BWD_D(i + 4),          \
      FA_BWD_D(i + 5), FA_BWD_D(i + 6), FA_BWD_D(i + 7)
#define FA_BWD_R16                                                                           \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define FA_BWD_MN64(TYPES)                                                                    \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                  \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32" TYPES " {" FA_BWD_R16            \
               ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, " \
               "%31}, %32, %33, p, 1, 1, 1, 1;\n}\n"                                         \
               : FA_BWD_D8(0), FA_BWD_D8(8), FA_BWD_D8(16), FA_BWD_D8(24)                    \
               : "l"(a_desc), "l"(b_desc), "r"(scale_d))
#define FA_BWD_MN32(TYPES)                                                                    \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                  \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32" TYPES " {" FA_BWD_R16            \
               "}, %16, %17, p, 1, 1, 1, 1;\n}\n"                                            \
               : FA_BWD_D8(0), FA_BWD_D8(8)                                                  \
               : "l"(a_desc), "l"(b_desc), "r"(scale_d))
  if constexpr (NT == 8) {
    if constexpr (std::is_same_v<T, __half>) {
      FA_BWD_MN64(".f16.f16");
    } else {
      FA_BWD_MN64(".bf16.bf16");
    }
  } else {
    if constexpr (std::is_same_v<T, __half>) {
      FA_BWD_MN32(".f16.f16");
    } else {
      FA_BWD_MN32(".bf16.bf16");
    }
  }
#undef FA_BWD_MN32
#undef FA_BWD_MN64
#undef FA_BWD_R16
#undef FA_BWD_D8
#undef FA_BWD_D
}

}  // namespace sm90
}  // namespace fa
