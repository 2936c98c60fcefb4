// bwd_kernel.h: the backward's main kernel on Hopper (wgmma, TMA, warp specialization).
//
// Same job as sm80/bwd_kernel.h, same inputs (the preprocess kernel's D = rowsum(dO O) and
// lse in log2 units) and outputs (dK, dV; dS K added to the fp32 dQ accumulator), for
// non-deterministic runs without bias.
//
// Grid (key blocks, Hkv, B); a block owns BN = 128 keys of one (batch, kv head) and walks
// every (query head of the GQA group, query block of BM rows) that sees them, as sm80 does.
// 1 producer warpgroup + 2 consumer warpgroups, one block per SM:
//   - producer warp 0: K and V once (TMA), then per step Q_i and dO_i (TMA, completing on
//     the stage's "full" mbarrier) and the rows' lse and D (plain loads: the workspace rows
//     have no 16-byte alignment; handed over through named barriers, see BwdBarrier) into
//     a ring of kStages stages;
//   - consumer warpgroup c owns keys 64c .. 64c + 63 of the block and keeps their dK, dV in
//     registers. Per step (all products wgmma, fp32 accumulators):
//        S^T  = K Q^T,  dP^T = V dO^T            (shared-memory operands, K-major)
//        P^T  = exp2(S^T scale_log2 - lse)       (mask first; keys are rows, queries columns)
//        dS^T = P^T (dP^T Z / (1-p) - D),  Pd^T = P^T Z / (1-p)   (Z the dropout mask)
//        dV  += Pd^T dO,  dK += dS^T Q           (A from registers: the accumulators of
//                                                 S^T / dP^T are the A fragments; B = dO, Q
//                                                 read MN-major through the transpose bit)
//        dS^T -> shared memory (swizzled, MN-major for the next product), then both
//        consumers together:  dQ = dS K  (A = dS^T and B = K both MN-major), added to the
//        fp32 accumulator from registers (red.global.add.v2.f32, rows inside the sequence).
//        (Measured and not kept: a dQ writer warp adding a shared-memory dQ tile with one
//        bulk reduction, cp.reduce.async.bulk, per row: 1.6x slower at head dim 64, 7%
//        slower with dropout, 2% faster at head dim 128 without.)
//   - Epilogue: dK * scale and dV through the K / V tiles, 16-byte stores of valid rows.
// Rows of a neighbouring sequence of a nested batch that the TMA loads (keys past the
// sequence in the K / V tile, queries past it in a Q / dO tile) are zeroed in shared memory
// before use, so that 0 * Inf can never reach a result; dense batches get zeros from the
// TMA's out-of-bounds fill.
#pragma once

#include <cuda.h>

#include <cmath>

#include "common/dropout.h"
#include "common/kernel_params.h"
#include "common/fragments.h"
#include "common/mask.h"
#include "common/seqlen.h"
#include "common/tile_scheduler.h"
#include "sm90/bwd_scores.h"
#include "sm90/ptx90.h"
#include "sm90/wgmma.h"

// Kernel bodies exist only in the sm_90a device pass (dispatch routes only compute
// capability 9.0 here).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA_SM90_BWD_DEVICE_PASS 1
#else
#define FA_SM90_BWD_DEVICE_PASS 0
#endif

namespace fa {
namespace sm90 {

// One block per key block of a (kv head, batch).
using BwdScheduler = StaticTileScheduler<false>;


// Kernel parameters: TMA descriptors (dims: dim, row, head, batch) and the common KernelParams.
struct BwdParams {
  CUtensorMap q, k, v, dout;
  KernelParams p;
};

template <typename T_, int D_, int BM_, int STAGES_, bool STATS_WITH_TILES_>
struct BwdConfig {
  using T = T_;
  static constexpr int kD = D_;            // head-dim bucket (64 or 128)
  static constexpr int kBM = BM_;          // query rows per step
  static constexpr int kBN = 128;          // keys per block, 64 per consumer warpgroup
  static constexpr int kStages = STAGES_;  // Q / dO ring depth
  // Where the consumers wait for a step's lse and D (BwdBarrier): false, right before their
  // first use, after the step's first products are issued (the producer's global loads
  // stay off the critical path); true, together with Q and dO: the producer waits for the
  // stage's TMA and the consumers wait on the named barrier alone, one wait fewer where
  // registers are short (head dim 64 with dropout spilled 20 bytes the other way).
  static constexpr bool kStatsWithTiles = STATS_WITH_TILES_;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  // Register split after setmaxnreg: 24 x 128 + 240 x 256 = the 168 x 384 of the launch.
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;

