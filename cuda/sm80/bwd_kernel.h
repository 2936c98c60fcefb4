// bwd_kernel.h: the main backward kernel (FlashAttention-2, key-block parallel).
//
// Grid (key blocks, Hkv, B); one block owns BN keys of one (batch, kv head):
//   - K_j and V_j are loaded once; dK_j and dV_j accumulate in registers over every query
//     head of the GQA group and every query block that sees these keys (causal: from the
//     diagonal on), so they need no atomics.
//   - Per query block i: Q_i and dO_i stream in (cp.async, double-buffered where shared
//     memory allows), then
//        S = Q K^T, dP = dO V^T                    (warps 2x4 or 4x2 over BM x BN)
//        S transformed (score_transform.h) when natural scores are on
//        P = exp2(S * scale_log2 - lse_log2)       (lse from the forward, +inf = empty row)
//        Z = dropout keep mask, Pd = P Z / (1-p), dS = P (dP Z / (1-p) - D)
//        Pd, dS -> shared memory (16-bit)
//        dV += Pd^T dO, dK += dS^T Q               (warps 4x2 over BN x D)
//        dQ_accum += dS K                          (warps over BM x D, fp32 red.add)
//     with D = rowsum(dO * O) from the preprocess kernel.
//   - dbias: dS in fp32 delivered per dbias.h; with a softcap dS is then multiplied by the
//     tanh derivative for dQ and dK (dbias is the gradient of the score after the cap;
//     without dbias and dropout the derivative is folded into dP - D at the cap instead).
//   - Epilogue: dK * scale and dV through shared memory, 16-byte predicated stores.
// Deterministic mode skips the dQ product here (accumulate_dq = false); bwd_dq_kernel.h
// then computes dQ per query block without atomics.
#pragma once

#include "common/mask.h"
#include "common/seqlen.h"
#include "common/tile_scheduler.h"
#include "sm80/bias.h"
#include "common/dbias.h"
#include "common/dropout.h"
#include "common/kernel_params.h"
#include "sm80/masking.h"
#include "sm80/score_transform.h"
#include "sm80/tile.h"
#include "sm80/warp_gemm.h"

namespace fa {
namespace sm80 {

using BwdScheduler = StaticTileScheduler<false>;

// WM_S: warps along the query rows for S/dP; WN_KV: warps along the keys for dK/dV;
// WM_Q: warps along the query rows for dQ. The other dimension gets 8 / that.
// FOLD_SOFTCAP: a separate kernel for the softcap without dropout and dbias (BwdMods), where
// the one score-mods kernel spills.
template <typename T_, int D_, int BM_, int BN_, int WM_S_, int WN_KV_, int WM_Q_, int STAGES_,
          bool FOLD_SOFTCAP_ = false>
struct BwdConfig {
  using T = T_;
  static constexpr int kD = D_, kBM = BM_, kBN = BN_;
  static constexpr int kWarps = 8, kThreads = 256;
  static constexpr int kStages = STAGES_;  // Q/dO buffers
  static constexpr bool kFoldSoftcap = FOLD_SOFTCAP_;
  static constexpr int kWM_S = WM_S_, kWN_S = kWarps / WM_S_;
  static constexpr int kWN_KV = WN_KV_, kWD_KV = kWarps / WN_KV_;
  static constexpr int kWM_Q = WM_Q_, kWD_Q = kWarps / WM_Q_;
  static constexpr int kMS_S = kBM / (16 * kWM_S), kNS_S = kBN / (8 * kWN_S);
  static constexpr int kMS_KV = kBN / (16 * kWN_KV), kDS_KV = kD / (8 * kWD_KV);
  static constexpr int kMS_Q = kBM / (16 * kWM_Q), kDS_Q = kD / (8 * kWD_Q);
  static_assert(kMS_S * 16 * kWM_S == kBM && kNS_S * 8 * kWN_S == kBN, "S/dP warp tiling");
  static_assert(kMS_KV * 16 * kWN_KV == kBN && kDS_KV * 8 * kWD_KV == kD, "dK/dV warp tiling");
  static_assert(kMS_Q * 16 * kWM_Q == kBM && kDS_Q * 8 * kWD_Q == kD, "dQ warp tiling");
  static_assert(kNS_S % 4 == 0 && kDS_KV % 2 == 0 && kDS_Q % 2 == 0, "fragment pairs");

