// fwd_kernel.h: the forward kernel on Hopper (wgmma, TMA, warp specialization).
//
// Grid (query blocks, Hq, B); one block of 1 + kConsumers warpgroups computes
// BM = 64 kConsumers query rows of one (batch, head), one block per SM:
//   - warpgroup 0, the producer, gives most of its registers to the others (setmaxnreg);
//     one thread issues the TMA loads: Q once, then the K and V tiles of BN keys through a
//     ring of kStages stages, each load completing on its stage's "full" mbarrier.
//   - the other warpgroups, the consumers, own 64 query rows each. Per key tile: S = Q K^T
//     (wgmma, Q and K from shared memory), key-tail / causal mask, online softmax in
//     registers, dropout (common/dropout.h's Philox mask), O += P V (wgmma, P from registers as the A
//     operand, V read MN-major through the transpose bit). Each warp hands a stage back to
//     the producer through its "empty" mbarrier once the product that reads it completed.
//   - Within a warpgroup, S_n = Q K_n^T is issued just before O += P_{n-1} V_{n-1}, and the
//     softmax of S_n runs while that product occupies the tensor cores; O is rescaled by
//     the softmax's correction just before the next P V is issued (DeferredSoftmax).
//     Across warpgroups the warp schedulers interleave one group's softmax with the other
//     group's products.
//   - Key tiles are visited last to first, as in sm80: the masked ones (key tail, causal
//     diagonal) come first, and tiles outside the window (common/mask.h key_blocks) are
//     never loaded.
//   - Epilogue: O / l through the warpgroup's own rows of the Q tile in shared memory,
//     16-byte stores of the rows inside the sequence only (the TMA reads whole tiles, the
//     stores must not spill into a neighbouring sequence of a nested batch); LSE as sm80.
//   - Bias kernels (kBias): the producer also stages the BM x BN bias tile of each key tile
//     (TMA, one key tile ahead like K) through a ring of its own (2 stages of a 16-bit
//     bias, 1 of an fp32 one); the consumers add it to S right after Q K^T (fwd_scores.h).
//   - Dropout kernels (kDropout) load K and V in the permuted key order of fwd_scores.h, so
//     that each lane draws the Philox groups of its own scores.
//   - Score-feature kernels (kScoreMods: softcap and / or ALiBi, each a run-time uniform
//     branch inside them) cap the scores right after Q K^T and add ALiBi after the bias, in
//     the scores' units (softmax.h); the other kernels carry none of it.
// Head dims below the bucket D are zero-filled by the TMA and masked on store.
#pragma once

#include <cuda.h>

#include "common/dropout.h"
#include "common/kernel_params.h"
#include "common/fragments.h"
#include "common/mask.h"
#include "common/seqlen.h"
#include "common/tile_scheduler.h"
#include "sm90/fwd_scores.h"
#include "sm90/ptx90.h"
#include "sm90/softmax.h"
#include "sm90/wgmma.h"

// Kernel bodies exist only in the sm_90a device pass; the other passes get empty kernels
// (never launched: dispatch routes only compute capability 9.0 here).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA_SM90_DEVICE_PASS 1
#else
#define FA_SM90_DEVICE_PASS 0
#endif

namespace fa {
namespace sm90 {

// Heaviest (causal) query blocks first.
using FwdScheduler = StaticTileScheduler<true>;

// Kernel parameters: TMA descriptors of Q, K and V (dims: dim, row, head, batch) and of the
// bias (key, row, head, batch), the common KernelParams, and what fwd_launch.h derives for the
// bias and dropout kernels; by value (__grid_constant__).
struct FwdParams {
  CUtensorMap q, k, v, bias;
  CUtensorMap k_halves, v_halves;  // dropout kernels: K and V as 64-key boxes (tma.h)
  KernelParams p;
  int kv_rows = 0;              // rows of the K and V maps (Sk, or the packed total)
  uint32_t threshold2 = 0;      // dropout: the keep threshold in both 16-bit halves
  PhiloxKeys keys{};            // dropout: Philox round keys of the seed
  uint32_t bias_tile_bytes = 0;  // bias: bytes one tile's boxes bring (expect-tx)
  int bias_boxes = 0;            // boxes per tile, 128 bytes of keys each
  int bias_box_keys = 0;         // keys per box: 64 (16-bit) or 32 (fp32)
  int bias_stage_shift = 0;      // log2 of the bias ring's stages: 1 (16-bit) or 0 (fp32)
  int bias_row_step = 0, bias_head_step = 0, bias_batch_step = 0;  // 0 where broadcast
};

template <typename T_, int D_, int BN_, int STAGES_, int CONSUMERS_>
struct FwdConfig {
  using T = T_;
  static constexpr int kD = D_;             // head-dim bucket, a multiple of 64
  static constexpr int kBN = BN_;           // keys per tile
  static constexpr int kStages = STAGES_;    // K/V ring depth
  static constexpr int kConsumers = CONSUMERS_;  // consumer warpgroups, 64 query rows each
  static constexpr int kBM = 64 * kConsumers;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  // Register split after setmaxnreg: the producer keeps the minimum, the consumers share
  // the rest of the 64K registers (multiples of 8, at most 240).
  static constexpr int kProducerRegs = 24;
  static constexpr int kRegsLeft = (65536 - 128 * kProducerRegs) / (128 * kConsumers) / 8 * 8;
  static constexpr int kConsumerRegs = kRegsLeft < 240 ? kRegsLeft : 240;