  static constexpr int kNS = kBM / 8;   // n8 tiles of S^T, dP^T per warp (query columns)
  static constexpr int kDS = kD / 8;    // n8 tiles of dK, dV per warp
  static constexpr int kPK = kBM / 16;  // k16 steps of dV, dK (over queries)
  static constexpr int kKK = kD / 16;   // k16 steps of S^T, dP^T (over the head dim)
  static constexpr int kQK = kBN / 16;  // k16 steps of dQ (over keys)
  // dQ (BM x D) is split between the two consumers: by rows when BM = 128 (64 x D each),
  // by columns when BM = 64 (64 x D/2 each).
  static constexpr bool kDqByRows = kBM == 128;
  static constexpr int kDqN = kDqByRows ? kD : kD / 2;  // dQ columns per consumer
  static_assert(kBM == 64 || kBM == 128, "one or two 64-row query blocks");
  static_assert(kDqN == 32 || kDqN == 64, "a 64 x 32 or 64 x 64 dQ tile per consumer");

  static constexpr int kColBlocks = kD / 64;  // 128-byte column blocks of Q, K, V, dO
  static constexpr int kKBytes = kBN * kD * 2;
  static constexpr int kQBytes = kBM * kD * 2;
  static constexpr int kDsBytes = kBN * kBM * 2;
  static constexpr int kStatBytes = kBM * 4;
  static constexpr int kBarriers = 1 + 2 * kStages;
  static constexpr int kSmemBytes = 1024 /* alignment */ + 2 * kKBytes + 2 * kStages * kQBytes +
                                    2 * kDsBytes + 2 * kStages * kStatBytes +
                                    8 * kBarriers;
  static_assert(kQBytes % 1024 == 0 && kDsBytes % 1024 == 0,
                "tiles stay 1024-byte aligned (swizzle atoms)");
};

// Named barriers (0 is __syncthreads): the consumers' own, then per stage the hand-over of
// the lse and D rows between the producer warp and the consumers (32 + 256 threads): the
// producer arrives at "stats full" after storing them and syncs at "stats free" before
// overwriting them; the consumers do the reverse. (An mbarrier hand-off of these ordinary
// stores works as well, but compute-sanitizer's racecheck does not model it and reports
// hazards: debug/mbar_racecheck.cu. Named barriers it does model.)
enum BwdBarrier : int {
  kBarConsumers = 1,  // the 256 consumer threads
  kBarStats = 2,      // stats full of stage s: 2 + s; stats free: 2 + kStages + s
};
constexpr int kConsumerThreads = 256;
constexpr int kStatsThreads = 32 + kConsumerThreads;
template <class Cfg>
__device__ __forceinline__ int stats_full_barrier(int stage) {
  return kBarStats + stage;
}
template <class Cfg>
__device__ __forceinline__ int stats_free_barrier(int stage) {
  static_assert(kBarStats + 2 * Cfg::kStages <= 16, "16 hardware barriers");
  return kBarStats + Cfg::kStages + stage;
}

// Shared memory: K | V | Q stages | dO stages | dS x 2 | lse stages | D stages | bars.
// Barriers: kv_full and per stage full (one TMA arrival + bytes each), per stage empty (one
// arrival per consumer warp).
template <class Cfg>
struct BwdSmem {
  uint32_t k, v, q0, do0, ds0, lse0, dsum0, bars;

