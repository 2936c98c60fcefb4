// harness.h: what the sm90 debug harnesses (compare.cu, compare_bwd.cu) share: CUDA error
// checks, 16-bit conversions, the geometry of a dense or nested case, device uploads, the
// attention parameters every case starts from, and event timing. Not part of the library.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/params.h"
#include "flashattn.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

#define CHECK(call)                                                                      \
  do {                                                                                   \
    const cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call,                  \
                   cudaGetErrorString(e_));                                              \
      std::exit(2);                                                                      \
    }                                                                                    \
  } while (0)

namespace harness {

// The sm90 forward of the bucket, as the dispatcher (cuda/api/cuda_dispatch.cu) calls it.
inline fa_status launch_fwd90(const fa::KernelParams& p, bool bf16,
                              const fa::LaunchContext& ctx, bool* launched) {
  *launched = false;
  if (!fa::sm90::takes_forward(p)) return FA_OK;
  return p.head_dim <= 64    ? fa::sm90::launch_fwd_d64(p, bf16, ctx, launched)
         : p.head_dim <= 128 ? fa::sm90::launch_fwd_d128(p, bf16, ctx, launched)
                             : fa::sm90::launch_fwd_d256(p, bf16, ctx, launched);
}

inline uint16_t to_half_bits(float x, bool bf16) {
  if (bf16) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    return *reinterpret_cast<const uint16_t*>(&h);
  }
  const __half h = __float2half_rn(x);
  return *reinterpret_cast<const uint16_t*>(&h);
}

inline float from_half_bits(uint16_t b, bool bf16) {
  if (bf16) return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(&b));
  return __half2float(*reinterpret_cast<const __half*>(&b));
}

// Element strides of a [B, H, S, D] operand (or [B, S, H, D] storage, or nested [total, H, D]).
struct Layout {
  int64_t sb, sh, sr;
};

// Where a case's rows are. C is a harness's Case: batch, hq, hkv, sq, sk, d, bshd, and
// q_lens / k_lens (nested when non-empty).
struct Geometry {
  bool nested;
  int batch, max_q, max_k;
  std::vector<int> cu_q, cu_k;  // prefix sums (dense: multiples of sq, sk)
  int64_t total_q, total_k;
  Layout lq, lk;
  size_t q_elems, k_elems, lse_elems;

  // LSE element of (batch b, head h, row i of the sequence); LSE is [B, H, S] or [total, H].
  int64_t lse_index(int b, int h, int i, int heads, int sq) const {
    return nested ? (int64_t(cu_q[b]) + i) * heads + h : (int64_t(b) * heads + h) * sq + i;
  }
};

template <class C>
Geometry geometry_of(const C& c) {
  Geometry g;
  g.nested = !c.q_lens.empty();
  g.batch = g.nested ? int(c.q_lens.size()) : c.batch;
  g.cu_q.assign(g.batch + 1, 0);
  g.cu_k.assign(g.batch + 1, 0);
  for (int b = 0; b < g.batch; ++b) {
    g.cu_q[b + 1] = g.cu_q[b] + (g.nested ? c.q_lens[b] : c.sq);
    g.cu_k[b + 1] = g.cu_k[b] + (g.nested ? c.k_lens[b] : c.sk);
  }
  g.max_q = g.nested ? *std::max_element(c.q_lens.begin(), c.q_lens.end()) : c.sq;
  g.max_k = g.nested ? *std::max_element(c.k_lens.begin(), c.k_lens.end()) : c.sk;
  g.total_q = g.cu_q[g.batch];
  g.total_k = g.cu_k[g.batch];
  auto layout = [&](int heads, int64_t rows) -> Layout {
    if (g.nested) return {0, c.d, int64_t(heads) * c.d};
    if (c.bshd) return {rows * heads * c.d, c.d, int64_t(heads) * c.d};
    return {int64_t(heads) * rows * c.d, rows * c.d, c.d};
  };
  g.lq = layout(c.hq, g.nested ? g.total_q : c.sq);
  g.lk = layout(c.hkv, g.nested ? g.total_k : c.sk);
  g.q_elems = size_t(g.total_q) * c.hq * c.d;  // dense: total = batch * sq
  g.k_elems = size_t(g.total_k) * c.hkv * c.d;
  g.lse_elems = size_t(g.total_q) * c.hq;
  return g;
}