  static constexpr int kNS = kBN / 8;   // n8 tiles of S per warp
  static constexpr int kDS = kD / 8;    // n8 tiles of O per warp
  static constexpr int kPK = kBN / 16;  // k16 steps of P V
  static_assert(kD % 64 == 0, "whole 128-byte column blocks");

  static constexpr int kColBlocks = kD / 64;
  static constexpr int kQBytes = kBM * kD * 2;
  static constexpr int kTileBytes = kBN * kD * 2;  // one K or V stage
  // Bias ring (bias kernels): two BM x BN tiles of a 16-bit bias or one of an fp32 bias,
  // each stored as boxes of 128 bytes of keys x BM rows.
  static constexpr int kBiasRingBytes = 4 * kBM * kBN;
  static constexpr int kBiasBoxBytes = kBM * 128;
  static constexpr int body_bytes(bool bias) {
    return kQBytes + 2 * kStages * kTileBytes + (bias ? kBiasRingBytes : 0);
  }
  // Barriers: q_full, per K/V stage 4, per bias stage (2) 2.
  static constexpr int kBarriers = 1 + 4 * kStages + 4;
  static constexpr int kBarrierBytes = 8 * kBarriers;
  static_assert(kBarrierBytes <= 512, "the barriers fit the larger of pad and tail");
  // The tiles start at the first 1 KB boundary (swizzle atoms) of the dynamic shared
  // memory, whose start is only 16-byte aligned: 1 KB more than the tiles, split into a
  // pad before them and a tail after them, the larger of which holds the barriers.
  static constexpr int smem_bytes(bool bias) { return 1024 + body_bytes(bias); }
};

// Where everything lives in shared memory: Q | K stages | V stages | bias ring, from the
// first 1 KB boundary on; the mbarriers in the pad before that boundary or in the tail
// after the tiles (Cfg::smem_bytes). Barriers: q_full; per stage k_full, v_full (one TMA
// arrival + bytes), k_empty, v_empty (one arrival per consumer warp); per bias stage (2)
// b_full, b_empty likewise.
template <class Cfg, bool kBias>
struct FwdSmem {
  uint32_t q, k0, v0, b0, bars;

  __device__ explicit FwdSmem(uint32_t raw) {
    q = (raw + 1023u) & ~1023u;
    k0 = q + Cfg::kQBytes;
    v0 = k0 + Cfg::kStages * Cfg::kTileBytes;
    b0 = v0 + Cfg::kStages * Cfg::kTileBytes;
    const uint32_t end = b0 + (kBias ? Cfg::kBiasRingBytes : 0);
    bars = q - raw >= uint32_t(Cfg::kBarrierBytes) ? raw : end;
  }

