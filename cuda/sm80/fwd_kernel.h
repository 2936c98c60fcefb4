// fwd_kernel.h: the forward kernel (FlashAttention-2 on mma.sync).
//
// One block computes BM query rows of one (batch, head), the tile FwdScheduler gives it:
//   - Q tile: cp.async to shared memory once; each warp owns MS 16-row slabs of it and
//     reads its A fragments with ldmatrix at every key block.
//   - K and V tiles of BN keys stream through one buffer each, overlapped FA2-style:
//     V_n is loaded while S = Q K_n^T is computed, K_{n-1} while softmax and O += P V_n run.
//     Key blocks are visited last to first, so the masked ones (key tail, causal diagonal)
//     come first; blocks outside the window (common/mask.h key_blocks) are never visited.
//   - S stays in registers: the natural scores' transform (scale, softcap, bias, ALiBi;
//     score_transform.h) when on, masks, online softmax (exp2 with the scale folded in
//     otherwise), dropout, then its accumulators are repacked as the A operand of P V.
//   - Epilogue: O / l through the warp's own rows of the Q tile in shared memory, 16-byte
//     predicated stores; lse = max * scale + log(l) (natural log), -inf for empty rows.
// Head dims below the bucket D are zero-filled on load and masked on store.
#pragma once

#include "common/dropout.h"
#include "common/kernel_params.h"
#include "common/mask.h"
#include "common/online_softmax.h"
#include "common/seqlen.h"
#include "common/tile_scheduler.h"
#include "sm80/bias.h"
#include "sm80/masking.h"
#include "sm80/score_transform.h"
#include "sm80/tile.h"
#include "sm80/warp_gemm.h"

namespace fa {
namespace sm80 {

// Heaviest (causal) query blocks first.
using FwdScheduler = StaticTileScheduler<true>;

template <typename T_, int D_, int BM_, int BN_, int WARPS_, int MIN_BLOCKS_>
struct FwdConfig {
  using T = T_;
  static constexpr int kD = D_;          // head-dim bucket
  static constexpr int kBM = BM_;        // query rows per block
  static constexpr int kBN = BN_;        // keys per tile
  static constexpr int kWarps = WARPS_;
  static constexpr int kThreads = 32 * WARPS_;
  static constexpr int kMinBlocks = MIN_BLOCKS_;
  static constexpr int kMS = kBM / (16 * kWarps);  // 16-row slabs per warp
  static constexpr int kNS = kBN / 8;              // n8 tiles of S per slab
  static constexpr int kDS = kD / 8;               // n8 tiles of O per slab
  static_assert(kMS * 16 * kWarps == kBM, "warps split the query rows evenly");