  __device__ explicit BwdSmem(uint32_t base)
      : k(base),
        v(k + Cfg::kKBytes),
        q0(v + Cfg::kKBytes),
        do0(q0 + Cfg::kStages * Cfg::kQBytes),
        ds0(do0 + Cfg::kStages * Cfg::kQBytes),
        lse0(ds0 + 2 * Cfg::kDsBytes),
        dsum0(lse0 + Cfg::kStages * Cfg::kStatBytes),
        bars(dsum0 + Cfg::kStages * Cfg::kStatBytes) {}

  __device__ uint32_t q(int s) const { return q0 + s * Cfg::kQBytes; }
  __device__ uint32_t dout(int s) const { return do0 + s * Cfg::kQBytes; }
  __device__ uint32_t ds(int step) const { return ds0 + (step & 1) * Cfg::kDsBytes; }
  __device__ uint32_t lse(int s) const { return lse0 + s * Cfg::kStatBytes; }
  __device__ uint32_t dsum(int s) const { return dsum0 + s * Cfg::kStatBytes; }
  __device__ uint32_t kv_full() const { return bars; }
  __device__ uint32_t full(int s) const { return bars + 8 * (1 + s); }
  __device__ uint32_t empty(int s) const { return bars + 8 * (1 + Cfg::kStages + s); }
};

// The steps of a block: (query head of the group, query block) pairs, heads outer, query
// blocks that see the block's keys (common/mask.h query_blocks). Each role walks
// them with a StepCursor (no divisions in the loops: the producer warps have 24 registers).
struct BwdSteps {
  int m_begin, m_end, total;

  __device__ BwdSteps(const KernelParams& p, const SeqInfo& seq, int n0, int bn, int bm) {
    const QueryBlocks blocks = query_blocks(seq.range(p), n0, bn, bm);
    m_begin = blocks.first;
    m_end = blocks.last;
    total = m_end > m_begin ? p.group * (m_end - m_begin) : 0;
  }
};

struct StepCursor {
  int h, m;  // query head, query block