  __device__ uint32_t k(int s) const { return k0 + s * Cfg::kTileBytes; }
  __device__ uint32_t v(int s) const { return v0 + s * Cfg::kTileBytes; }
  // Bias stage s of a ring of 2^shift stages.
  __device__ uint32_t bias(int s, int shift) const {
    return b0 + uint32_t(s) * uint32_t(Cfg::kBiasRingBytes >> shift);
  }
  __device__ uint32_t q_full() const { return bars; }
  __device__ uint32_t k_full(int s) const { return bars + 8 * (1 + s); }
  __device__ uint32_t v_full(int s) const { return bars + 8 * (1 + Cfg::kStages + s); }
  __device__ uint32_t k_empty(int s) const { return bars + 8 * (1 + 2 * Cfg::kStages + s); }
  __device__ uint32_t v_empty(int s) const { return bars + 8 * (1 + 3 * Cfg::kStages + s); }
  __device__ uint32_t b_full(int s) const { return bars + 8 * (1 + 4 * Cfg::kStages + s); }
  __device__ uint32_t b_empty(int s) const { return bars + 8 * (3 + 4 * Cfg::kStages + s); }

  // Byte offset of 16-byte chunk `chunk` of row `row` in the swizzled Q tile.
  __device__ uint32_t q_chunk(int row, int chunk) const {
    const int swizzled = (chunk % 8) ^ (row % 8);
    return q + uint32_t((chunk / 8) * Cfg::kBM * 128 + row * 128 + swizzled * 16);
  }
};

// The i-th key tile visited uses ring stage i % kStages, for the (i / kStages)-th time:
// its full barrier completes phase i / kStages, its empty barrier the phase before.
template <class Cfg>
struct RingSlot {
  int stage;
  uint32_t parity;
  __device__ explicit RingSlot(int i) : stage(i % Cfg::kStages), parity((i / Cfg::kStages) & 1) {}
};

// The bias ring's slot of visited tile i, with 2^shift stages (a run-time count).
struct BiasSlot {
  int stage;
  uint32_t parity;
  __device__ BiasSlot(int i, int shift)
      : stage(i & ((1 << shift) - 1)), parity(uint32_t(i >> shift) & 1u) {}
};

// Ping-pong: the two consumer warpgroups issue their products in turns, so that the
// tensor cores run one group's products while the other computes its softmax (and
// dropout). Left to themselves the groups fall into step, and both wait for their scores
// and then both compute while the tensor cores idle. Round 0 issues S_0, round i (1 <= i <
// n) S_i and P_{i-1} V_{i-1}, round n the last P V. Group 0 goes first; each group passes
// the turn to the other after issuing, and group 1 does not pass after its last round, so
// every arrival meets a wait. Named barriers kFirstTurnBarrier + group, 256 threads each.
struct IssueTurns {
  static constexpr int kFirstTurnBarrier = 4;  // after __syncthreads, the epilogue's, clear
  bool on;
  int group;       // 0 or 1
  int last_round;  // n_blocks

  __device__ void wait(int round) const {
    if (on && (group == 1 || round > 0)) named_barrier_sync<256>(kFirstTurnBarrier + group);
  }
  __device__ void pass(int round) const {
    if (on && (group == 0 || round < last_round)) {
      named_barrier_arrive<256>(kFirstTurnBarrier + 1 - group);
    }
  }
};

// One tile of `rows` rows x the bucket's head dim: one TMA box per 64-column block.
template <class Cfg, int kRows>
__device__ __forceinline__ void load_tile(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                          int row, int head, int batch) {
#pragma unroll
  for (int cb = 0; cb < Cfg::kColBlocks; ++cb) {
    tma_load_4d(dst + cb * kRows * 128, map, bar, cb * 64, row, head, batch);
  }
}

// One box of a 5-d tensor map (the permuted K/V view of tma.h), as tma_load_4d.
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                            int c0, int c1, int c2, int c3, int c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
      "r"(bar)
      : "memory");
}

// A K or V tile of BN keys from row `row` on (rows < `rows`, the map's length). Permuted
// (fwd_scores.h): 8-row group n of each column block holds keys (n % 8) + 64 (n / 8) + 8i,
// i = 0..7. Tiles inside the tensor load as one box per 64 keys (the 5-d view `halves`),
// the one that reaches past its end as one box per 8-row group (`groups`, element stride
// 8), which the TMA zero-fills past the end.
template <class Cfg, bool kPermuted>
__device__ __forceinline__ void load_kv_tile(uint32_t dst, const CUtensorMap* map,
                                             const CUtensorMap* halves, uint32_t bar, int row,
                                             int rows, int head, int batch) {
  if constexpr (!kPermuted) {
    load_tile<Cfg, Cfg::kBN>(dst, map, bar, row, head, batch);
  } else if (row + Cfg::kBN <= rows) {
#pragma unroll
    for (int cb = 0; cb < Cfg::kColBlocks; ++cb)
#pragma unroll
      for (int h = 0; h < Cfg::kBN / 64; ++h) {
        const int first = row + 64 * h;
        tma_load_5d(dst + cb * Cfg::kBN * 128 + h * 8192, halves, bar, cb * 64, first >> 3,
                    first & 7, head, batch);
      }
  } else {
#pragma unroll
    for (int cb = 0; cb < Cfg::kColBlocks; ++cb)
#pragma unroll
      for (int n = 0; n < Cfg::kBN / 8; ++n)
        tma_load_4d(dst + cb * Cfg::kBN * 128 + n * 1024, map, bar, cb * 64,
                    row + (n & 7) + 64 * (n >> 3), head, batch);
  }
}

