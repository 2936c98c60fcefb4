// philox.h: the dropout mask, a pure function of (seed, offset, b, h, i, j).
//
// Generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (j / 8, i, b * Hq + h, offset)           all uint32
// One call yields four 32-bit words = eight 16-bit draws, one per column j..j+7 of the
// group: column j uses word (j % 8) / 2, its low half when j is even, its high half when odd.
// Element (b, h, i, j) is kept iff draw >= round(p * 65536); a kept value is scaled by
// 1 / (1 - p). i and j are the row and column inside the sequence (nested batches too).
// The CPU backend and every GPU kernel call these functions, so their masks agree bit
// for bit whatever the tiling.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FA_HOST_DEVICE inline
#endif

namespace fa {

struct Philox4 {
  uint32_t x, y, z, w;
};

FA_HOST_DEVICE void mul_hi_lo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t product = uint64_t(a) * uint64_t(b);
  hi = uint32_t(product >> 32);
  lo = uint32_t(product);
#endif
}

// One round: two 32 x 32 -> 64-bit products, the key mixed into the high halves.
FA_HOST_DEVICE Philox4 philox_round(Philox4 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  uint32_t hi0, lo0, hi1, lo1;
  mul_hi_lo(kMul0, counter.x, hi0, lo0);
  mul_hi_lo(kMul1, counter.z, hi1, lo1);
  return Philox4{hi1 ^ counter.y ^ key0, lo1, hi0 ^ counter.w ^ key1, lo0};
}

constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u, kPhiloxWeyl1 = 0xBB67AE85u;

FA_HOST_DEVICE Philox4 philox4x32_10(Philox4 counter, uint32_t key0, uint32_t key1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    counter = philox_round(counter, key0, key1);
    key0 += kPhiloxWeyl0;
    key1 += kPhiloxWeyl1;
  }
  return counter;
}

// The round keys of a seed, for kernels that read them from their parameters (constant
// memory) instead of adding the Weyl constants per round.
struct PhiloxKeys {
  uint32_t k0[10], k1[10];
};

FA_HOST_DEVICE PhiloxKeys philox_keys(uint64_t seed) {
  PhiloxKeys keys{};
  uint32_t key0 = uint32_t(seed), key1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    keys.k0[round] = key0;
    keys.k1[round] = key1;
    key0 += kPhiloxWeyl0;
    key1 += kPhiloxWeyl1;
  }
  return keys;
}

// philox4x32_10 with the round keys given.
FA_HOST_DEVICE Philox4 philox4x32_10(Philox4 counter, const PhiloxKeys& keys) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    counter = philox_round(counter, keys.k0[round], keys.k1[round]);
  }
  return counter;
}

// The eight 16-bit draws for columns [8 * column_group, 8 * column_group + 8) of row i.
FA_HOST_DEVICE Philox4 dropout_draws(uint64_t seed, uint32_t offset, uint32_t batch_head,
                                     uint32_t row, uint32_t column_group) {
  return philox4x32_10(Philox4{column_group, row, batch_head, offset}, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Draw t (0..7) of a group.
FA_HOST_DEVICE uint32_t dropout_draw(const Philox4& draws, int t) {
  const uint32_t word = (t >> 1) == 0 ? draws.x : (t >> 1) == 1 ? draws.y
                      : (t >> 1) == 2 ? draws.z : draws.w;
  return (t & 1) ? (word >> 16) : (word & 0xffffu);
}

// round(p * 65536): draws at or above it are kept. p in [0, 1).
FA_HOST_DEVICE uint32_t dropout_threshold(float p) {
  return uint32_t(double(p) * 65536.0 + 0.5);
}

FA_HOST_DEVICE bool dropout_keep(uint64_t seed, uint32_t offset, uint32_t batch_head, uint32_t row,
                                 uint32_t column, uint32_t threshold) {
  const Philox4 draws = dropout_draws(seed, offset, batch_head, row, column >> 3);
  return dropout_draw(draws, int(column & 7u)) >= threshold;
}

}  // namespace fa