  __device__ StepCursor(const BwdSteps& steps, int first_head)
      : h(first_head), m(steps.m_begin) {}
  __device__ void next(const BwdSteps& steps) {
    if (++m == steps.m_end) {
      m = steps.m_begin;
      ++h;
    }
  }
};

// The step-th tile uses ring stage step % kStages for the (step / kStages)-th time.
template <class Cfg>
struct BwdSlot {
  int stage;
  uint32_t parity;
  __device__ explicit BwdSlot(int step)
      : stage(step % Cfg::kStages), parity((step / Cfg::kStages) & 1) {}
};

// One tile of kRows rows x the bucket's head dim: one TMA box per 64-column block.
template <int kColBlocks, int kRows>
__device__ __forceinline__ void load_rows(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                          int row, int head, int batch) {
#pragma unroll
  for (int cb = 0; cb < kColBlocks; ++cb) {
    tma_load_4d(dst + cb * kRows * 128, map, bar, cb * 64, row, head, batch);
  }
}

// Zeroes rows [valid, kRows) of a [column block][kRows][64] tile; whole 128-byte rows, so
// the swizzle (a permutation inside a row) does not matter. The consumer threads share it.
template <int kColBlocks, int kRows>
__device__ __forceinline__ void clear_rows(uint32_t tile, int valid, int thread) {
  const int per_block = (kRows - valid) * 8;  // 16-byte chunks
  for (int c = thread; c < kColBlocks * per_block; c += kConsumerThreads) {
    const int block = c / per_block, rest = c % per_block;
    sts128(tile + uint32_t((block * kRows + valid + rest / 8) * 128 + (rest % 8) * 16),
                 make_uint4(0, 0, 0, 0));
  }
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled [column block][rows][64]
// tile of `rows` rows.
__device__ __forceinline__ uint32_t swizzled_chunk(int row, int chunk, int rows) {
  return uint32_t((chunk / 8) * rows * 128 + row * 128 + (((chunk % 8) ^ (row % 8)) << 4));
}

template <int N>
__device__ __forceinline__ void zero_acc(float (&x)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[i][e] = 0.0f;
}

// ---------------------------------------------------------------------------------------
// Producer warp: K, V, then Q, dO, lse and D per step. All 32 lanes take part (the lse and
// D rows); lane 0 issues the TMA loads.
template <class Cfg>
__device__ __forceinline__ void produce_bwd(const BwdParams& P, const BwdSmem<Cfg>& sm,
                                            const SeqInfo& seq, const BwdSteps& steps, int b,
                                            int hk, int n0, int lane) {
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, CB = Cfg::kColBlocks;
  const KernelParams& p = P.p;
  // Dense: coordinates (row, head, batch); nested: global rows, batch dimension 1.
  const int batch = p.cu_q != nullptr ? 0 : b;
  if (steps.total == 0) return;  // nothing to load: the consumers write zeros
  if (lane == 0) {
    prefetch_tensor_map(&P.q);
    prefetch_tensor_map(&P.dout);
    mbar_arrive_expect_tx(sm.kv_full(), 2 * Cfg::kKBytes);
    load_rows<CB, BN>(sm.k, &P.k, sm.kv_full(), seq.k_row0 + n0, hk, batch);
    load_rows<CB, BN>(sm.v, &P.v, sm.kv_full(), seq.k_row0 + n0, hk, batch);
  }
  StepCursor at(steps, hk * p.group);
  for (int step = 0; step < steps.total; ++step, at.next(steps)) {
    const BwdSlot<Cfg> slot(step);
    const int h = at.h, m0 = at.m * BM;
    if (step >= Cfg::kStages) {
      named_barrier_sync<kStatsThreads>(stats_free_barrier<Cfg>(slot.stage));  // lse, D read
      mbar_wait(sm.empty(slot.stage), slot.parity ^ 1);  // Q, dO no longer read
    }
    if (lane == 0) {
      mbar_arrive_expect_tx(sm.full(slot.stage), 2 * Cfg::kQBytes);
      load_rows<CB, BM>(sm.q(slot.stage), &P.q, sm.full(slot.stage), seq.q_row0 + m0, h, batch);
      load_rows<CB, BM>(sm.dout(slot.stage), &P.dout, sm.full(slot.stage), seq.q_row0 + m0, h,
                        batch);
    }
    // Rows past the sequence: lse = +inf (P = 0) and D = 0, as in sm80.
    const int64_t ws = b * p.ws_sb + h * p.ws_sh + seq.q_row0 + m0;
    const float* lse_rows = p.lse_log2 + ws;
    const float* dsum_rows = p.dsum + ws;
    const int rows = seq.sq - m0;
#pragma unroll 1
    for (int pass = 0; pass < BM / 32; ++pass) {
      const int r = pass * 32 + lane;
      const bool ok = r < rows;
      const float lse = ok ? lse_rows[r] : INFINITY;
      const float dsum = ok ? dsum_rows[r] : 0.0f;
      sts32(sm.lse(slot.stage) + 4 * r, __float_as_uint(lse));
      sts32(sm.dsum(slot.stage) + 4 * r, __float_as_uint(dsum));
    }
    if constexpr (Cfg::kStatsWithTiles) {
      mbar_wait(sm.full(slot.stage), slot.parity);  // the stage's TMA has landed
    }
    named_barrier_arrive<kStatsThreads>(stats_full_barrier<Cfg>(slot.stage));
  }
  // The consumers' "stats free" arrivals of the last kStages steps, so that every arrival
  // meets a sync.
  for (int step = steps.total; step < steps.total + Cfg::kStages; ++step) {
    if (step >= Cfg::kStages) {
      named_barrier_sync<kStatsThreads>(stats_free_barrier<Cfg>(step % Cfg::kStages));
    }
  }
}

// ---------------------------------------------------------------------------------------
// A consumer warpgroup: `cw` is its index (0, 1), `warp` the warp inside it.
template <class Cfg, bool kDropout, bool kScoreMods>
__device__ __forceinline__ void consume_bwd(const KernelParams& p, const BwdSmem<Cfg>& sm,
                                            const SeqInfo& seq, const BwdSteps& steps, int b,
                                            int hk, int n0, int cw, int warp, int lane) {
  using T = typename Cfg::T;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, CB = Cfg::kColBlocks;
  constexpr int NS = Cfg::kNS, DS = Cfg::kDS, PK = Cfg::kPK;
  const int g = lane >> 2, t = lane & 3;
  const int thread = cw * 128 + warp * 32 + lane;  // among the consumers
  const int key_row = cw * 64 + warp * 16;         // this warp's first key in the block
  const int key0 = n0 + key_row;                   // ... in the sequence
  const int rows_k = seq.sk - n0 < BN ? seq.sk - n0 : BN;
  const bool nested = p.cu_q != nullptr;

  float dv[DS][4], dk[DS][4];
  zero_acc(dv);
  zero_acc(dk);

  if (steps.total > 0) {
    mbar_wait(sm.kv_full(), 0);
    if (nested && rows_k < BN) {  // the next sequence's keys (uniform over the block)
      clear_rows<CB, BN>(sm.k, rows_k, thread);
      clear_rows<CB, BN>(sm.v, rows_k, thread);
      fence_proxy_async_shared();
      named_barrier_sync<kConsumerThreads>(kBarConsumers);
    }

    // A of S^T and dP^T: this warpgroup's 64 keys of K and V (K-major).
    const uint64_t k_desc = k_major_descriptor(sm.k + cw * 64 * 128);
    const uint64_t v_desc = k_major_descriptor(sm.v + cw * 64 * 128);
    // dQ: this warpgroup's 64 x kDqN tile at (dq_row0, dq_col0); B = those columns of K
    // (a 32-column half starts 64 bytes into the swizzled rows, like a k16 step of a
    // K-major operand).
    constexpr int DQN = Cfg::kDqN / 8;
    const int dq_row0 = Cfg::kDqByRows ? cw * 64 : 0;
    const int dq_col0 = Cfg::kDqByRows ? 0 : cw * Cfg::kDqN;
    const uint64_t kt_desc =
        mn_major_descriptor(sm.k + (dq_col0 / 64) * BN * 128 + (dq_col0 % 64) * 2, BN);
    const float scale_log2 = p.softmax_scale_log2;
    // Score features (kScoreMods): softcap and ALiBi, each a uniform run-time branch.
    const ScoreMods mods = kScoreMods ? ScoreMods(p, false, seq.sq, seq.sk) : ScoreMods();

    // dQ of step `of` = dS K: waits until both warpgroups' halves of that step's dS^T are
    // in shared memory, then issues this warpgroup's 64 x kDqN tile (one group, not waited
    // for). A = dS^T and B = K, both MN-major. (Issuing dQ_{i-1} in step i, next to S_i and
    // dP_i, would keep the tensor cores busier, but its 32 accumulators next to S, dP, dK
    // and dV spill: measured at head dim 128, 300 bytes.)
    float dq[DQN][4];
    auto issue_dq = [&](int of) {
      named_barrier_sync<kConsumerThreads>(kBarConsumers);
      const uint64_t ds_desc = mn_major_descriptor(sm.ds(of) + (dq_row0 / 64) * BN * 128, BN);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < Cfg::kQK; ++kk) {
        wgmma_ss_mn<T, DQN>(dq, advance(ds_desc, mn_major_step(kk)),
                            advance(kt_desc, mn_major_step(kk)), kk > 0);
      }
      wgmma_commit();
    };
    // The completed dQ tile added to the accumulator rows of query block m0 of head h, rows
    // inside the sequence only (the rows after them belong to the next head or sequence).
    // (Measured and not kept: pairing lanes t, t ^ 1 by a shuffle for 16-byte
    // red.global.add.v4.f32, 5-8% slower.)
    auto add_dq = [&](int h, int m0) {
      pin(dq);
      float* acc =
          p.dq_accum + (b * p.ws_sb + h * p.ws_sh + seq.q_row0 + m0) * int64_t(Cfg::kD);
      const int rows = seq.sq - m0;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = dq_row0 + warp * 16 + g + 8 * r;
        if (row < rows) {
          float* dst = acc + int64_t(row) * Cfg::kD + dq_col0 + 2 * t;
#pragma unroll
          for (int j = 0; j < DQN; ++j) {
            red_add2(dst + 8 * j, dq[j][2 * r], dq[j][2 * r + 1]);
          }
        }
      }
    };

    // Step i: S_i and dP_i; P_i while dP_i runs; dS_i (to shared memory); dV_i; then, once
    // both warpgroups' dS_i is in place, dQ_i and dK_i; dQ_i is added to the accumulator
    // while dK_i runs. (Measured and not kept: issuing dV_i before dS_i; waiting for dK_i
    // only after S_{i+1}, dP_{i+1} are issued; a third Q / dO stage. Within noise or slower,
    // see README.md.)
    StepCursor at(steps, hk * p.group);
    for (int step = 0; step < steps.total; ++step, at.next(steps)) {
      const BwdSlot<Cfg> slot(step);
      const int h = at.h, m0 = at.m * BM;
      if constexpr (Cfg::kStatsWithTiles) {
        // Q, dO (the producer saw their TMA complete), lse and D in place.
        named_barrier_sync<kStatsThreads>(stats_full_barrier<Cfg>(slot.stage));
      } else {
        mbar_wait(sm.full(slot.stage), slot.parity);
      }
      if (nested && m0 + BM > seq.sq) {  // the next sequence's queries (uniform)
        clear_rows<CB, BM>(sm.q(slot.stage), seq.sq - m0, thread);
        clear_rows<CB, BM>(sm.dout(slot.stage), seq.sq - m0, thread);
        fence_proxy_async_shared();
        named_barrier_sync<kConsumerThreads>(kBarConsumers);
      }

      // ---- S^T = K Q^T and dP^T = V dO^T, two groups ----
      float s[NS][4], dp[NS][4];
      {
        const uint64_t q_desc = k_major_descriptor(sm.q(slot.stage));
        const uint64_t do_desc = k_major_descriptor(sm.dout(slot.stage));
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < Cfg::kKK; ++kk) {
          wgmma_ss<T, NS>(s, advance(k_desc, k_major_step(kk, BN)),
                          advance(q_desc, k_major_step(kk, BM)), kk > 0);
        }
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < Cfg::kKK; ++kk) {
          wgmma_ss<T, NS>(dp, advance(v_desc, k_major_step(kk, BN)),
                          advance(do_desc, k_major_step(kk, BM)), kk > 0);
        }
        wgmma_commit();
      }