  using QTile = SmemTile<kBM, kD>;   // Q, dO
  using KTile = SmemTile<kBN, kD>;   // K, V
  using PTile = SmemTile<kBM, kBN>;  // Pd, dS
  static constexpr int kScratchBytes = kWM_S * kBN * 4;  // dbias column sums
  static constexpr int kSmemBytes = 2 * KTile::kBytes + 2 * kStages * QTile::kBytes +
                                    2 * PTile::kBytes + kScratchBytes + 1024;
  // A staged bias (bias.h) adds one BM x BN tile per Q/dO stage after the scratch, sized
  // for fp32 whatever the dtype: a compile-time stride keeps the kernel's register count.
  static constexpr int kBiasStageBytes = kBM * kBN * 4;
};

// How a main kernel computes softcap and ALiBi (score_transform.h), fixed at compile time:
// each way's code stays out of the kernels of the others, at the 255-register cap.
enum class BwdMods {
  kNone,    // neither (bias alone runs here, as before they existed)
  kKept,    // softcap and ALiBi; the softcap's derivative is kept from the cap to dS
            // (SoftcapGrad: 16 registers in 64 x 128 tiles, 8 in 64 x 64)
  kFolded,  // Cfg::kFoldSoftcap only: softcap without dropout and dbias, or ALiBi alone;
            // the derivative goes into dP - D at the cap (SoftcapFold), nothing is kept.
            // kKept then only runs the softcap with dropout or dbias.
};

template <class Cfg>
__host__ __device__ inline BwdMods bwd_mods(const KernelParams& p) {
  if (!p.has_score_mods()) return BwdMods::kNone;
  if (!Cfg::kFoldSoftcap) return BwdMods::kKept;
  const bool keep = p.softcap > 0.0f && (p.has_dropout || p.dbias_mode != kDbiasNone);
  return keep ? BwdMods::kKept : BwdMods::kFolded;
}

// kStagedBias (p.bias_staged) is a compile-time flag too: the staging code costs the plain
// kernel spills (measured 3-5% slower on the H100's plain rows). With score mods a bias is
// read directly (no kernel has both, for build time).
template <class Cfg, bool kStagedBias, BwdMods kMods>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    bwd_kernel(const __grid_constant__ KernelParams p) {
  using T = typename Cfg::T;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, D = Cfg::kD;
  constexpr int MS_S = Cfg::kMS_S, NS_S = Cfg::kNS_S;
  constexpr int MS_KV = Cfg::kMS_KV, DS_KV = Cfg::kDS_KV;
  constexpr int MS_Q = Cfg::kMS_Q, DS_Q = Cfg::kDS_Q;
  using QTile = typename Cfg::QTile;
  using KTile = typename Cfg::KTile;
  using PTile = typename Cfg::PTile;

  const WorkTile work = BwdScheduler::tile();
  const int n_block = work.block, hk = work.head, b = work.batch;
  const SeqInfo seq(p, b);
  const int n0 = n_block * BN;
  if (n0 >= seq.sk) return;  // nested batches: past this sequence's keys

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;

  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sK = smem;
  const uint32_t sV = sK + KTile::kBytes;
  const uint32_t sQ0 = sV + KTile::kBytes;  // stage s: Q at sQ0 + 2 s Q, dO right after Q
  const uint32_t sP = sQ0 + 2 * Cfg::kStages * QTile::kBytes;
  const uint32_t sS = sP + PTile::kBytes;  // dS
  float* scratch = reinterpret_cast<float*>(smem_raw + (sS + PTile::kBytes - smem_u32(smem_raw)));
  constexpr uint32_t kStageBytes = 2 * QTile::kBytes;
  const uint32_t sB0 = sS + PTile::kBytes + Cfg::kScratchBytes;  // staged bias, per stage
  constexpr uint32_t bias_stage = Cfg::kBiasStageBytes;

  // Warp positions in the three products.
  const int wm_s = warp % Cfg::kWM_S, wn_s = warp / Cfg::kWM_S;
  const int wn_kv = warp % Cfg::kWN_KV, wd_kv = warp / Cfg::kWN_KV;
  const int wm_q = warp % Cfg::kWM_Q, wd_q = warp / Cfg::kWM_Q;

  // Lane addresses (stage 0 for Q/dO; add s * kStageBytes).
  const uint32_t q_lane_s = QTile::lane_rows16(sQ0 + wm_s * MS_S * 16 * QTile::kRowBytes, lane);
  const uint32_t k_lane_s = KTile::lane_cols16(sK + wn_s * NS_S * 8 * KTile::kRowBytes, lane);
  const uint32_t pt_lane = xor_chunks(PTile::lane_cols16(sP, lane), wn_kv * MS_KV * 2);
  const uint32_t st_lane = xor_chunks(PTile::lane_cols16(sS, lane), wn_kv * MS_KV * 2);
  const uint32_t q_lane_kv = xor_chunks(QTile::lane_rows16(sQ0, lane), wd_kv * DS_KV);
  const uint32_t s_lane_q = PTile::lane_rows16(sS + wm_q * MS_Q * 16 * PTile::kRowBytes, lane);
  const uint32_t k_lane_q = xor_chunks(KTile::lane_rows16(sK, lane), wd_q * DS_Q);

  // Query blocks that see these keys, for each head of the group.
  const QueryBlocks blocks = query_blocks(seq.range(p), n0, BN, BM);
  const int m_begin = blocks.first, m_end = blocks.last;
  const int num_m = m_end > m_begin ? m_end - m_begin : 0;
  const int total = p.group * num_m;

  const T* k_ptr = p.k.row<const T>(b, hk, seq.k_row0 + n0);
  const T* v_ptr = p.v.row<const T>(b, hk, seq.k_row0 + n0);
  const int rows_k = seq.sk - n0 < BN ? seq.sk - n0 : BN;
  load_tile_async<BN, D, Cfg::kThreads>(sK, k_ptr, p.k.sr, rows_k, p.head_dim, tid);
  load_tile_async<BN, D, Cfg::kThreads>(sV, v_ptr, p.v.sr, rows_k, p.head_dim, tid);

  auto load_q_do = [&](int it) {
    const int h = hk * p.group + it / num_m;
    const int m = m_begin + it % num_m;
    const uint32_t dst = sQ0 + (it % Cfg::kStages) * kStageBytes;
    const int64_t row = int64_t(seq.q_row0) + int64_t(m) * BM;
    const int rows = seq.sq - m * BM < BM ? seq.sq - m * BM : BM;
    load_tile_async<BM, D, Cfg::kThreads>(dst, p.q.row<const T>(b, h, row), p.q.sr, rows,
                                          p.head_dim, tid);
    load_tile_async<BM, D, Cfg::kThreads>(dst + QTile::kBytes, p.dout.row<const T>(b, h, row),
                                          p.dout.sr, rows, p.head_dim, tid);
    if constexpr (kStagedBias) {
      load_bias_tile_async<BM, BN, Cfg::kThreads>(sB0 + (it % Cfg::kStages) * bias_stage, p.bias,
                                                  b, h, m * BM, n0, rows, seq.sk, tid);
    }
  };
  if (total > 0) load_q_do(0);
  cp_async_commit();

  float acc_dk[MS_KV][DS_KV][4], acc_dv[MS_KV][DS_KV][4];
  zero(acc_dk);
  zero(acc_dv);
  ColumnSums<Cfg::kWM_S, NS_S> colsum{scratch, BN};
  colsum.clear(tid, Cfg::kThreads);
  const bool dbias_rows = p.dbias_mode != kDbiasNone && p.dbias_sum_row;

  for (int it = 0; it < total; ++it) {
    const int h = hk * p.group + it / num_m;
    const int m = m_begin + it % num_m;
    const int m0 = m * BM;
    const uint32_t stage = (it % Cfg::kStages) * kStageBytes;

    cp_async_wait<0>();
    __syncthreads();  // Q_i/dO_i (and K, V) visible; everyone is done with iteration it - 1
    if (Cfg::kStages == 2 && it + 1 < total) {
      load_q_do(it + 1);
      cp_async_commit();
    }

    // ---- S = Q K^T and dP = dO V^T over this warp's BM x BN sub-tile ----
    const int row0 = m0 + wm_s * MS_S * 16;  // query row of the warp's first row
    const int col0 = n0 + wn_s * NS_S * 8;   // key of the warp's first column
    const int64_t ws_row = b * p.ws_sb + h * p.ws_sh + seq.q_row0;  // + local row
    float lse2[MS_S][2], dsum[MS_S][2];
#pragma unroll
    for (int s = 0; s < MS_S; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = row0 + s * 16 + g + r * 8;
        const bool ok = i < seq.sq;
        lse2[s][r] = ok ? p.lse_log2[ws_row + i] : INFINITY;
        dsum[s][r] = ok ? p.dsum[ws_row + i] : 0.0f;
      }

    float acc_s[MS_S][NS_S][4], acc_dp[MS_S][NS_S][4];
    zero(acc_s);
    zero(acc_dp);
    gemm_ss<T, MS_S, NS_S, D / 16, QTile, AOperand::kRowMajor, KTile, BOperand::kNMajor>(
        acc_s, q_lane_s + stage, k_lane_s);
    gemm_ss<T, MS_S, NS_S, D / 16, QTile, AOperand::kRowMajor, KTile, BOperand::kNMajor>(
        acc_dp, q_lane_s + stage + QTile::kBytes, k_lane_s + KTile::kBytes);

    auto add_tile_bias = [&](auto& s, auto&& pre) {
      if constexpr (kStagedBias) {
        add_staged_bias<BN>(s, sB0 + (it % Cfg::kStages) * bias_stage, p.bias.dtype,
                            wm_s * MS_S * 16, pre, lane, wn_s * NS_S * 8);
      } else {
        add_bias(s, p.bias, b, h, row0, col0, seq.sq, seq.sk, pre, lane);
      }
    };
    SoftcapGrad<MS_S, NS_S> softcap{p.softcap_tanh_scale, p.softcap};
    // With kFoldSoftcap, kKept runs only with the softcap on.
    const bool softcap_on = Cfg::kFoldSoftcap || p.softcap > 0.0f;
    if constexpr (kMods == BwdMods::kKept) {
      score_transform(acc_s, p, softcap_on, softcap, add_tile_bias, p.alibi_slope(b, h), row0,
                      col0, seq.sq, seq.sk, lane);
    } else if constexpr (kMods == BwdMods::kFolded) {
      SoftcapFold<MS_S, NS_S> fold{p.softcap_tanh_scale, p.softcap, acc_dp, dsum};
      score_transform(acc_s, p, p.softcap > 0.0f, fold, add_tile_bias, p.alibi_slope(b, h),
                      row0, col0, seq.sq, seq.sk, lane);
      if (p.softcap > 0.0f) {
#pragma unroll
        for (int s = 0; s < MS_S; ++s) dsum[s][0] = dsum[s][1] = 0.0f;  // in acc_dp already
      }
    } else if (kStagedBias || p.has_bias) {
      add_tile_bias(acc_s, ScaleBy{p.scale});
    }
    if (!seq.range(p).tile_fully_visible(m0, BM, n0, BN)) {
      mask_scores(acc_s, row0, col0, seq.range(p), lane);
    }
    // P (in acc_s), then dS (in acc_dp) and the dropped Pd (in acc_s).
#pragma unroll
    for (int s = 0; s < MS_S; ++s)
#pragma unroll
      for (int n = 0; n < NS_S; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc_s[s][n][e] = ex2(fmaf(acc_s[s][n][e], p.softmax_scale_log2, -lse2[s][e >> 1]));
    if (p.has_dropout) {
      const uint32_t batch_head = uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h);
      const DropoutRng rng{p.seed, p.offset, batch_head, p.dropout_threshold};
      const float rescale = p.dropout_rescale;
      dropout_for_each<MS_S, NS_S>(rng, row0, col0, lane, [&](int s, int n, int e, bool keep) {
        const float pv = acc_s[s][n][e];
        const float dp = keep ? acc_dp[s][n][e] * rescale : 0.0f;
        acc_dp[s][n][e] = pv * (dp - dsum[s][e >> 1]);
        acc_s[s][n][e] = keep ? pv * rescale : 0.0f;
      });
    } else {
#pragma unroll
      for (int s = 0; s < MS_S; ++s)
#pragma unroll
        for (int n = 0; n < NS_S; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            acc_dp[s][n][e] = acc_s[s][n][e] * (acc_dp[s][n][e] - dsum[s][e >> 1]);
    }

    // ---- dbias ----
    if (p.dbias_mode != kDbiasNone) {
      if (dbias_rows) {
        colsum.add(acc_dp, wm_s, wn_s * NS_S * 8, lane);
      } else {
#pragma unroll
        for (int s = 0; s < MS_S; ++s)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int i = row0 + s * 16 + g + r * 8;
            if (i < seq.sq) {
              const int64_t off = dbias_row_offset(p, b, h, hk, i);
#pragma unroll
              for (int n = 0; n < NS_S; ++n)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  const int j = col0 + n * 8 + 2 * t + e;
                  if (j < seq.sk) deliver_dbias(p, off + j, acc_dp[s][n][2 * r + e]);
                }
            }
          }
      }
    }

    // dS so far is the gradient of the capped score (dbias's); dQ and dK want that of
    // scale q.k.
    if constexpr (kMods == BwdMods::kKept) {
      if (softcap_on) softcap.apply(acc_dp);
    }

    // ---- Pd and dS to shared memory ----
#pragma unroll
    for (int s = 0; s < MS_S; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = wm_s * MS_S * 16 + s * 16 + g + r * 8;
#pragma unroll
        for (int n = 0; n < NS_S; ++n) {
          const uint32_t off = PTile::offset(row, wn_s * NS_S + n) + 4 * t;
          sts32(sP + off, pack2<T>(acc_s[s][n][2 * r], acc_s[s][n][2 * r + 1]));
          sts32(sS + off, pack2<T>(acc_dp[s][n][2 * r], acc_dp[s][n][2 * r + 1]));
        }
      }
    __syncthreads();

    // ---- dV += Pd^T dO, dK += dS^T Q ----
    gemm_ss<T, MS_KV, DS_KV, BM / 16, PTile, AOperand::kTransposed, QTile, BOperand::kKMajor>(
        acc_dv, pt_lane, q_lane_kv + stage + QTile::kBytes);
    gemm_ss<T, MS_KV, DS_KV, BM / 16, PTile, AOperand::kTransposed, QTile, BOperand::kKMajor>(
        acc_dk, st_lane, q_lane_kv + stage);

    // ---- dQ_accum += dS K ----
    if (p.accumulate_dq) {
      float acc_dq[MS_Q][DS_Q][4];
      zero(acc_dq);
      gemm_ss<T, MS_Q, DS_Q, BN / 16, PTile, AOperand::kRowMajor, KTile, BOperand::kKMajor>(
          acc_dq, s_lane_q, k_lane_q);
#pragma unroll
      for (int s = 0; s < MS_Q; ++s)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = m0 + wm_q * MS_Q * 16 + s * 16 + g + r * 8;
          if (i < seq.sq) {
            float* dst = p.dq_accum + (ws_row + i) * p.head_dim_pad + wd_q * DS_Q * 8 + 2 * t;
#pragma unroll
            for (int n = 0; n < DS_Q; ++n)
              red_add2(dst + n * 8, acc_dq[s][n][2 * r], acc_dq[s][n][2 * r + 1]);
          }
        }
    }

