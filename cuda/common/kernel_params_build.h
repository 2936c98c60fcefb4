// kernel_params_build.h: AttentionParams (validated, backend-neutral) -> KernelParams, for
// every GPU kernel. Host only.
#pragma once

#include "common/params.h"
#include "common/philox.h"
#include "flashattn.h"
#include "common/kernel_params.h"

namespace fa {

inline TensorView view(const Operand& o) {
  TensorView v;
  v.ptr = o.ptr;
  v.sb = o.stride_b;
  v.sh = o.stride_head;
  v.sr = o.stride_row;
  return v;
}

inline BiasView view(const BiasOperand& o) {
  BiasView v;
  v.ptr = o.ptr;
  v.dtype = o.dtype;
  const int64_t esize = o.dtype == FA_FLOAT32 ? 4 : 2;
  v.pairs = reinterpret_cast<uintptr_t>(o.ptr) % (2 * esize) == 0 && o.stride_b % 2 == 0 &&
            o.stride_head % 2 == 0 && o.stride_row % 2 == 0;
  const int64_t per16 = 16 / esize;  // elements per 16 bytes
  v.async16 = reinterpret_cast<uintptr_t>(o.ptr) % 16 == 0 && o.stride_b % per16 == 0 &&
              o.stride_head % per16 == 0 && o.stride_row % per16 == 0;
  v.sb = o.stride_b;
  v.sh = o.stride_head;
  v.sr = o.stride_row;
  return v;
}

inline KernelParams make_params(const AttentionParams& ap) {
  KernelParams p;
  p.q = view(ap.q);
  p.k = view(ap.k);
  p.v = view(ap.v);
  p.out = view(ap.out);
  p.lse.ptr = ap.lse.ptr;
  p.lse.sb = ap.lse.stride_b;
  p.lse.sh = ap.lse.stride_head;
  p.lse.sr = ap.lse.stride_row;
  p.bias = view(ap.bias);
  p.cu_q = ap.cu_seqlens_q;
  p.cu_k = ap.cu_seqlens_k;
  p.seqused_k = ap.seqused_k;
  p.seqused_k_add = ap.seqused_k_add;
  p.batch = int(ap.batch);
  p.heads_q = int(ap.heads_q);
  p.heads_kv = int(ap.heads_kv);
  p.group = int(ap.heads_q / ap.heads_kv);
  p.head_dim = int(ap.head_dim);
  p.seqlen_q = int(ap.seqlen_q);
  p.seqlen_k = int(ap.seqlen_k);
  p.total_q = ap.total_q;
  p.total_k = ap.total_k;
  p.scale = ap.scale;
  // A window side at least as wide as the sequence hides nothing: unbounded, which also
  // keeps the kernels' int arithmetic of common/mask.h below 2^31.
  p.window_left = ap.window.left >= ap.seqlen_k ? -1 : int(ap.window.left);
  p.window_right = ap.window.right >= ap.seqlen_q ? -1 : int(ap.window.right);
  p.softcap = ap.softcap;
  p.softcap_tanh_scale = ap.softcap > 0.0f ? ap.scale / ap.softcap : 0.0f;
  p.alibi_slopes = ap.alibi_slopes;
  p.alibi_stride_b = int(ap.alibi_stride_b);
  p.sinks = ap.sinks;
  p.dsinks = ap.dsinks;
  p.has_bias = ap.bias.ptr != nullptr;
  constexpr float kLog2e = 1.4426950408889634f;
  p.natural_scores = p.has_bias || ap.softcap > 0.0f || ap.alibi_slopes != nullptr;
  p.softmax_scale_log2 = p.natural_scores ? kLog2e : ap.scale * kLog2e;
  p.lse_scale = p.natural_scores ? 1.0f : ap.scale;
  p.has_dropout = ap.dropout_p > 0.0f;
  p.dropout_threshold = dropout_threshold(ap.dropout_p);
  p.dropout_rescale = p.has_dropout ? 1.0f / (1.0f - ap.dropout_p) : 1.0f;
  p.seed = ap.seed;
  p.offset = ap.offset;

  p.dout = view(ap.dout);
  p.dq = view(ap.dq);
  p.dk = view(ap.dk);
  p.dv = view(ap.dv);
  p.dbias = view(ap.dbias);
  return p;
}

}  // namespace fa