      // ---- P^T (while dP^T is on the tensor cores) ----
      wgmma_wait<1>();
      pin(s);
      if constexpr (kScoreMods) {
        if (mods.capped) cap_scores(s, mods.tanh_scale);  // before the mask: -inf stays
      }
      if (!seq.range(p).tile_fully_visible(m0, BM, key0, 16)) {
        mask_scores_t<NS>(s, key0, m0, seq.range(p), lane);
      }
      if constexpr (!Cfg::kStatsWithTiles) {
        named_barrier_sync<kStatsThreads>(stats_full_barrier<Cfg>(slot.stage));  // lse, D
      }
      const uint32_t lse_lane = sm.lse(slot.stage) + 8 * t;  // column 2t of each n8 tile
      constexpr int kKeepWords = (4 * NS + 31) / 32;
      uint32_t keep[kKeepWords];
      uint32_t pa[PK][4];  // Pd^T as A fragments (16-bit)
      if constexpr (kScoreMods) {
        // The keep bits first: probs_t_mods packs Pd^T right away (bwd_scores.h).
        if constexpr (kDropout) {
          const DropoutRng rng{p.seed, p.offset,
                               uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h),
                               p.dropout_threshold};
          dropout_keep_t<NS>(rng, key0, m0, lane, keep);
        }
        const float mods_log2 = mods.softmax_scale_log2();
        const float alibi_step = mods.alibi_step(p, b, h);
        const int shift = mods.alibi_shift;
        const float rescale = p.dropout_rescale;
        if (mods.capped && mods.alibi) {
          probs_t_mods<T, true, true, kDropout>(s, pa, lse_lane, mods_log2, alibi_step, key0,
                                                m0, shift, keep, rescale, lane);
        } else if (mods.capped) {
          probs_t_mods<T, true, false, kDropout>(s, pa, lse_lane, mods_log2, alibi_step, key0,
                                                 m0, shift, keep, rescale, lane);
        } else {
          probs_t_mods<T, false, true, kDropout>(s, pa, lse_lane, mods_log2, alibi_step, key0,
                                                 m0, shift, keep, rescale, lane);
        }
      } else {
#pragma unroll
        for (int n = 0; n < NS; ++n) {
          const uint2 l = lds64(lse_lane + 32 * n);
          const float lse[2] = {__uint_as_float(l.x), __uint_as_float(l.y)};
#pragma unroll
          for (int i = 0; i < 4; ++i) s[n][i] = ex2(fmaf(s[n][i], scale_log2, -lse[i & 1]));
        }
        if constexpr (kDropout) {
          const DropoutRng rng{p.seed, p.offset,
                               uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h),
                               p.dropout_threshold};
          dropout_keep_t<NS>(rng, key0, m0, lane, keep);
        }
      }

      // ---- dS^T = P^T (dP^T Z / (1-p) - D); P^T becomes Pd^T = P^T Z / (1-p) ----
      // (kScoreMods: s is P^T (1 - t^2) and Pd^T is packed already.)
      wgmma_wait<0>();
      pin(dp);
      const uint32_t dsum_lane = sm.dsum(slot.stage) + 8 * t;
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        const uint2 d2 = lds64(dsum_lane + 32 * n);
        const float dsum[2] = {__uint_as_float(d2.x), __uint_as_float(d2.y)};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float pv = s[n][i];
          float dpv = dp[n][i];
          if constexpr (kDropout) {
            const bool kept = (keep[(4 * n + i) / 32] >> ((4 * n + i) % 32)) & 1u;
            dpv = kept ? dpv * p.dropout_rescale : 0.0f;
            if constexpr (!kScoreMods) s[n][i] = kept ? pv * p.dropout_rescale : 0.0f;
          }
          dp[n][i] = pv * (dpv - dsum[i & 1]);
        }
      }

      // ---- A fragments (16-bit) of Pd^T and dS^T; dS^T into shared memory ----
      uint32_t da[PK][4];