// The producer: one thread issues the TMA loads: Q, then K_0 (and bias tile 0), then
// (K_{i+1}, bias_{i+1}, V_i) per tile, the order the consumers need them in (and release
// them in). Tile i is key block n_tiles - 1 - i. A one-stage bias ring loads bias_{i+1}
// after V_i: it waits for the consumers to finish bias_i, which must not hold V_i back.
template <class Cfg, bool kBias, bool kDropout>
__device__ __forceinline__ void produce(const FwdParams& P, const FwdSmem<Cfg, kBias>& sm,
                                        int q_row, int k_row0, int h, int hk, int batch,
                                        int n_last, int n_tiles, int bias_row, int bias_head,
                                        int bias_batch) {
  constexpr bool kPermuted = kDropout;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN;
  auto load_kv = [&](int i, const CUtensorMap* map, const CUtensorMap* halves, uint32_t tile,
                     uint32_t full, uint32_t empty) {
    const RingSlot<Cfg> slot(i);
    if (i >= Cfg::kStages) mbar_wait(empty, slot.parity ^ 1);  // consumers done with i - S
    mbar_arrive_expect_tx(full, Cfg::kTileBytes);
    load_kv_tile<Cfg, kPermuted>(tile, map, halves, full, k_row0 + (n_last - 1 - i) * BN,
                                 P.kv_rows, hk, batch);
  };
  auto load_k = [&](int i) {
    const int s = i % Cfg::kStages;
    load_kv(i, &P.k, &P.k_halves, sm.k(s), sm.k_full(s), sm.k_empty(s));
  };
  auto load_v = [&](int i) {
    const int s = i % Cfg::kStages;
    load_kv(i, &P.v, &P.v_halves, sm.v(s), sm.v_full(s), sm.v_empty(s));
  };
  const int shift = kBias ? P.bias_stage_shift : 0;
  auto load_bias = [&](int i) {
    if constexpr (kBias) {
      const BiasSlot slot(i, shift);
      if (i >= (1 << shift)) mbar_wait(sm.b_empty(slot.stage), slot.parity ^ 1u);
      mbar_arrive_expect_tx(sm.b_full(slot.stage), P.bias_tile_bytes);
      const int col0 = (n_last - 1 - i) * BN;
      const uint32_t dst = sm.bias(slot.stage, shift);
      for (int c = 0; c < P.bias_boxes; ++c) {
        tma_load_4d(dst + c * Cfg::kBiasBoxBytes, &P.bias, sm.b_full(slot.stage),
                    col0 + c * P.bias_box_keys, bias_row, bias_head, bias_batch);
      }
    }
  };

  prefetch_tensor_map(&P.q);
  prefetch_tensor_map(&P.k);
  prefetch_tensor_map(&P.v);
  if constexpr (kBias) prefetch_tensor_map(&P.bias);
  if constexpr (kPermuted) {
    prefetch_tensor_map(&P.k_halves);
    prefetch_tensor_map(&P.v_halves);
  }
  mbar_arrive_expect_tx(sm.q_full(), Cfg::kQBytes);
  load_tile<Cfg, BM>(sm.q, &P.q, sm.q_full(), q_row, h, batch);
  load_k(0);
  load_bias(0);
  for (int i = 0; i < n_tiles; ++i) {
    if (i + 1 < n_tiles) {
      load_k(i + 1);
      if (shift > 0) load_bias(i + 1);
    }
    load_v(i);
    if (kBias && shift == 0 && i + 1 < n_tiles) load_bias(i + 1);
  }
}