// A device copy of `host`.
template <class T>
T* to_device(const std::vector<T>& host) {
  T* device = nullptr;
  CHECK(cudaMalloc(&device, host.size() * sizeof(T)));
  CHECK(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return device;
}

// Device buffers of a case (the gradients only for a backward; cu_q / cu_k only nested).
struct Buffers {
  void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *dout = nullptr;
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float* lse = nullptr;
  int32_t *cu_q = nullptr, *cu_k = nullptr;

  void release() {
    for (void* x : {q, k, v, out, dout, dq, dk, dv, static_cast<void*>(lse),
                    static_cast<void*>(cu_q), static_cast<void*>(cu_k)}) {
      if (x != nullptr) CHECK(cudaFree(x));
    }
  }
};

// The parameters of case c (no bias): shapes, strides, scale 1/sqrt(D), causal, dropout with
// a fixed seed and offset.
template <class C>
fa::AttentionParams base_params(const C& c, const Geometry& g, const Buffers& d) {
  fa::AttentionParams ap;
  ap.device = 0;
  ap.dtype = c.bf16 ? FA_BFLOAT16 : FA_FLOAT16;
  ap.batch = g.batch;
  ap.heads_q = c.hq;
  ap.heads_kv = c.hkv;
  ap.head_dim = c.d;
  ap.seqlen_q = g.max_q;
  ap.seqlen_k = g.max_k;
  ap.cu_seqlens_q = d.cu_q;
  ap.cu_seqlens_k = d.cu_k;
  ap.total_q = g.nested ? g.total_q : 0;
  ap.total_k = g.nested ? g.total_k : 0;
  const Layout& lq = g.lq;
  const Layout& lk = g.lk;
  ap.q = {d.q, lq.sb, lq.sh, lq.sr};
  ap.k = {d.k, lk.sb, lk.sh, lk.sr};
  ap.v = {d.v, lk.sb, lk.sh, lk.sr};
  ap.out = {d.out, lq.sb, lq.sh, lq.sr};
  ap.dout = {d.dout, lq.sb, lq.sh, lq.sr};
  ap.dq = {d.dq, lq.sb, lq.sh, lq.sr};
  ap.dk = {d.dk, lk.sb, lk.sh, lk.sr};
  ap.dv = {d.dv, lk.sb, lk.sh, lk.sr};
  ap.lse.ptr = d.lse;
  ap.lse.stride_b = g.nested ? 0 : int64_t(c.hq) * c.sq;
  ap.lse.stride_head = g.nested ? 1 : c.sq;
  ap.lse.stride_row = g.nested ? c.hq : 1;
  ap.scale = 1.0f / std::sqrt(float(c.d));
  if (c.causal) ap.window.right = 0;  // causal: the window (-1, 0)
  ap.dropout_p = c.dropout;
  ap.seed = 0x1234567890abcdefull;
  ap.offset = 77;
  return ap;
}

// Launch context of device 0, a Hopper GPU (the harnesses run nowhere else).
inline fa::LaunchContext hopper_context() {
  fa::LaunchContext ctx;
  ctx.device = 0;
  ctx.compute_capability = 90;
  CHECK(cudaDeviceGetAttribute(&ctx.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  return ctx;
}

// Median time of `launch` in microseconds: CUDA events around each of `reps` calls after 3
// warm-up calls.
template <class Launch>
float median_us(Launch&& launch, int reps) {
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    CHECK(cudaEventRecord(e0));
    launch();
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms * 1e3f);
  }
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace harness