#pragma unroll
      for (int kk = 0; kk < PK; ++kk) {
        if constexpr (!kScoreMods) acc_to_a<T>(pa[kk], s, kk);
        acc_to_a<T>(da[kk], dp, kk);
      }
      // dS^T tile: [query block][BN key rows][64 queries], rows 128 bytes, swizzled. This
      // lane's rows are key_row + g (+ 8): their swizzle is ^ g.
      const uint32_t ds_tile = sm.ds(step);
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int row = key_row + g + 8 * r;
          const uint32_t addr = ds_tile + uint32_t((n / 8) * BN * 128 + row * 128 +
                                                   (((n % 8) ^ g) << 4) + 4 * t);
          // acc_to_a: da[kk] = {(n 2kk, row g), (2kk, g + 8), (2kk + 1, g), (2kk + 1, g + 8)}
          sts32(addr, da[n / 2][(n % 2) * 2 + r]);
        }
      fence_proxy_async_shared();  // before the barrier in issue_dq

      // ---- dV += Pd^T dO (A from registers, B = dO MN-major) ----
      {
        const uint64_t do_mn = mn_major_descriptor(sm.dout(slot.stage), BM);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < PK; ++kk) {
          wgmma_rs<T, DS>(dv, pa[kk], advance(do_mn, mn_major_step(kk)), true);
        }
        wgmma_commit();
      }

      // ---- dQ = dS K, then dK += dS^T Q ----
      issue_dq(step);
      {
        const uint64_t q_mn = mn_major_descriptor(sm.q(slot.stage), BM);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < PK; ++kk) {
          wgmma_rs<T, DS>(dk, da[kk], advance(q_mn, mn_major_step(kk)), true);
        }
        wgmma_commit();
      }

      // ---- dQ into the accumulator while dK runs ----
      wgmma_wait<1>();  // dV_i, dQ_i done
      add_dq(h, m0);

      // ---- every product reading this stage is done: hand it back ----
      wgmma_wait<0>();
      named_barrier_arrive<kStatsThreads>(stats_free_barrier<Cfg>(slot.stage));
      __syncwarp();
      if (lane == 0) mbar_arrive(sm.empty(slot.stage));
    }
    pin(dv);
    pin(dk);
  }

  // ---- epilogue: dK * scale and dV through the K and V tiles ----
  named_barrier_sync<kConsumerThreads>(kBarConsumers);  // no product reads K or V any more
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = key_row + g + 8 * r;
#pragma unroll
    for (int d = 0; d < DS; ++d) {
      const uint32_t off = swizzled_chunk(row, d, BN) + 4 * t;
      sts32(sm.k + off,
                  pack2<T>(dk[d][2 * r] * p.scale, dk[d][2 * r + 1] * p.scale));
      sts32(sm.v + off, pack2<T>(dv[d][2 * r], dv[d][2 * r + 1]));
    }
  }
  __syncwarp();
  T* dk_ptr = p.dk.row<T>(b, hk, int64_t(seq.k_row0) + n0);
  T* dv_ptr = p.dv.row<T>(b, hk, int64_t(seq.k_row0) + n0);
  static_assert(16 * DS % 32 == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < 16 * DS / 32; ++i) {
    const int idx = i * 32 + lane;
    const int row = key_row + idx / DS, chunk = idx % DS;
    if (row < rows_k && chunk * 8 < p.head_dim) {
      const uint32_t off = swizzled_chunk(row, chunk, BN);
      *reinterpret_cast<uint4*>(dk_ptr + int64_t(row) * p.dk.sr + chunk * 8) =
          lds128(sm.k + off);
      *reinterpret_cast<uint4*>(dv_ptr + int64_t(row) * p.dv.sr + chunk * 8) =
          lds128(sm.v + off);
    }
  }
}