// A consumer warpgroup: attention of its 64 query rows over all key tiles, then the
// epilogue. `cw` is the consumer index (0 or 1), `warp` the warp within the group.
template <class Cfg, bool kDropout, bool kBias, bool kScoreMods>
__device__ __forceinline__ void consume(const FwdParams& P,
                                        const FwdSmem<Cfg, kBias>& sm,
                                        const SeqInfo& seq, int b, int h, int m0, int n_last, int n_tiles,
                                        int cw, int warp, int lane) {
  constexpr bool kPermuted = kDropout;  // the key order of K and V (fwd_scores.h)
  const KernelParams& p = P.p;
  using T = typename Cfg::T;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, D = Cfg::kD;
  constexpr int NS = Cfg::kNS, DS = Cfg::kDS, PK = Cfg::kPK;

  constexpr int kClearBarrier = 1 + Cfg::kConsumers;  // after the epilogue's 1..kConsumers
  const int group_row = cw * 64;                // first row of the warpgroup in the block
  const int tile_row = group_row + warp * 16;   // first row of this warp in the block
  const int row0 = m0 + tile_row;               // ... in the sequence

  float o[1][DS][4];  // sm80 warp-tile shapes (one 16-row slab), for the sm80 helpers
  zero(o);
  DeferredSoftmax softmax;
  // Score features: the slope is loaded once per block; the softmax's multiplier and the
  // LSE's scale follow the scores' unit (read where used: hoisting the plain kernels' reads
  // changes their code).
  const ScoreMods mods = kScoreMods ? ScoreMods(p, kBias, seq.sq, seq.sk) : ScoreMods();
  const float alibi_step = kScoreMods ? mods.alibi_step(p, b, h) : 0.0f;
  const uint32_t batch_head = uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h);

  if (n_tiles > 0) {
    const uint64_t q_desc = k_major_descriptor(sm.q + group_row * 128);
    float s[1][NS][4];    // S, then P in fp32
    uint32_t pa[PK][4];   // P as A fragments, one per k16 step of P V
    float correction[2] = {1.0f, 1.0f};  // of the latest softmax, for O before the next P V

    // S = Q K^T of the tile in `stage` (issued and committed, not waited for).
    auto issue_scores = [&](int stage) {
      const uint64_t k_desc = k_major_descriptor(sm.k(stage));
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wgmma_ss<T, NS>(s[0], advance(q_desc, k_major_step(kk, BM)),
                        advance(k_desc, k_major_step(kk, BN)), kk > 0);
      }
      wgmma_commit();
    };
    // O = O * correction + P V of the tile in `stage` (issued, not waited for).
    auto issue_pv = [&](int stage) {
      DeferredSoftmax::rescale(o[0], correction);
      const uint64_t v_desc = mn_major_descriptor(sm.v(stage), BN);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < PK; ++kk) {
        wgmma_rs<T, DS>(o[0], pa[kk], advance(v_desc, mn_major_step(kk)), true);
      }
      wgmma_commit();
    };
    // Every warp's products are complete: the warp's arrival frees the stage.
    auto release = [&](uint32_t empty) {
      __syncwarp();
      if (lane == 0) mbar_arrive(empty);
    };
    // Softcap, bias, ALiBi, mask, softmax and dropout of visited tile i (P stays in s until
    // packed).
    auto softmax_tile = [&](int i) {
      const int col0 = (n_last - 1 - i) * BN;
      if constexpr (kScoreMods) {
        if (mods.capped) cap_scores(s[0], mods.tanh_scale);
      }
      if constexpr (kBias) {
        const int shift = P.bias_stage_shift;
        const BiasSlot slot(i, shift);
        mbar_wait(sm.b_full(slot.stage), slot.parity);
        add_staged_bias<kPermuted, BM>(s[0], p.bias.dtype, sm.bias(slot.stage, shift),
                                       tile_row, P.bias_row_step,
                                       kScoreMods ? mods.unit_qk : p.scale, lane);
        release(sm.b_empty(slot.stage));
      }
      if constexpr (kScoreMods) {
        if (mods.alibi) {
          add_alibi<kPermuted>(s[0], row0, col0, mods.alibi_shift, alibi_step, lane);
        }
      }
      if (!seq.range(p).tile_fully_visible(m0 + group_row, 64, col0, BN)) {
        mask_tile<kPermuted>(s[0], row0, col0, seq.range(p), lane);
      }
      softmax.update(s[0], kScoreMods ? mods.softmax_scale_log2() : p.softmax_scale_log2,
                     correction);
      if constexpr (kDropout) {
        dropout_permuted(s[0], P.keys, p.offset, batch_head, P.threshold2, row0, col0, lane);
      }
    };
    // Waits for the last P V (so O and pa are free) and packs P into pa.
    auto finish_pv_and_pack = [&] {
      wgmma_wait<0>();
      pin(o[0]);
#pragma unroll
      for (int kk = 0; kk < PK; ++kk) acc_to_a<T>(pa[kk], s[0], kk);
    };
    // Nested batches: the rows of the first visited key tile (the sequence's last) past
    // `valid` are the next sequence's; with seqused_k (a KV cache), rows the cache has not
    // filled. P is 0 there, but 0 * Inf = NaN, so they are zeroed before P V reads them (a
    // plain dense batch gets zeros from the TMA's out-of-bounds fill).
    // Both consumer warpgroups take part; `thread` is 0..255 among them.
    auto clear_foreign_v_rows = [&](int valid, int thread) {
      if (valid >= BN) return;  // uniform over the block
      mbar_wait(sm.v_full(0), 0);
      constexpr int kChunks = Cfg::kColBlocks * BN * 8;  // 16-byte chunks of the tile
      for (int c = thread; c < kChunks; c += 128 * Cfg::kConsumers) {
        const int block = c / (BN * 8), slot = (c / 8) % BN;
        // Whole 128-byte rows: the swizzle only permutes chunks inside a row.
        if (slot_key<kPermuted>(slot) >= valid) {
          sts128(sm.v(0) + (block * BN + slot) * 128 + (c % 8) * 16,
                       make_uint4(0, 0, 0, 0));
        }
      }
      fence_proxy_async_shared();
      named_barrier_sync<128 * Cfg::kConsumers>(kClearBarrier);
    };

    const IssueTurns turns{Cfg::kConsumers == 2, cw, n_tiles};
    mbar_wait(sm.q_full(), 0);
    mbar_wait(sm.k_full(0), 0);
    turns.wait(0);
    issue_scores(0);
    turns.pass(0);
    wgmma_wait<0>();
    pin(s[0]);
    release(sm.k_empty(0));
    softmax_tile(0);  // its correction multiplies the zero O: harmless
    if (p.cu_k != nullptr || p.seqused_k != nullptr) {  // rows past sk are not zero-filled
      clear_foreign_v_rows(seq.sk - (n_last - 1) * BN, cw * 128 + warp * 32 + lane);
    }

    // Tile i: S_i and P_{i-1} V_{i-1} are issued back to back, and the softmax of S_i runs
    // while the product does. The product is waited for at the top of the next iteration:
    // ptxas hoists a wait that shares the softmax's basic block above it (no dependence
    // between the two), which would serialize them.
    for (int i = 1; i < n_tiles; ++i) {
      const RingSlot<Cfg> cur(i), prev(i - 1);
      finish_pv_and_pack();  // P_{i-2} V_{i-2}; P_{i-1} into pa
      if (i >= 2) release(sm.v_empty(RingSlot<Cfg>(i - 2).stage));
      mbar_wait(sm.k_full(cur.stage), cur.parity);
      mbar_wait(sm.v_full(prev.stage), prev.parity);
      turns.wait(i);
      issue_scores(cur.stage);
      issue_pv(prev.stage);
      turns.pass(i);
      wgmma_wait<1>();  // S_i is done
      pin(s[0]);
      release(sm.k_empty(cur.stage));
      softmax_tile(i);
    }

    finish_pv_and_pack();
    const RingSlot<Cfg> last(n_tiles - 1);
    mbar_wait(sm.v_full(last.stage), last.parity);
    turns.wait(n_tiles);
    issue_pv(last.stage);
    turns.pass(n_tiles);
    wgmma_wait<0>();
    pin(o[0]);
  }

  // ---- epilogue ----
  float out_scale[1][2], lse[1][2];
  const float sink = p.sinks != nullptr ? p.sinks[h] : -INFINITY;
  softmax.finish(kScoreMods ? mods.unit : p.lse_scale, kDropout ? p.dropout_rescale : 1.0f, sink,
                 out_scale, lse);
  const int rows_q = seq.sq - m0 < BM ? seq.sq - m0 : BM;
  const int g = lane >> 2, t = lane & 3;

  named_barrier_sync<128>(1 + cw);  // the warpgroup's products no longer read its Q rows
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = tile_row + g + r * 8;
#pragma unroll
    for (int d = 0; d < DS; ++d) {
      const uint32_t v = pack2<T>(o[0][d][2 * r] * out_scale[0][r],
                                        o[0][d][2 * r + 1] * out_scale[0][r]);
      sts32(sm.q_chunk(row, d) + 4 * t, v);
    }
  }
  __syncwarp();

  T* o_ptr = p.out.row<T>(b, h, seq.q_row0 + m0);
  static_assert(16 * DS % 32 == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < 16 * DS / 32; ++i) {
    const int idx = i * 32 + lane;
    const int row = tile_row + idx / DS, chunk = idx % DS;
    const uint4 v = lds128(sm.q_chunk(row, chunk));
    if (row < rows_q && chunk * 8 < p.head_dim) {
      *reinterpret_cast<uint4*>(o_ptr + int64_t(row) * p.out.sr + chunk * 8) = v;
    }
  }

  if (p.lse.ptr != nullptr && t == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = tile_row + g + r * 8;
      if (row < rows_q) *p.lse.row<float>(b, h, seq.q_row0 + m0 + row) = lse[0][r];
    }
  }
}