  using QTile = SmemTile<kBM, kD>;
  using KTile = SmemTile<kBN, kD>;  // K and V
  static constexpr int kSmemBytes = QTile::kBytes + 2 * KTile::kBytes + 1024;  // + alignment
  // A staged bias tile (bias.h) adds kBM * kBN * element size after V.
};

// Compile-time feature flags, each keeping its code (and live registers) out of the kernels
// without it, which sit at the 255-register cap: kDropout (Philox) and kScoreMods (softcap
// or ALiBi, p.has_score_mods(); compiled into the plain kernels behind runtime branches they
// made the d128 kernel spill 412 bytes on sm_90a). The score-mods kernel is one per
// configuration (<Cfg, true, true>, for build time): softcap, ALiBi, bias and dropout are
// runtime flags inside it (its spills, a few bytes, are listed in README.md).
template <class Cfg, bool kDropout, bool kScoreMods>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    fwd_kernel(const __grid_constant__ KernelParams p) {
  using T = typename Cfg::T;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, D = Cfg::kD;
  constexpr int MS = Cfg::kMS, NS = Cfg::kNS, DS = Cfg::kDS;
  using QTile = typename Cfg::QTile;
  using KTile = typename Cfg::KTile;

  const WorkTile work = FwdScheduler::tile();
  const int m_block = work.block, h = work.head, b = work.batch;
  const SeqInfo seq(p, b);
  const int m0 = m_block * BM;
  if (m0 >= seq.sq) return;  // nested batches: past this sequence's end

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hk = h / p.group;

  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t sQ = smem;
  const uint32_t sK = sQ + QTile::kBytes;
  const uint32_t sV = sK + KTile::kBytes;
  const uint32_t sB = sV + KTile::kBytes;  // staged bias tile, when p.bias_staged

  const T* q_ptr = p.q.row<const T>(b, h, seq.q_row0 + m0);
  const T* k_ptr = p.k.row<const T>(b, hk, seq.k_row0);
  const T* v_ptr = p.v.row<const T>(b, hk, seq.k_row0);
  const int rows_q = seq.sq - m0 < BM ? seq.sq - m0 : BM;

  // Key blocks [n_first, n_blocks) hold every key a row of this block sees.
  const KeyBlocks blocks = key_blocks(seq.range(p), m0, m0 + BM, BN);
  const int n_first = blocks.first, n_blocks = blocks.last;

  const int warp_row = warp * MS * 16;  // first row of this warp's slabs in the tile
  const uint32_t q_lane = QTile::lane_rows16(sQ + warp_row * QTile::kRowBytes, lane);
  const uint32_t k_lane = KTile::lane_cols16(sK, lane);
  const uint32_t v_lane = KTile::lane_rows16(sV, lane);

  auto load_kv = [&](uint32_t dst, const T* src, int64_t stride, int n) {
    const int rows = seq.sk - n * BN < BN ? seq.sk - n * BN : BN;
    load_tile_async<BN, D, Cfg::kThreads>(dst, src + int64_t(n) * BN * stride, stride, rows,
                                          p.head_dim, tid);
  };

  float acc_o[MS][DS][4];
  zero(acc_o);
  OnlineSoftmax<MS> softmax;
  const uint32_t batch_head = uint32_t(b) * uint32_t(p.heads_q) + uint32_t(h);
  const DropoutRng rng{p.seed, p.offset, batch_head, p.dropout_threshold};

  const float slope = kScoreMods ? p.alibi_slope(b, h) : 0.0f;
  // The score-mods kernel is instantiated with kDropout and checks p.has_dropout at run time.
  const bool dropout = kDropout && (!kScoreMods || p.has_dropout);

  auto load_bias = [&](int n) {
    load_bias_tile_async<BM, BN, Cfg::kThreads>(sB, p.bias, b, h, m0, n * BN, rows_q, seq.sk,
                                                tid);
  };

  if (n_blocks > n_first) {
    load_tile_async<BM, D, Cfg::kThreads>(sQ, q_ptr, p.q.sr, rows_q, p.head_dim, tid);
    load_kv(sK, k_ptr, p.k.sr, n_blocks - 1);
    if (p.bias_staged) load_bias(n_blocks - 1);
    cp_async_commit();
  }

  for (int n = n_blocks - 1; n >= n_first; --n) {
    cp_async_wait<0>();
    __syncthreads();  // K_n (and Q) visible; every warp is done with V_{n+1}
    load_kv(sV, v_ptr, p.v.sr, n);
    cp_async_commit();

    float acc_s[MS][NS][4];
    zero(acc_s);
    gemm_ss<T, MS, NS, D / 16, QTile, AOperand::kRowMajor, KTile, BOperand::kNMajor>(
        acc_s, q_lane, k_lane);

    const int row0 = m0 + warp_row, col0 = n * BN;
    auto add_tile_bias = [&](auto& s, auto&& pre) {
      if (p.bias_staged) {
        add_staged_bias<BN>(s, sB, p.bias.dtype, warp_row, pre, lane);
      } else {
        add_bias(s, p.bias, b, h, row0, col0, seq.sq, seq.sk, pre, lane);
      }
    };
    if constexpr (kScoreMods) {
      Softcap cap{p.softcap_tanh_scale, p.softcap};
      score_transform(acc_s, p, p.softcap > 0.0f, cap, add_tile_bias, slope, row0, col0,
                      seq.sq, seq.sk, lane);
    } else if (p.has_bias) {
      add_tile_bias(acc_s, ScaleBy{p.scale});
    }
    if (!seq.range(p).tile_fully_visible(m0, BM, col0, BN)) {
      mask_scores(acc_s, row0, col0, seq.range(p), lane);
    }

    cp_async_wait<0>();
    __syncthreads();  // V_n visible; every warp is done with K_n (and the bias tile)
    if (n > n_first) {
      load_kv(sK, k_ptr, p.k.sr, n - 1);
      if (p.bias_staged) load_bias(n - 1);
      cp_async_commit();
    }

    softmax.update(acc_s, acc_o, p.softmax_scale_log2, n == n_blocks - 1);
    if (dropout) {
      dropout_for_each<MS, NS>(rng, row0, col0, lane, [&](int s, int j, int e, bool kept) {
        if (!kept) acc_s[s][j][e] = 0.0f;
      });
    }
    gemm_rs<T, MS, DS, BN / 16, KTile, BOperand::kKMajor>(acc_o, acc_s, v_lane);
  }

  // ---- epilogue ----
  float out_scale[MS][2], lse[MS][2];
  const float sink = p.sinks != nullptr ? p.sinks[h] : -INFINITY;
  softmax.finish(p.lse_scale, dropout ? p.dropout_rescale : 1.0f, sink, out_scale, lse);

  const int g = lane >> 2, t = lane & 3;
  __syncwarp();  // this warp's ldmatrix reads of its Q rows are done
#pragma unroll
  for (int s = 0; s < MS; ++s)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = warp_row + s * 16 + g + r * 8;
#pragma unroll
      for (int d = 0; d < DS; ++d) {
        const uint32_t v = pack2<T>(acc_o[s][d][2 * r] * out_scale[s][r],
                                    acc_o[s][d][2 * r + 1] * out_scale[s][r]);
        sts32(sQ + QTile::offset(row, d) + 4 * t, v);
      }
    }
  __syncwarp();

  T* o_ptr = p.out.row<T>(b, h, seq.q_row0 + m0);
  constexpr int kChunks = QTile::kChunks;
  constexpr int kWarpChunks = MS * 16 * kChunks;
  static_assert(kWarpChunks % 32 == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < kWarpChunks / 32; ++i) {
    const int idx = i * 32 + lane;
    const int row = warp_row + idx / kChunks, chunk = idx % kChunks;
    const uint4 v = lds128(sQ + QTile::offset(row, chunk));
    if (row < rows_q && chunk * 8 < p.head_dim) {
      *reinterpret_cast<uint4*>(o_ptr + int64_t(row) * p.out.sr + chunk * 8) = v;
    }
  }

  if (p.lse.ptr != nullptr && t == 0) {
#pragma unroll
    for (int s = 0; s < MS; ++s)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = warp_row + s * 16 + g + r * 8;
        if (row < rows_q) *p.lse.row<float>(b, h, seq.q_row0 + m0 + row) = lse[s][r];
      }
  }
}

}  // namespace sm80
}  // namespace fa
