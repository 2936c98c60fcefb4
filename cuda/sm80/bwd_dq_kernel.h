// bwd_dq_kernel.h: dQ without atomics, for deterministic backward passes.
//
// Grid (query blocks, Hq, B), like the forward: a block keeps Q_i, dO_i, the rows' lse and
// D = rowsum(dO * O), and walks the key blocks this query block sees (last to first, causal
// blocks past the diagonal skipped), recomputing S = Q K^T (transformed per
// score_transform.h with natural scores) and dP = dO V^T, then dS = P (dP Z / (1-p) - D)
// (times the softcap's tanh derivative) in registers, whose accumulators are directly the
// A operand of dQ += dS K. Each dQ element is summed by one thread in a fixed order, so the
// result is bitwise repeatable. Costs two extra products (S and dP) over the atomic path.
#pragma once

#include "common/mask.h"
#include "common/seqlen.h"
#include "common/tile_scheduler.h"
#include "sm80/bias.h"
#include "common/dropout.h"
#include "common/kernel_params.h"
#include "sm80/masking.h"
#include "sm80/score_transform.h"
#include "sm80/tile.h"
#include "sm80/warp_gemm.h"

namespace fa {
namespace sm80 {

using DqScheduler = StaticTileScheduler<true>;

template <typename T_, int D_, int BM_, int BN_, int STAGES_>
struct DqConfig {
  using T = T_;
  static constexpr int kD = D_, kBM = BM_, kBN = BN_;
  static constexpr int kWarps = BM_ / 16, kThreads = 32 * kWarps;  // one 16-row slab each
  static constexpr int kStages = STAGES_;                           // K/V buffers
  static constexpr int kNS = kBN / 8, kDS = kD / 8;
  using QTile = SmemTile<kBM, kD>;
  using KTile = SmemTile<kBN, kD>;
  static constexpr int kSmemBytes = 2 * QTile::kBytes + 2 * kStages * KTile::kBytes + 1024;
};

// kScoreMods: softcap or ALiBi (p.has_score_mods()), a compile-time flag like the main
// kernel's (bwd_kernel.h), so the plain kernel carries none of their code.
template <class Cfg, bool kScoreMods>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    bwd_dq_kernel(const __grid_constant__ KernelParams p) {
  using T = typename Cfg::T;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, D = Cfg::kD;
  constexpr int NS = Cfg::kNS, DS = Cfg::kDS;
  using QTile = typename Cfg::QTile;
  using KTile = typename Cfg::KTile;

  const WorkTile work = DqScheduler::tile();
  const int m_block = work.block, h = work.head, b = work.batch;
  const SeqInfo seq(p, b);
  const int m0 = m_block * BM;
  if (m0 >= seq.sq) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2;
  const int hk = h / p.group;

  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = smem;
  const uint32_t sO = sQ + QTile::kBytes;  // dO
  const uint32_t sK0 = sO + QTile::kBytes;  // stage s: K at sK0 + 2 s K, V right after
  constexpr uint32_t kStageBytes = 2 * KTile::kBytes;

  const int rows_q = seq.sq - m0 < BM ? seq.sq - m0 : BM;
  const KeyBlocks blocks = key_blocks(seq.range(p), m0, m0 + BM, BN);
  const int n_first = blocks.first, n_blocks = blocks.last;

  const T* k_ptr = p.k.row<const T>(b, hk, seq.k_row0);
  const T* v_ptr = p.v.row<const T>(b, hk, seq.k_row0);
  auto load_kv = [&](int n) {
    const uint32_t dst = sK0 + ((n_blocks - 1 - n) % Cfg::kStages) * kStageBytes;
    const int rows = seq.sk - n * BN < BN ? seq.sk - n * BN : BN;
    load_tile_async<BN, D, Cfg::kThreads>(dst, k_ptr + int64_t(n) * BN * p.k.sr, p.k.sr, rows,
                                          p.head_dim, tid);
    load_tile_async<BN, D, Cfg::kThreads>(dst + KTile::kBytes, v_ptr + int64_t(n) * BN * p.v.sr,
                                          p.v.sr, rows, p.head_dim, tid);
  };

  const int64_t q_row = int64_t(seq.q_row0) + m0;
  if (n_blocks > n_first) {
    load_tile_async<BM, D, Cfg::kThreads>(sQ, p.q.row<const T>(b, h, q_row), p.q.sr, rows_q,
                                          p.head_dim, tid);
    load_tile_async<BM, D, Cfg::kThreads>(sO, p.dout.row<const T>(b, h, q_row), p.dout.sr,
                                          rows_q, p.head_dim, tid);
    load_kv(n_blocks - 1);
  }
  cp_async_commit();

  const int warp_row = warp * 16;
  const int row0 = m0 + warp_row;
  const int64_t ws_row = b * p.ws_sb + h * p.ws_sh + seq.q_row0;  // + local row
  float lse2[1][2], dsum[1][2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row0 + g + r * 8;
    const bool ok = i < seq.sq;
    lse2[0][r] = ok ? p.lse_log2[ws_row + i] : INFINITY;
    dsum[0][r] = ok ? p.dsum[ws_row + i] : 0.0f;
  }
  const uint32_t batch_head = uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h);
  const DropoutRng rng{p.seed, p.offset, batch_head, p.dropout_threshold};
  const float slope = kScoreMods ? p.alibi_slope(b, h) : 0.0f;