// Compile-time features: dropout and the score features (softcap, ALiBi: their own kernels,
// so that the others carry no trace of them).
template <class Cfg, bool kDropout, bool kScoreMods>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    bwd_kernel(const __grid_constant__ BwdParams params) {
#if FA_SM90_BWD_DEVICE_PASS
  const KernelParams& p = params.p;
  const WorkTile work = BwdScheduler::tile();
  const int hk = work.head, b = work.batch;
  const SeqInfo seq(p, b);
  const int n0 = work.block * Cfg::kBN;
  if (n0 >= seq.sk) return;  // nested batches: past this sequence's keys
  const BwdSteps steps(p, seq, n0, Cfg::kBN, Cfg::kBM);

  extern __shared__ uint8_t smem_raw[];
  const BwdSmem<Cfg> sm((smem_u32(smem_raw) + 1023u) & ~1023u);  // swizzle atoms: 1 KB
  if (threadIdx.x == 0) {
    mbar_init(sm.kv_full(), 1);
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(sm.full(s), 1);
      mbar_init(sm.empty(s), 4 * Cfg::kConsumers);
    }
    fence_barrier_init();
  }
  __syncthreads();

  // threadIdx.x / 128, not warpgroup_index(): with the warpgroup known to be uniform, ptxas
  // keeps less in ordinary registers (1/6 fewer instructions per step) but the dropout
  // kernels ran 10% slower (H100, one run); the plain ones within noise.
  const int warpgroup = threadIdx.x / 128;
  const int lane = threadIdx.x & 31, warp = (threadIdx.x / 32) & 3;
  if (warpgroup == 0) {
    release_registers<Cfg::kProducerRegs>();
    if (warp == 0) produce_bwd<Cfg>(params, sm, seq, steps, b, hk, n0, lane);
  } else {
    claim_registers<Cfg::kConsumerRegs>();
    consume_bwd<Cfg, kDropout, kScoreMods>(p, sm, seq, steps, b, hk, n0, warpgroup - 1, warp,
                                           lane);
  }
#endif
}

}  // namespace sm90
}  // namespace fa