// Compile-time features: dropout (without it the kernel carries no Philox code and loads K
// and V in key order), the staged bias and the score features (softcap, ALiBi).
template <class Cfg, bool kDropout, bool kBias, bool kScoreMods>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    fwd_kernel(const __grid_constant__ FwdParams params) {
#if FA_SM90_DEVICE_PASS
  const KernelParams& p = params.p;
  const WorkTile work = FwdScheduler::tile();
  const int m_block = work.block, h = work.head, b = work.batch;
  const SeqInfo seq(p, b);
  const int m0 = m_block * Cfg::kBM;
  if (m0 >= seq.sq) return;  // nested batches: past this sequence's end

  // Key blocks [blocks.first, blocks.last) hold every key a row of this block sees.
  const KeyBlocks blocks = key_blocks(seq.range(p), m0, m0 + Cfg::kBM, Cfg::kBN);
  const int n_last = blocks.last, n_tiles = blocks.last - blocks.first;

  extern __shared__ uint8_t smem_raw[];
  const FwdSmem<Cfg, kBias> sm(smem_u32(smem_raw));
  if (threadIdx.x == 0) {
    mbar_init(sm.q_full(), 1);
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(sm.k_full(s), 1);
      mbar_init(sm.v_full(s), 1);
      mbar_init(sm.k_empty(s), 4 * Cfg::kConsumers);
      mbar_init(sm.v_empty(s), 4 * Cfg::kConsumers);
    }
    if constexpr (kBias) {
      for (int s = 0; s < 2; ++s) {
        mbar_init(sm.b_full(s), 1);
        mbar_init(sm.b_empty(s), 4 * Cfg::kConsumers);
      }
    }
    fence_barrier_init();
  }
  __syncthreads();

  // Uniform to ptxas (see warpgroup_index): -5% on the plain and causal forward, -2% with
  // dropout (H100, one A/B run).
  const int warpgroup = warpgroup_index();
  if (warpgroup == 0) {
    release_registers<Cfg::kProducerRegs>();
    if (n_tiles > 0 && threadIdx.x == 0) {
      // Dense: coordinates (row, head, batch); nested: global rows, batch dimension 1.
      // The bias has local rows and the batch dimension in both cases.
      const bool nested = p.cu_q != nullptr;
      produce<Cfg, kBias, kDropout>(params, sm, seq.q_row0 + m0, seq.k_row0, h, h / p.group,
                                    nested ? 0 : b, n_last, n_tiles, m0 * params.bias_row_step,
                                    h * params.bias_head_step, b * params.bias_batch_step);
    }
  } else {
    claim_registers<Cfg::kConsumerRegs>();
    const int lane = threadIdx.x & 31, warp = (threadIdx.x / 32) & 3;
    consume<Cfg, kDropout, kBias, kScoreMods>(params, sm, seq, b, h, m0, n_last, n_tiles,
                                              warpgroup - 1, warp, lane);
  }
#endif
}

}  // namespace sm90
}  // namespace fa