  const uint32_t q_lane = QTile::lane_rows16(sQ + warp_row * QTile::kRowBytes, lane);
  const uint32_t k_lane = KTile::lane_cols16(sK0, lane);   // K as B of Q K^T (n-major)
  const uint32_t kt_lane = KTile::lane_rows16(sK0, lane);  // K as B of dS K (k-major)

  float acc_dq[1][DS][4];
  zero(acc_dq);

  for (int n = n_blocks - 1; n >= n_first; --n) {
    const uint32_t stage = ((n_blocks - 1 - n) % Cfg::kStages) * kStageBytes;
    cp_async_wait<0>();
    __syncthreads();  // K_n, V_n visible; everyone is done with the previous stage
    if (Cfg::kStages == 2 && n > n_first) {
      load_kv(n - 1);
      cp_async_commit();
    }

    float acc_s[1][NS][4], acc_dp[1][NS][4];
    zero(acc_s);
    zero(acc_dp);
    gemm_ss<T, 1, NS, D / 16, QTile, AOperand::kRowMajor, KTile, BOperand::kNMajor>(
        acc_s, q_lane, k_lane + stage);
    gemm_ss<T, 1, NS, D / 16, QTile, AOperand::kRowMajor, KTile, BOperand::kNMajor>(
        acc_dp, q_lane + QTile::kBytes, k_lane + stage + KTile::kBytes);

    const int col0 = n * BN;
    auto add_tile_bias = [&](auto& s, auto&& pre) {
      add_bias(s, p.bias, b, h, row0, col0, seq.sq, seq.sk, pre, lane);
    };
    SoftcapGrad<1, NS> softcap{p.softcap_tanh_scale, p.softcap};
    if constexpr (kScoreMods) {
      score_transform(acc_s, p, p.softcap > 0.0f, softcap, add_tile_bias, slope, row0, col0,
                      seq.sq, seq.sk, lane);
    } else if (p.has_bias) {
      add_tile_bias(acc_s, ScaleBy{p.scale});
    }
    if (!seq.range(p).tile_fully_visible(m0, BM, col0, BN)) {
      mask_scores(acc_s, row0, col0, seq.range(p), lane);
    }
#pragma unroll
    for (int j = 0; j < NS; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc_s[0][j][e] = ex2(fmaf(acc_s[0][j][e], p.softmax_scale_log2, -lse2[0][e >> 1]));
    if (p.has_dropout) {
      const float rescale = p.dropout_rescale;
      dropout_for_each<1, NS>(rng, row0, col0, lane, [&](int s, int j, int e, bool keep) {
        const float dp = keep ? acc_dp[s][j][e] * rescale : 0.0f;
        acc_dp[s][j][e] = acc_s[s][j][e] * (dp - dsum[s][e >> 1]);
      });
    } else {
#pragma unroll
      for (int j = 0; j < NS; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          acc_dp[0][j][e] = acc_s[0][j][e] * (acc_dp[0][j][e] - dsum[0][e >> 1]);
    }

    if constexpr (kScoreMods) {
      if (p.softcap > 0.0f) softcap.apply(acc_dp);  // to the gradient of scale q.k
    }
    gemm_rs<T, 1, DS, BN / 16, KTile, BOperand::kKMajor>(acc_dq, acc_dp, kt_lane + stage);

    if (Cfg::kStages == 1 && n > n_first) {
      __syncthreads();  // everyone is done with K_n, V_n
      load_kv(n - 1);
      cp_async_commit();
    }
  }

  // ---- epilogue: dq = scale * acc, through this warp's own rows of the Q tile ----
  const int t = lane & 3;
  __syncwarp();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp_row + g + r * 8;
#pragma unroll
    for (int d = 0; d < DS; ++d)
      sts32(sQ + QTile::offset(row, d) + 4 * t,
            pack2<T>(acc_dq[0][d][2 * r] * p.scale, acc_dq[0][d][2 * r + 1] * p.scale));
  }
  __syncwarp();
  T* dq_ptr = p.dq.row<T>(b, h, q_row);
  constexpr int kChunks = QTile::kChunks;
  static_assert((16 * kChunks) % 32 == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < 16 * kChunks / 32; ++i) {
    const int idx = i * 32 + lane;
    const int row = warp_row + idx / kChunks, chunk = idx % kChunks;
    const uint4 v = lds128(sQ + QTile::offset(row, chunk));
    if (row < rows_q && chunk * 8 < p.head_dim) {
      *reinterpret_cast<uint4*>(dq_ptr + int64_t(row) * p.dq.sr + chunk * 8) = v;
    }
  }
}

}  // namespace sm80
}  // namespace fa
