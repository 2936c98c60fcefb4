// compare_bwd.cu: device-side check of the sm90 backward main kernel against sm80's, with
// timings of both. Not part of the library; it links against the library's objects to
// reach the per-bucket launchers directly. Build (from the repo root, after
// `make lib BUILD=<dir>`):
//
//   nvcc -O2 -std=c++17 -Icuda/include -Icuda --expt-relaxed-constexpr \
//     -gencode=arch=compute_90a,code=sm_90a cuda/sm90/debug/compare_bwd.cu \
//     <dir>/cuda/sm80/{bwd,fwd}_d*.o <dir>/cuda/sm90/*.o <dir>/cuda/api/errors.o \
//     -o compare_bwd -lpthread -ldl -lrt
//
// (Not sm80/bwd.o: it defines the aux kernels this file instantiates too.)
//
// Per case: random inputs, the sm80 forward for out / lse, then the backward sequence of
// sm80/bwd.cu (preprocess, main kernel, dQ conversion) once with sm80's main kernel and once
// with sm90's, outputs poisoned with NaN before each. Prints the largest error of dq, dk and
// dv relative to max |sm80|, unwritten (NaN) elements and the first bad element; then
// median timings of the two main kernels. Exits non-zero when a case fails.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/params.h"
#include "flashattn.h"
#include "sm80/bwd_aux_kernels.h"
#include "sm80/bwd_plan.h"
#include "sm80/launch.h"
#include "sm80/params_build.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

namespace {

#define CHECK(call)                                                                      \
  do {                                                                                   \
    const cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call,                  \
                   cudaGetErrorString(e_));                                              \
      std::exit(2);                                                                      \
    }                                                                                    \
  } while (0)

struct Case {
  std::string name;
  int batch, hq, hkv, sq, sk, d;
  bool causal, bf16;
  bool bshd = false;
  std::vector<int> q_lens, k_lens;  // nested when non-empty
  float dropout = 0.0f;
  int poison_seq = -1;  // nested: this sequence's q, k, v, dout rows hold +Inf
};

uint16_t to_bits(float x, bool bf16) {
  if (bf16) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    return *reinterpret_cast<const uint16_t*>(&h);
  }
  const __half h = __float2half_rn(x);
  return *reinterpret_cast<const uint16_t*>(&h);
}

float from_bits(uint16_t b, bool bf16) {
  if (bf16) return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(&b));
  return __half2float(*reinterpret_cast<const __half*>(&b));
}

struct Layout {
  int64_t sb, sh, sr;
};

Layout layout_of(const Case& c, int heads, int rows, bool nested) {
  if (nested) return {0, c.d, int64_t(heads) * c.d};
  if (c.bshd) return {int64_t(rows) * heads * c.d, c.d, int64_t(heads) * c.d};
  return {int64_t(heads) * rows * c.d, int64_t(rows) * c.d, c.d};
}

fa_status launch_fwd80(const fa::sm80::KernelParams& p, bool bf16,
                       const fa::sm80::LaunchContext& ctx) {
  return p.head_dim <= 64    ? fa::sm80::launch_fwd_d64(p, bf16, ctx)
         : p.head_dim <= 128 ? fa::sm80::launch_fwd_d128(p, bf16, ctx)
                             : fa::sm80::launch_fwd_d256(p, bf16, ctx);
}

fa_status launch_main80(const fa::sm80::KernelParams& p, bool bf16,
                        const fa::sm80::LaunchContext& ctx) {
  return p.head_dim_pad == 64    ? fa::sm80::launch_bwd_d64(p, bf16, ctx)
         : p.head_dim_pad == 128 ? fa::sm80::launch_bwd_d128(p, bf16, ctx)
                                 : fa::sm80::launch_bwd_d256(p, bf16, ctx);
}