    // ---- dbias summed over rows: one delivery per head (or per group) ----
    if (dbias_rows) {
      const bool head_done = (it + 1) % num_m == 0;
      const bool group_done = it + 1 == total;
      if (p.dbias_sum_h ? group_done : head_done) {
        colsum.flush(p, tid, Cfg::kThreads, n0, seq.sk, dbias_row_offset(p, b, h, hk, 0));
      }
    }

    if (Cfg::kStages == 1 && it + 1 < total) {
      __syncthreads();  // everyone is done with Q_i/dO_i
      load_q_do(it + 1);
      cp_async_commit();
    }
  }

  // ---- epilogue: dK * scale, dV ----
  cp_async_wait<0>();
  __syncthreads();  // all products done; K/V loads landed even when nothing was computed
#pragma unroll
  for (int s = 0; s < MS_KV; ++s)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = wn_kv * MS_KV * 16 + s * 16 + g + r * 8;
#pragma unroll
      for (int n = 0; n < DS_KV; ++n) {
        const uint32_t off = KTile::offset(row, wd_kv * DS_KV + n) + 4 * t;
        sts32(sK + off, pack2<T>(acc_dk[s][n][2 * r] * p.scale, acc_dk[s][n][2 * r + 1] * p.scale));
        sts32(sV + off, pack2<T>(acc_dv[s][n][2 * r], acc_dv[s][n][2 * r + 1]));
      }
    }
  __syncthreads();
  T* dk_ptr = p.dk.row<T>(b, hk, seq.k_row0 + n0);
  T* dv_ptr = p.dv.row<T>(b, hk, seq.k_row0 + n0);
  constexpr int kChunks = KTile::kChunks;
  static_assert((BN * kChunks) % Cfg::kThreads == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < BN * kChunks / Cfg::kThreads; ++i) {
    const int idx = i * Cfg::kThreads + tid;
    const int row = idx / kChunks, chunk = idx % kChunks;
    if (row < rows_k && chunk * 8 < p.head_dim) {
      const uint32_t off = KTile::offset(row, chunk);
      *reinterpret_cast<uint4*>(dk_ptr + int64_t(row) * p.dk.sr + chunk * 8) = lds128(sK + off);
      *reinterpret_cast<uint4*>(dv_ptr + int64_t(row) * p.dv.sr + chunk * 8) = lds128(sV + off);
    }
  }
}

}  // namespace sm80
}  // namespace fa
