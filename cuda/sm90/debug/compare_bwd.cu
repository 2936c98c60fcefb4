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
// cuda/api/cuda_backward.cu (preprocess, main kernel, dQ conversion) once with sm80's main
// kernel and once with sm90's, outputs poisoned with NaN before each. Prints the largest error of dq, dk and
// dv relative to max |sm80|, unwritten (NaN) elements and the first bad element; then
// median timings of the two main kernels. Exits non-zero when a case fails.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/bwd_aux_kernels.h"
#include "common/bwd_plan.h"
#include "common/launch.h"
#include "common/kernel_params_build.h"
#include "sm90/debug/harness.h"
#include "sm90/sm90.h"

namespace {

using harness::from_half_bits;
using harness::to_half_bits;

struct Case {
  std::string name;
  int batch, hq, hkv, sq, sk, d;
  bool causal, bf16;
  bool bshd = false;
  std::vector<int> q_lens, k_lens;  // nested when non-empty
  float dropout = 0.0f;
  int poison_seq = -1;  // nested: this sequence's q, k, v, dout rows hold +Inf
};

fa_status launch_fwd80(const fa::KernelParams& p, bool bf16,
                       const fa::LaunchContext& ctx) {
  return p.head_dim <= 64    ? fa::sm80::launch_fwd_d64(p, bf16, ctx)
         : p.head_dim <= 128 ? fa::sm80::launch_fwd_d128(p, bf16, ctx)
                             : fa::sm80::launch_fwd_d256(p, bf16, ctx);
}

fa_status launch_main80(const fa::KernelParams& p, bool bf16,
                        const fa::LaunchContext& ctx) {
  return p.head_dim_pad == 64    ? fa::sm80::launch_bwd_d64(p, bf16, ctx)
         : p.head_dim_pad == 128 ? fa::sm80::launch_bwd_d128(p, bf16, ctx)
                                 : fa::sm80::launch_bwd_d256(p, bf16, ctx);
}

fa_status launch_main90(const fa::KernelParams& p, bool bf16,
                        const fa::LaunchContext& ctx, bool* launched) {
  *launched = false;
  return p.head_dim_pad == 64    ? fa::sm90::launch_bwd_d64(p, bf16, ctx, launched)
         : p.head_dim_pad == 128 ? fa::sm90::launch_bwd_d128(p, bf16, ctx, launched)
                                 : FA_OK;
}

// The backward of cuda/api/cuda_backward.cu with a chosen main kernel (p already points at the
// workspace).
void backward(const fa::KernelParams& p, bool bf16, const fa::LaunchContext& ctx,
              bool sm90, bool* launched) {
  const dim3 aux(fa::ceil_div(p.seqlen_q, fa::kAuxRows), p.heads_q, p.batch);
  const int threads = fa::kAuxThreads;
  if (bf16) {
    fa::bwd_preprocess_kernel<__nv_bfloat16><<<aux, threads>>>(p);
  } else {
    fa::bwd_preprocess_kernel<__half><<<aux, threads>>>(p);
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
    fa::dq_convert_kernel<__nv_bfloat16><<<aux, threads>>>(p);
  } else {
    fa::dq_convert_kernel<__half><<<aux, threads>>>(p);
  }
  CHECK(cudaGetLastError());
}

struct Err {
  double max_err = 0, max_ref = 0;
  long nan = 0, bad = 0;
  std::string first;
};

bool check_case(const Case& c) {
  const harness::Geometry geo = harness::geometry_of(c);
  const bool nested = geo.nested;
  const int batch = geo.batch;
  const std::vector<int>& cu_q = geo.cu_q;
  const std::vector<int>& cu_k = geo.cu_k;
  const harness::Layout lq = geo.lq, lk = geo.lk;
  const size_t q_elems = geo.q_elems, k_elems = geo.k_elems, lse_elems = geo.lse_elems;

  std::mt19937 rng(4321 + c.d);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> hq(q_elems), hk(k_elems), hv(k_elems), hdo(q_elems);
  for (auto& x : hq) x = to_half_bits(normal(rng), c.bf16);
  for (auto& x : hk) x = to_half_bits(normal(rng), c.bf16);
  for (auto& x : hv) x = to_half_bits(normal(rng), c.bf16);
  for (auto& x : hdo) x = to_half_bits(normal(rng), c.bf16);
  if (nested && c.poison_seq >= 0) {
    const uint16_t inf = to_half_bits(INFINITY, c.bf16);
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

  harness::Buffers dev;
  dev.q = harness::to_device(hq);
  dev.k = harness::to_device(hk);
  dev.v = harness::to_device(hv);
  dev.dout = harness::to_device(hdo);
  for (void** x : {&dev.out, &dev.dq}) CHECK(cudaMalloc(x, q_elems * 2));
  for (void** x : {&dev.dk, &dev.dv}) CHECK(cudaMalloc(x, k_elems * 2));
  CHECK(cudaMalloc(&dev.lse, lse_elems * 4));
  if (nested) {
    dev.cu_q = harness::to_device(cu_q);
    dev.cu_k = harness::to_device(cu_k);
  }
  const fa::AttentionParams ap = harness::base_params(c, geo, dev);
  const fa::LaunchContext ctx = harness::hopper_context();
  fa::KernelParams p = fa::make_params(ap);
  if (launch_fwd80(p, c.bf16, ctx) != FA_OK) std::fprintf(stderr, "forward failed\n");
  CHECK(cudaGetLastError());

  const fa::BwdPlan plan = fa::plan_backward(p, false);
  char* ws = nullptr;
  CHECK(cudaMalloc(&ws, plan.total_bytes));
  fa::apply_plan(p, plan, ws, false);

  auto run = [&](bool sm90, std::vector<uint16_t>& dq, std::vector<uint16_t>& dk,
                 std::vector<uint16_t>& dv, bool* launched) {
    CHECK(cudaMemset(dev.dq, 0xff, q_elems * 2));
    CHECK(cudaMemset(dev.dk, 0xff, k_elems * 2));
    CHECK(cudaMemset(dev.dv, 0xff, k_elems * 2));
    backward(p, c.bf16, ctx, sm90, launched);
    CHECK(cudaDeviceSynchronize());
    dq.resize(q_elems);
    dk.resize(k_elems);
    dv.resize(k_elems);
    CHECK(cudaMemcpy(dq.data(), dev.dq, q_elems * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(dk.data(), dev.dk, k_elems * 2, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(dv.data(), dev.dv, k_elems * 2, cudaMemcpyDeviceToHost));
  };
  std::vector<uint16_t> q80, k80, v80, q90, k90, v90;
  bool launched = false;
  run(false, q80, k80, v80, &launched);
  run(true, q90, k90, v90, &launched);

  // Elements of valid rows of sequences other than the poisoned one.
  auto compare = [&](const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref,
                     const harness::Layout& l, int heads, const std::vector<int>& cu, int dense_len,
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
            const double g = from_half_bits(got[o], c.bf16), r = from_half_bits(ref[o], c.bf16);
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
  dev.release();
  CHECK(cudaFree(ws));
  return ok;
}

// Median time of the two main kernels (and of the whole backward with each) on (B, H, S, D)
// bf16, in microseconds.
void time_case(int batch, int heads, int s, int d, bool causal, float dropout = 0.0f) {
  Case c{"", batch, heads, heads, s, s, d, causal, true};
  c.dropout = dropout;
  const harness::Geometry geo = harness::geometry_of(c);
  std::vector<uint16_t> h(geo.q_elems);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  harness::Buffers dev;
  for (void** x : {&dev.q, &dev.k, &dev.v, &dev.dout}) {
    for (auto& e : h) e = to_half_bits(normal(rng), true);
    *x = harness::to_device(h);
  }
  for (void** x : {&dev.out, &dev.dq, &dev.dk, &dev.dv}) CHECK(cudaMalloc(x, geo.q_elems * 2));
  CHECK(cudaMalloc(&dev.lse, geo.lse_elems * 4));
  const fa::AttentionParams ap = harness::base_params(c, geo, dev);
  const fa::LaunchContext ctx = harness::hopper_context();
  fa::KernelParams p = fa::make_params(ap);
  launch_fwd80(p, true, ctx);
  const fa::BwdPlan plan = fa::plan_backward(p, false);
  char* ws = nullptr;
  CHECK(cudaMalloc(&ws, plan.total_bytes));
  fa::apply_plan(p, plan, ws, false);
  bool launched = false;
  backward(p, true, ctx, false, &launched);  // the workspace's D and lse
  auto median_us = [](auto&& launch) { return harness::median_us(launch, 15); };
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
  dev.release();
  CHECK(cudaFree(ws));
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