fa_status launch_main90(const fa::sm80::KernelParams& p, bool bf16,
                        const fa::sm80::LaunchContext& ctx, bool* launched) {
  *launched = false;
  return p.head_dim_pad == 64    ? fa::sm90::launch_bwd_d64(p, bf16, ctx, launched)
         : p.head_dim_pad == 128 ? fa::sm90::launch_bwd_d128(p, bf16, ctx, launched)
                                 : FA_OK;
}

// The backward of sm80/bwd.cu with a chosen main kernel (p already points at the
// workspace).
void backward(const fa::sm80::KernelParams& p, bool bf16, const fa::sm80::LaunchContext& ctx,
              bool sm90, bool* launched) {
  const dim3 aux(fa::sm80::ceil_div(p.seqlen_q, fa::sm80::kAuxRows), p.heads_q, p.batch);
  const int threads = fa::sm80::kAuxThreads;
  if (bf16) {
    fa::sm80::bwd_preprocess_kernel<__nv_bfloat16><<<aux, threads>>>(p);
  } else {
    fa::sm80::bwd_preprocess_kernel<__half><<<aux, threads>>>(p);
  }
  CHECK(cudaGetLastError());
  fa_status s = FA_OK;
  if (sm90) {
    s = launch_main90(p, bf16, ctx, launched);
  } else {
    s = launch_main80(p, bf16, ctx);
  }
  if (s != FA_OK) std::fprintf(stderr, "main kernel status %d\n", int(s));
  CHECK(cudaGetLastError());
  if (bf16) {
    fa::sm80::dq_convert_kernel<__nv_bfloat16><<<aux, threads>>>(p);
  } else {
    fa::sm80::dq_convert_kernel<__half><<<aux, threads>>>(p);
  }
  CHECK(cudaGetLastError());
}

struct Err {
  double max_err = 0, max_ref = 0;
  long nan = 0, bad = 0;
  std::string first;
};

bool check_case(const Case& c) {
  const bool nested = !c.q_lens.empty();
  const int batch = nested ? int(c.q_lens.size()) : c.batch;
  std::vector<int> cu_q(batch + 1, 0), cu_k(batch + 1, 0);
  for (int b = 0; b < batch; ++b) {
    cu_q[b + 1] = cu_q[b] + (nested ? c.q_lens[b] : c.sq);
    cu_k[b + 1] = cu_k[b] + (nested ? c.k_lens[b] : c.sk);
  }
  const int max_q = nested ? *std::max_element(c.q_lens.begin(), c.q_lens.end()) : c.sq;
  const int max_k = nested ? *std::max_element(c.k_lens.begin(), c.k_lens.end()) : c.sk;
  const int64_t total_q = cu_q[batch], total_k = cu_k[batch];
  const Layout lq = layout_of(c, c.hq, nested ? int(total_q) : c.sq, nested);
  const Layout lk = layout_of(c, c.hkv, nested ? int(total_k) : c.sk, nested);
  const size_t q_elems = size_t(nested ? total_q : int64_t(batch) * c.sq) * c.hq * c.d;
  const size_t k_elems = size_t(nested ? total_k : int64_t(batch) * c.sk) * c.hkv * c.d;
  const size_t lse_elems = size_t(nested ? total_q : int64_t(batch) * c.sq) * c.hq;

  std::mt19937 rng(4321 + c.d);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> hq(q_elems), hk(k_elems), hv(k_elems), hdo(q_elems);
  for (auto& x : hq) x = to_bits(normal(rng), c.bf16);
  for (auto& x : hk) x = to_bits(normal(rng), c.bf16);
  for (auto& x : hv) x = to_bits(normal(rng), c.bf16);
  for (auto& x : hdo) x = to_bits(normal(rng), c.bf16);
  if (nested && c.poison_seq >= 0) {
    const uint16_t inf = to_bits(INFINITY, c.bf16);
    const int b = c.poison_seq;
    for (int64_t r = cu_q[b]; r < cu_q[b + 1]; ++r)
      for (int64_t e = 0; e < int64_t(c.hq) * c.d; ++e) {
        hq[r * lq.sr + e] = inf;
        hdo[r * lq.sr + e] = inf;
      }
    for (int64_t r = cu_k[b]; r < cu_k[b + 1]; ++r)
      for (int64_t e = 0; e < int64_t(c.hkv) * c.d; ++e) {
        hk[r * lk.sr + e] = inf;
        hv[r * lk.sr + e] = inf;
      }
  }

  uint16_t *dq_in, *dk_in, *dv_in, *d_out, *d_do, *g_dq, *g_dk, *g_dv;
  float* d_lse;
  int32_t *dcu_q = nullptr, *dcu_k = nullptr;
  CHECK(cudaMalloc(&dq_in, q_elems * 2));
  CHECK(cudaMalloc(&dk_in, k_elems * 2));
  CHECK(cudaMalloc(&dv_in, k_elems * 2));
  CHECK(cudaMalloc(&d_out, q_elems * 2));
  CHECK(cudaMalloc(&d_do, q_elems * 2));
  CHECK(cudaMalloc(&g_dq, q_elems * 2));
  CHECK(cudaMalloc(&g_dk, k_elems * 2));
  CHECK(cudaMalloc(&g_dv, k_elems * 2));
  CHECK(cudaMalloc(&d_lse, lse_elems * 4));
  CHECK(cudaMemcpy(dq_in, hq.data(), q_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dk_in, hk.data(), k_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dv_in, hv.data(), k_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_do, hdo.data(), q_elems * 2, cudaMemcpyHostToDevice));
  if (nested) {
    CHECK(cudaMalloc(&dcu_q, (batch + 1) * 4));
    CHECK(cudaMalloc(&dcu_k, (batch + 1) * 4));
    CHECK(cudaMemcpy(dcu_q, cu_q.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dcu_k, cu_k.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
  }

  fa::AttentionParams ap;
  ap.device = 0;
  ap.dtype = c.bf16 ? FA_BFLOAT16 : FA_FLOAT16;
  ap.batch = batch;
  ap.heads_q = c.hq;
  ap.heads_kv = c.hkv;
  ap.head_dim = c.d;
  ap.seqlen_q = max_q;
  ap.seqlen_k = max_k;
  ap.cu_seqlens_q = dcu_q;
  ap.cu_seqlens_k = dcu_k;
  ap.total_q = nested ? total_q : 0;
  ap.total_k = nested ? total_k : 0;
  ap.q = {dq_in, lq.sb, lq.sh, lq.sr};
  ap.k = {dk_in, lk.sb, lk.sh, lk.sr};
  ap.v = {dv_in, lk.sb, lk.sh, lk.sr};
  ap.out = {d_out, lq.sb, lq.sh, lq.sr};
  ap.dout = {d_do, lq.sb, lq.sh, lq.sr};
  ap.dq = {g_dq, lq.sb, lq.sh, lq.sr};
  ap.dk = {g_dk, lk.sb, lk.sh, lk.sr};
  ap.dv = {g_dv, lk.sb, lk.sh, lk.sr};
  ap.lse.ptr = d_lse;
  ap.lse.stride_b = nested ? 0 : int64_t(c.hq) * c.sq;
  ap.lse.stride_head = nested ? 1 : c.sq;
  ap.lse.stride_row = nested ? c.hq : 1;
  ap.scale = 1.0f / std::sqrt(float(c.d));
  ap.causal = c.causal;
  ap.dropout_p = c.dropout;
  ap.seed = 0x1234567890abcdefull;
  ap.offset = 77;

  fa::sm80::LaunchContext ctx;
  ctx.compute_capability = 90;  // the harness runs on Hopper only
  ctx.device = 0;
  CHECK(cudaDeviceGetAttribute(&ctx.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  fa::sm80::KernelParams p = fa::sm80::make_params(ap);
  if (launch_fwd80(p, c.bf16, ctx) != FA_OK) std::fprintf(stderr, "forward failed\n");
  CHECK(cudaGetLastError());

  const fa::sm80::BwdPlan plan = fa::sm80::plan_backward(p, false);
  char* ws = nullptr;
  CHECK(cudaMalloc(&ws, plan.total_bytes));
  fa::sm80::apply_plan(p, plan, ws, false);

  auto run = [&](bool sm90, std::vector<uint16_t>& dq, std::vector<uint16_t>& dk,
                 std::vector<uint16_t>& dv, bool* launched) {
    CHECK(cudaMemset(g_dq, 0xff, q_elems * 2));
    CHECK(cudaMemset(g_dk, 0xff, k_elems * 2));
    CHECK(cudaMemset(g_dv, 0xff, k_elems * 2));
    backward(p, c.bf16, ctx, sm90, launched);
    CHECK(cudaDeviceSynchronize());
    dq.resize(q_elems);
    dk.resize(k_elems);
    dv.resize(k_elems);
    CHECK(cudaMemcpy(dq.data(), g_dq, q_elems * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(dk.data(), g_dk, k_elems * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(dv.data(), g_dv, k_elems * 2, cudaMemcpyDeviceToHost));
  };
  std::vector<uint16_t> q80, k80, v80, q90, k90, v90;
  bool launched = false;
  run(false, q80, k80, v80, &launched);
  run(true, q90, k90, v90, &launched);

  // Elements of valid rows of sequences other than the poisoned one.
  auto compare = [&](const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref,
                     const Layout& l, int heads, const std::vector<int>& cu, int dense_len,
                     const char* what) {
    Err e;
    for (int b = 0; b < batch; ++b) {
      if (b == c.poison_seq) continue;
      const int len = nested ? cu[b + 1] - cu[b] : dense_len;
      const int64_t row0 = nested ? cu[b] : 0;
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < len; ++i)
          for (int x = 0; x < c.d; ++x) {
            const int64_t o = b * l.sb + h * l.sh + (row0 + i) * l.sr + x;
            const double g = from_bits(got[o], c.bf16), r = from_bits(ref[o], c.bf16);
            if (std::isnan(g) || std::isinf(g)) ++e.nan;
            e.max_ref = std::max(e.max_ref, std::fabs(r));
            const double err = std::fabs(g - r);
            if (!(err <= e.max_err)) e.max_err = std::isnan(err) ? 1e30 : err;
            if (!(err <= (c.bf16 ? 3e-2 : 6e-3) * (1.0 + std::fabs(r)))) {
              if (e.bad++ == 0) {
                char buf[160];
                std::snprintf(buf, sizeof buf, "%s b%d h%d row %d col %d: %g vs %g", what, b, h,
                              i, x, g, r);
                e.first = buf;
              }
            }
          }
    }
    return e;
  };
  const Err eq = compare(q90, q80, lq, c.hq, cu_q, c.sq, "dq");
  const Err ek = compare(k90, k80, lk, c.hkv, cu_k, c.sk, "dk");
  const Err ev = compare(v90, v80, lk, c.hkv, cu_k, c.sk, "dv");
  const double tol = c.bf16 ? 2e-2 : 4e-3;
  auto good = [&](const Err& e) {
    return e.nan == 0 && e.max_err <= tol * std::max(1.0, e.max_ref);
  };
  const bool ok = launched && good(eq) && good(ek) && good(ev);
  std::printf("%-36s %s sm90=%d  dq %.2e/%.1e dk %.2e/%.1e dv %.2e/%.1e  nan %ld/%ld/%ld",
              c.name.c_str(), ok ? "ok  " : "FAIL", int(launched), eq.max_err, eq.max_ref,
              ek.max_err, ek.max_ref, ev.max_err, ev.max_ref, eq.nan, ek.nan, ev.nan);
  for (const Err* e : {&eq, &ek, &ev})
    if (!e->first.empty()) std::printf("  [%ld bad, first %s]", e->bad, e->first.c_str());
  std::printf("\n");
  for (void* x : {(void*)dq_in, (void*)dk_in, (void*)dv_in, (void*)d_out, (void*)d_do,
                  (void*)g_dq, (void*)g_dk, (void*)g_dv, (void*)d_lse, (void*)ws})
    CHECK(cudaFree(x));
  if (nested) {
    CHECK(cudaFree(dcu_q));
    CHECK(cudaFree(dcu_k));
  }
  return ok;
}

// Median time of the two main kernels (and of the whole backward with each) on (B, H, S, D)
// bf16, in microseconds.
void time_case(int batch, int heads, int s, int d, bool causal, float dropout = 0.0f) {
  const size_t elems = size_t(batch) * heads * s * d;
  uint16_t *q, *k, *v, *o, *dout, *gq, *gk, *gv;
  float* lse;
  for (uint16_t** x : {&q, &k, &v, &o, &dout, &gq, &gk, &gv}) CHECK(cudaMalloc(x, elems * 2));
  CHECK(cudaMalloc(&lse, size_t(batch) * heads * s * 4));
  std::vector<uint16_t> h(elems);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (uint16_t* x : {q, k, v, dout}) {
    for (auto& e : h) e = to_bits(normal(rng), true);
    CHECK(cudaMemcpy(x, h.data(), elems * 2, cudaMemcpyHostToDevice));
  }
  fa::AttentionParams ap;
  ap.device = 0;
  ap.dtype = FA_BFLOAT16;
  ap.batch = batch;
  ap.heads_q = ap.heads_kv = heads;
  ap.head_dim = d;
  ap.seqlen_q = ap.seqlen_k = s;
  const int64_t sr = d, sh = int64_t(s) * d, sb = int64_t(heads) * s * d;
  ap.q = {q, sb, sh, sr};
  ap.k = {k, sb, sh, sr};
  ap.v = {v, sb, sh, sr};
  ap.out = {o, sb, sh, sr};
  ap.dout = {dout, sb, sh, sr};
  ap.dq = {gq, sb, sh, sr};
  ap.dk = {gk, sb, sh, sr};
  ap.dv = {gv, sb, sh, sr};
  ap.lse.ptr = lse;
  ap.lse.stride_b = int64_t(heads) * s;
  ap.lse.stride_head = s;
  ap.lse.stride_row = 1;
  ap.scale = 1.0f / std::sqrt(float(d));
  ap.causal = causal;
  ap.dropout_p = dropout;
  ap.seed = 7;
  fa::sm80::LaunchContext ctx;
  ctx.compute_capability = 90;  // the harness runs on Hopper only
  CHECK(cudaDeviceGetAttribute(&ctx.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  fa::sm80::KernelParams p = fa::sm80::make_params(ap);
  launch_fwd80(p, true, ctx);
  const fa::sm80::BwdPlan plan = fa::sm80::plan_backward(p, false);
  char* ws = nullptr;
  CHECK(cudaMalloc(&ws, plan.total_bytes));
  fa::sm80::apply_plan(p, plan, ws, false);
  bool launched = false;
  backward(p, true, ctx, false, &launched);  // the workspace's D and lse
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  auto median_us = [&](auto&& launch) {
    for (int i = 0; i < 3; ++i) launch();
    std::vector<float> t;
    for (int i = 0; i < 15; ++i) {
      CHECK(cudaEventRecord(e0));
      launch();
      CHECK(cudaEventRecord(e1));
      CHECK(cudaEventSynchronize(e1));
      float ms;
      CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms * 1e3f);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const float m80 = median_us([&] { launch_main80(p, true, ctx); });
  const float m90 = median_us([&] { launch_main90(p, true, ctx, &launched); });
  const float a80 = median_us([&] { backward(p, true, ctx, false, &launched); });
  const float a90 = median_us([&] { backward(p, true, ctx, true, &launched); });
  CHECK(cudaGetLastError());
  const double flops = 2.5 * 4.0 * batch * heads * double(s) * s * d / (causal ? 2 : 1);
  std::printf("(%d,%d,%d,%d) causal=%d p=%.1f  main: sm80 %7.1f us  sm90 %7.1f us (%4.0f TF/s)"
              "   whole bwd: sm80 %7.1f  sm90 %7.1f us (%4.0f TF/s)%s\n",
              batch, heads, s, d, int(causal), dropout, m80, m90, flops / m90 * 1e-6, a80, a90,
              flops / a90 * 1e-6, launched ? "" : "  (sm90 not launched)");
  for (void* x : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)dout, (void*)gq, (void*)gk,
                  (void*)gv, (void*)lse, (void*)ws})
    CHECK(cudaFree(x));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool timings = mode != "--no-timing";
  if (mode == "--timing-only" || mode == "--short") {  // a few rows, for A/B runs
    if (mode == "--short") {
      std::printf("(short timing set)\n");
    }
    time_case(1, 12, 8192, 128, false);
    time_case(1, 12, 8192, 128, true);
    time_case(1, 12, 2048, 128, false);
    time_case(1, 12, 8192, 128, false, 0.1f);
    time_case(1, 16, 8192, 64, false);
    time_case(1, 16, 8192, 64, true);
    return 0;
  }
  const std::vector<Case> cases = {
      {"d128 256x256", 1, 2, 2, 256, 256, 128, false, true},
      {"d128 128x128 fp16", 1, 1, 1, 128, 128, 128, false, false},
      {"d128 1000x1000 causal", 1, 2, 2, 1000, 1000, 128, true, true},
      {"d64 129x300", 2, 2, 2, 129, 300, 64, false, true},
      {"d64 300x300 causal fp16", 1, 3, 3, 300, 300, 64, true, false},
      {"d72 7x129", 2, 2, 2, 7, 129, 72, false, true},
      {"d8 33x65", 1, 2, 2, 33, 65, 8, false, true},
      {"d40 1x1", 1, 1, 1, 1, 1, 40, false, true},
      {"gqa 8/2 d128 300x700 causal fp16", 1, 8, 2, 300, 700, 128, true, false},
      {"mqa 4/1 d64 129x1000", 1, 4, 1, 129, 1000, 64, false, true},
      {"causal sq>sk 300x100 d128", 1, 2, 2, 300, 100, 128, true, true},
      {"causal sq<sk 100x300 d64", 1, 2, 2, 100, 300, 64, true, true},
      {"bshd d64 200x333", 2, 3, 3, 200, 333, 64, false, true, true},
      {"bshd d128 130x257 causal", 2, 2, 1, 130, 257, 128, true, false, true},
      {"nested d128 causal", 0, 2, 1, 0, 0, 128, true, true, false, {100, 0, 257, 1},
       {300, 5, 257, 64}},
      {"nested d64", 0, 2, 2, 0, 0, 64, false, false, false, {1, 129, 64}, {200, 1, 128}},
      {"nested d128 inf in seq 1", 0, 2, 2, 0, 0, 128, false, true, false, {70, 90, 33},
       {100, 60, 140}, 0.0f, 1},
      {"nested d64 causal inf in seq 0", 0, 2, 1, 0, 0, 64, true, true, false, {70, 190},
       {100, 130}, 0.0f, 0},
      {"dropout 0.1 d128 500x700 causal", 1, 2, 2, 500, 700, 128, true, true, false, {}, {},
       0.1f},
      {"dropout 0.3 nested d64 fp16", 0, 2, 1, 0, 0, 64, false, false, false, {70, 300},
       {130, 257}, 0.3f},
      {"dropout 0.2 d64 200x260", 2, 2, 2, 200, 260, 64, false, true, false, {}, {}, 0.2f},
  };
  int failed = 0;
  for (const Case& c : cases) failed += check_case(c) ? 0 : 1;
  std::printf("%d of %zu cases failed\n", failed, cases.size());
  if (timings) {
    for (const bool causal : {false, true}) {
      time_case(1, 12, 8192, 128, causal);
      time_case(1, 12, 4096, 128, causal);
      time_case(1, 12, 2048, 128, causal);
      time_case(1, 16, 8192, 64, causal);
      time_case(1, 12, 8192, 128, causal, 0.1f);
    }
  }
  return failed == 0 ? 0 : 1;
}
