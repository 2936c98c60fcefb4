// compare.cu: device-side check of the sm90 forward against sm80 and a float64 host
// reference, with timings of both. Not part of the library (the Makefile compiles only
// cuda/sm90/*.cu); it links against the library's objects to reach the per-bucket
// launchers directly. Build (from the repo root, after `make lib BUILD=<dir>`):
//
//   nvcc -O2 -std=c++17 -Icuda/include -Icuda --expt-relaxed-constexpr \
//     -gencode=arch=compute_90a,code=sm_90a cuda/sm90/debug/compare.cu \
//     $(find <dir>/cuda -name '*.o') -o compare -lpthread -ldl -lrt
//
// Prints one line per case (errors relative to max |reference|, where the first wrong
// element is) and a timing table; exits non-zero when a case fails.
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
  bool bshd = false;          // [B, S, H, D] storage
  std::vector<int> q_lens;    // nested when non-empty
  std::vector<int> k_lens;
  float dropout = 0.0f;       // compared with sm80 only (same mask), no float64 oracle
  // Additive bias [B, Hq, Sq, Sk] (Sq, Sk the maxima when nested): FA_FLOAT16 / FA_BFLOAT16 /
  // FA_FLOAT32, or -1 for none; broadcast dimensions get stride 0. Padded rows (row_pad
  // extra elements per row) test non-packed strides.
  int bias_dtype = -1;
  bool bias_b = false, bias_h = false, bias_row = false;
  int row_pad = 0;
};

float from_half_bits(uint16_t b, bool bf16);

float bias_value(const std::vector<uint8_t>& bias, int dtype, int64_t i) {
  if (dtype == FA_FLOAT32) return reinterpret_cast<const float*>(bias.data())[i];
  return from_half_bits(reinterpret_cast<const uint16_t*>(bias.data())[i], dtype == FA_BFLOAT16);
}

uint16_t to_half_bits(float x, bool bf16) {
  if (bf16) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    return *reinterpret_cast<const uint16_t*>(&h);
  }
  const __half h = __float2half_rn(x);
  return *reinterpret_cast<const uint16_t*>(&h);
}

float from_half_bits(uint16_t b, bool bf16) {
  if (bf16) return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(&b));
  return __half2float(*reinterpret_cast<const __half*>(&b));
}

// Element offsets of a [B, H, S, D] (or nested [total, H, D]) operand.
struct Layout {
  int64_t sb, sh, sr;
};

Layout layout_of(const Case& c, int heads, int rows, bool nested) {
  if (nested) return {0, c.d, int64_t(heads) * c.d};
  if (c.bshd) return {int64_t(rows) * heads * c.d, c.d, int64_t(heads) * c.d};
  return {int64_t(heads) * rows * c.d, int64_t(rows) * c.d, c.d};
}

struct Result {
  double max_err = 0, max_ref = 0, lse_err = 0;
  long bad = 0, unwritten = 0;
  std::string first_bad;
};

// Runs one case through `run` (sm80 or sm90) and returns out / lse on the host.
template <class Run>
void run_case(const Case& c, const fa::AttentionParams& base, Run run, uint16_t* d_out,
              float* d_lse, size_t out_elems, size_t lse_elems, std::vector<uint16_t>& out,
              std::vector<float>& lse) {
  CHECK(cudaMemset(d_out, 0xff, out_elems * 2));  // NaN poison
  CHECK(cudaMemset(d_lse, 0xff, lse_elems * 4));
  run(base);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  out.resize(out_elems);
  lse.resize(lse_elems);
  CHECK(cudaMemcpy(out.data(), d_out, out_elems * 2, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(lse.data(), d_lse, lse_elems * 4, cudaMemcpyDeviceToHost));
}

bool check_case(const Case& c, bool with_oracle) {
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

  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> hq(q_elems), hk(k_elems), hv(k_elems);
  for (auto& x : hq) x = to_half_bits(normal(rng), c.bf16);
  for (auto& x : hk) x = to_half_bits(normal(rng), c.bf16);
  for (auto& x : hv) x = to_half_bits(normal(rng), c.bf16);

  // Bias, with strides (elements) per dimension; 0 where broadcast.
  std::vector<uint8_t> hbias;
  void* dbias = nullptr;
  int64_t bsb = 0, bsh = 0, bsr = 0;
  const int bias_esize = c.bias_dtype == FA_FLOAT32 ? 4 : 2;
  if (c.bias_dtype >= 0) {
    const int64_t row_len = max_k + c.row_pad;
    const int64_t rows = c.bias_row ? 1 : max_q, heads = c.bias_h ? 1 : c.hq,
                  batches = c.bias_b ? 1 : batch;
    bsr = c.bias_row ? 0 : row_len;
    bsh = c.bias_h ? 0 : rows * row_len;
    bsb = c.bias_b ? 0 : heads * rows * row_len;
    const int64_t elems = batches * heads * rows * row_len;
    hbias.resize(size_t(elems) * bias_esize);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    for (int64_t i = 0; i < elems; ++i) {
      float x = 2.0f * normal(rng);
      if (uni(rng) < 0.05f) x = -INFINITY;
      if (c.bias_dtype == FA_FLOAT32) {
        reinterpret_cast<float*>(hbias.data())[i] = x;
      } else {
        reinterpret_cast<uint16_t*>(hbias.data())[i] =
            to_half_bits(x, c.bias_dtype == FA_BFLOAT16);
      }
    }
    CHECK(cudaMalloc(&dbias, hbias.size()));
    CHECK(cudaMemcpy(dbias, hbias.data(), hbias.size(), cudaMemcpyHostToDevice));
  }

  uint16_t *dq, *dk, *dv, *dout;
  float* dlse;
  int32_t *dcu_q = nullptr, *dcu_k = nullptr;
  CHECK(cudaMalloc(&dq, q_elems * 2));
  CHECK(cudaMalloc(&dk, k_elems * 2));
  CHECK(cudaMalloc(&dv, k_elems * 2));
  CHECK(cudaMalloc(&dout, q_elems * 2));
  CHECK(cudaMalloc(&dlse, lse_elems * 4));
  CHECK(cudaMemcpy(dq, hq.data(), q_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dk, hk.data(), k_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dv, hv.data(), k_elems * 2, cudaMemcpyHostToDevice));
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
  ap.q = {dq, lq.sb, lq.sh, lq.sr};
  ap.k = {dk, lk.sb, lk.sh, lk.sr};
  ap.v = {dv, lk.sb, lk.sh, lk.sr};
  ap.out = {dout, lq.sb, lq.sh, lq.sr};
  // LSE [B, H, S] (nested [total, H]).
  ap.lse.ptr = dlse;
  ap.lse.stride_b = nested ? 0 : int64_t(c.hq) * c.sq;
  ap.lse.stride_head = nested ? 1 : c.sq;
  ap.lse.stride_row = nested ? c.hq : 1;
  ap.scale = 1.0f / std::sqrt(float(c.d));
  ap.causal = c.causal;
  ap.dropout_p = c.dropout;
  if (dbias != nullptr) {
    ap.bias.ptr = dbias;
    ap.bias.dtype = c.bias_dtype;
    ap.bias.stride_b = bsb;
    ap.bias.stride_head = bsh;
    ap.bias.stride_row = bsr;
  }
  ap.seed = 0x1234567890abcdefull;
  ap.offset = 77;

  fa::sm80::LaunchContext ctx;
  ctx.compute_capability = 90;  // the harness runs on Hopper only
  ctx.device = 0;
  CHECK(cudaDeviceGetAttribute(&ctx.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  const fa::sm80::KernelParams p = fa::sm80::make_params(ap);
  bool launched = false;
  auto sm80 = [&](const fa::AttentionParams&) {
    const fa_status s = c.d <= 64    ? fa::sm80::launch_fwd_d64(p, c.bf16, ctx)
                        : c.d <= 128 ? fa::sm80::launch_fwd_d128(p, c.bf16, ctx)
                                     : fa::sm80::launch_fwd_d256(p, c.bf16, ctx);
    if (s != FA_OK) std::fprintf(stderr, "sm80 status %d\n", s);
  };
  auto sm90 = [&](const fa::AttentionParams&) {
    const fa_status s = fa::sm90::try_forward(p, c.bf16, ctx, &launched);
    if (s != FA_OK) std::fprintf(stderr, "sm90 status %d\n", s);
  };
  std::vector<uint16_t> o80, o90;
  std::vector<float> l80, l90;
  run_case(c, ap, sm80, dout, dlse, q_elems, lse_elems, o80, l80);
  run_case(c, ap, sm90, dout, dlse, q_elems, lse_elems, o90, l90);

  // Float64 reference of out and lse where affordable.
  std::vector<double> oref, lref;
  const double work = double(total_q ? total_q : int64_t(batch) * c.sq) * c.hq *
                      double(max_k) * c.d;
  const bool oracle = with_oracle && work < 4e8 && c.dropout == 0.0f;
  if (oracle) {
    oref.assign(q_elems, 0.0);
    lref.assign(lse_elems, 0.0);
    const int group = c.hq / c.hkv;
    for (int b = 0; b < batch; ++b) {
      const int sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b];
      const int64_t q0 = nested ? cu_q[b] : 0, k0 = nested ? cu_k[b] : 0;
      for (int h = 0; h < c.hq; ++h) {
        const int kvh = h / group;
        for (int i = 0; i < sq; ++i) {
          std::vector<double> sc(sk);
          double mx = -INFINITY;
          const int64_t qo = b * lq.sb + h * lq.sh + (q0 + i) * lq.sr;
          int end = sk;
          if (c.causal) end = std::min(sk, i + (sk - sq) + 1);
          for (int j = 0; j < end; ++j) {
            const int64_t ko = b * lk.sb + kvh * lk.sh + (k0 + j) * lk.sr;
            double acc = 0;
            for (int e = 0; e < c.d; ++e)
              acc += double(from_half_bits(hq[qo + e], c.bf16)) *
                     from_half_bits(hk[ko + e], c.bf16);
            sc[j] = acc * ap.scale;
            if (dbias != nullptr) sc[j] += bias_value(hbias, c.bias_dtype, b * bsb + h * bsh + i * bsr + j);
            mx = std::max(mx, sc[j]);
          }
          if (mx == -INFINITY) end = 0;  // nothing visible (a -inf bias on every key)
          double sum = 0;
          for (int j = 0; j < end; ++j) sum += std::exp(sc[j] - mx);
          const int64_t lo = nested ? (q0 + i) * c.hq + h : (int64_t(b) * c.hq + h) * c.sq + i;
          lref[lo] = end > 0 ? mx + std::log(sum) : -INFINITY;
          for (int e = 0; e < c.d; ++e) {
            double acc = 0;
            for (int j = 0; j < end; ++j) {
              const int64_t ko = b * lk.sb + kvh * lk.sh + (k0 + j) * lk.sr;
              acc += std::exp(sc[j] - mx) * from_half_bits(hv[ko + e], c.bf16);
            }
            oref[qo + e] = end > 0 ? acc / sum : 0.0;
          }
        }
      }
    }
  }

  // Compare every element that belongs to a sequence row.
  Result r80, r90;
  auto compare = [&](const std::vector<uint16_t>& o, const std::vector<float>& l, Result& r,
                     bool vs_oracle) {
    for (int b = 0; b < batch; ++b) {
      const int sq = cu_q[b + 1] - cu_q[b];
      const int64_t q0 = nested ? cu_q[b] : 0;
      for (int h = 0; h < c.hq; ++h)
        for (int i = 0; i < sq; ++i) {
          const int64_t qo = b * lq.sb + h * lq.sh + (q0 + i) * lq.sr;
          const int64_t lo = nested ? (q0 + i) * c.hq + h : (int64_t(b) * c.hq + h) * c.sq + i;
          const double lr = vs_oracle ? lref[lo] : l80[lo];
          const double ld = std::isinf(lr) && std::isinf(l[lo]) && (lr < 0) == (l[lo] < 0)
                                ? 0.0
                                : std::fabs(double(l[lo]) - lr);
          if (!(ld <= 1e30)) r.unwritten++;
          r.lse_err = std::max(r.lse_err, std::isnan(ld) ? 1e30 : ld);
          for (int e = 0; e < c.d; ++e) {
            const double ref = vs_oracle ? oref[qo + e] : from_half_bits(o80[qo + e], c.bf16);
            const double got = from_half_bits(o[qo + e], c.bf16);
            r.max_ref = std::max(r.max_ref, std::fabs(ref));
            const double err = std::fabs(got - ref);
            if (std::isnan(got)) r.unwritten++;
            if (!(err <= r.max_err)) {
              if (r.first_bad.empty() && !(err <= (c.bf16 ? 2e-2 : 4e-3))) {
                char buf[128];
                std::snprintf(buf, sizeof buf, "b%d h%d row %d col %d: %g vs %g", b, h, i, e,
                              got, ref);
                r.first_bad = buf;
              }
              r.max_err = std::isnan(err) ? 1e30 : std::max(r.max_err, err);
            }
          }
        }
    }
  };
  compare(o90, l90, r90, false);
  Result o80r, o90r;
  if (oracle) {
    compare(o80, l80, o80r, true);
    compare(o90, l90, o90r, true);
  }
  const double tol = c.bf16 ? 2e-2 : 4e-3;
  const bool ok = launched && r90.unwritten == 0 &&
                  r90.max_err <= tol * std::max(1.0, r90.max_ref) && r90.lse_err <= 2e-3 &&
                  (!oracle || o90r.max_err <= 1.5 * o80r.max_err + tol * 0.25);
  std::printf("%-34s %s sm90=%d  vs sm80: out %.2e lse %.2e nan %ld", c.name.c_str(),
              ok ? "ok  " : "FAIL", int(launched), r90.max_err, r90.lse_err, r90.unwritten);
  if (oracle)
    std::printf(" | vs f64: sm80 %.2e sm90 %.2e (lse %.1e)", o80r.max_err, o90r.max_err,
                o90r.lse_err);
  if (!r90.first_bad.empty()) std::printf("  first: %s", r90.first_bad.c_str());
  std::printf("\n");
  CHECK(cudaFree(dq));
  CHECK(cudaFree(dk));
  CHECK(cudaFree(dv));
  CHECK(cudaFree(dout));
  CHECK(cudaFree(dlse));
  if (dbias != nullptr) CHECK(cudaFree(dbias));
  if (nested) {
    CHECK(cudaFree(dcu_q));
    CHECK(cudaFree(dcu_k));
  }
  return ok;
}

// Median time of the forward on (B, H, S, D) bf16, sm80 and sm90, in microseconds.
bool g_time_sm80 = true;  // --time-sm90: skip the sm80 timings

void time_case(int batch, int heads, int s, int d, bool causal, float dropout = 0.0f,
               bool bias = false) {
  const size_t elems = size_t(batch) * heads * s * d;
  uint16_t *q, *k, *v, *o;
  float* lse;
  CHECK(cudaMalloc(&q, elems * 2));
  CHECK(cudaMalloc(&k, elems * 2));
  CHECK(cudaMalloc(&v, elems * 2));
  CHECK(cudaMalloc(&o, elems * 2));
  CHECK(cudaMalloc(&lse, size_t(batch) * heads * s * 4));
  std::vector<uint16_t> h(elems);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : h) x = to_half_bits(normal(rng), true);
  CHECK(cudaMemcpy(q, h.data(), elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(k, h.data(), elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(v, h.data(), elems * 2, cudaMemcpyHostToDevice));
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
  ap.lse.ptr = lse;
  ap.lse.stride_b = int64_t(heads) * s;
  ap.lse.stride_head = s;
  ap.lse.stride_row = 1;
  ap.scale = 1.0f / std::sqrt(float(d));
  ap.causal = causal;
  ap.dropout_p = dropout;
  ap.seed = 7;
  uint16_t* dbias = nullptr;  // dense [1, H, S, S] bf16, as the seed table's
  if (bias) {
    const size_t n = size_t(heads) * s * s;
    CHECK(cudaMalloc(&dbias, n * 2));
    CHECK(cudaMemset(dbias, 0x3c, n * 2));  // bf16 0x3c3c = 0.0115 everywhere
    ap.bias.ptr = dbias;
    ap.bias.dtype = FA_BFLOAT16;
    ap.bias.stride_b = 0;
    ap.bias.stride_head = int64_t(s) * s;
    ap.bias.stride_row = s;
  }
  fa::sm80::LaunchContext ctx;
  ctx.compute_capability = 90;  // the harness runs on Hopper only
  CHECK(cudaDeviceGetAttribute(&ctx.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  const fa::sm80::KernelParams p = fa::sm80::make_params(ap);
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  auto median_us = [&](auto&& launch) {
    for (int i = 0; i < 3; ++i) launch();
    std::vector<float> t;
    for (int i = 0; i < 20; ++i) {
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
  const float t80 = !g_time_sm80 ? 0.0f : median_us([&] {
    d <= 64 ? fa::sm80::launch_fwd_d64(p, true, ctx)
            : d <= 128 ? fa::sm80::launch_fwd_d128(p, true, ctx)
                       : fa::sm80::launch_fwd_d256(p, true, ctx);
  });
  bool launched = false;
  const float t90 = median_us([&] { fa::sm90::try_forward(p, true, ctx, &launched); });
  CHECK(cudaGetLastError());
  const double flops = 4.0 * batch * heads * double(s) * s * d / (causal ? 2 : 1);
  std::printf("(%d,%d,%d,%d) causal=%d p=%.1f bias=%d  sm80 %8.1f us %5.0f TF/s   "
              "sm90 %8.1f us %5.0f TF/s%s\n",
              batch, heads, s, d, int(causal), dropout, int(bias), t80, flops / t80 * 1e-6,
              t90, flops / t90 * 1e-6, launched ? "" : "  (sm90 not launched)");
  if (dbias != nullptr) CHECK(cudaFree(dbias));
  CHECK(cudaFree(q));
  CHECK(cudaFree(k));
  CHECK(cudaFree(v));
  CHECK(cudaFree(o));
  CHECK(cudaFree(lse));
}

}  // namespace

// Usage: compare [--no-timing | --time | --time-sm90 | --quick | --run B H S D causal p bias N]
//   --no-timing: the checks only; --quick: the checks without the float64 oracle;
//   --time / --time-sm90: the timings only (sm80 and sm90 / sm90 only);
//   --run: N sm90 forwards of one bf16 case (for a profiler).
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--run" && argc >= 10) {
    const int b = std::atoi(argv[2]), h = std::atoi(argv[3]), s = std::atoi(argv[4]),
              d = std::atoi(argv[5]), n = std::atoi(argv[9]);
    const bool causal = std::atoi(argv[6]) != 0, bias = std::atoi(argv[8]) != 0;
    const float p = float(std::atof(argv[7]));
    g_time_sm80 = false;
    for (int i = 0; i < n; ++i) time_case(b, h, s, d, causal, p, bias);
    return 0;
  }
  const bool checks = mode != "--time" && mode != "--time-sm90";
  const bool timings = mode == "" || mode == "--time" || mode == "--time-sm90";
  const bool with_oracle = mode != "--quick";
  g_time_sm80 = mode != "--time-sm90";
  const std::vector<Case> cases = {
      {"d128 256x256", 1, 2, 2, 256, 256, 128, false, true},
      {"d128 128x128 fp16", 1, 1, 1, 128, 128, 128, false, false},
      {"d128 1000x1000 causal", 1, 2, 2, 1000, 1000, 128, true, true},
      {"d64 129x300", 2, 2, 2, 129, 300, 64, false, true},
      {"d64 300x300 causal fp16", 1, 3, 3, 300, 300, 64, true, false},
      {"d256 200x513 causal", 1, 2, 2, 200, 513, 256, true, true},
      {"d256 130x70", 1, 1, 1, 130, 70, 256, false, false},
      {"d72 7x129", 2, 2, 2, 7, 129, 72, false, true},
      {"d8 33x65", 1, 2, 2, 33, 65, 8, false, true},
      {"d40 1x1", 1, 1, 1, 1, 1, 40, false, true},
      {"gqa 8/2 d128 300x700 causal fp16", 1, 8, 2, 300, 700, 128, true, false},
      {"causal sq>sk 300x100", 1, 2, 2, 300, 100, 128, true, true},
      {"bshd d64 200x333", 2, 3, 3, 200, 333, 64, false, true, true},
      {"nested d128 causal", 0, 2, 1, 0, 0, 128, true, true, false, {100, 0, 257, 1},
       {300, 5, 257, 64}},
      {"nested d64", 0, 2, 2, 0, 0, 64, false, false, false, {1, 129, 64}, {200, 1, 128}},
      {"dropout 0.1 d128 500x700 causal", 1, 2, 2, 500, 700, 128, true, true, false, {}, {},
       0.1f},
      {"dropout 0.3 nested d64 fp16", 0, 2, 1, 0, 0, 64, false, false, false, {70, 300},
       {130, 257}, 0.3f},
      {"dropout 0.2 d256 150x300", 1, 1, 1, 150, 300, 256, false, true, false, {}, {}, 0.2f},
  };
  // Bias cases: {name, B, Hq, Hkv, Sq, Sk, D, causal, bf16, bshd, q_lens, k_lens, dropout,
  // bias dtype, broadcast b / h / row, row padding}.
  const std::vector<Case> bias_cases = {
      {"bias bf16 d128 300x704", 2, 2, 2, 300, 704, 128, false, true, false, {}, {}, 0.0f,
       FA_BFLOAT16},
      {"bias fp16 d128 causal 513x1000", 1, 2, 1, 513, 1000, 128, true, false, false, {}, {},
       0.0f, FA_FLOAT16, true},
      {"bias fp32 d128 [B,1,1,Sk] 200x333", 2, 3, 3, 200, 336, 128, false, true, false, {}, {},
       0.0f, FA_FLOAT32, false, true, true},
      {"bias fp32 d64 padded 130x260", 1, 2, 2, 130, 260, 64, true, true, false, {}, {}, 0.0f,
       FA_FLOAT32, false, false, false, 4},
      {"bias bf16 d256 [1,H,1,Sk] 129x136", 2, 2, 2, 129, 136, 256, false, false, false, {}, {},
       0.0f, FA_BFLOAT16, true, false, true},
      {"bias fp16 d256 causal 200x513 pad", 1, 2, 2, 200, 520, 256, true, true, false, {}, {},
       0.0f, FA_FLOAT16, false, false, false, 8},
      {"bias bf16 d40 sq=1", 2, 2, 2, 1, 136, 40, false, true, false, {}, {}, 0.0f,
       FA_BFLOAT16},
      {"bias fp32 nested d64 [B,1,S,S]", 0, 2, 2, 0, 0, 64, true, true, false, {100, 1, 257},
       {200, 5, 260}, 0.0f, FA_FLOAT32, false, true},
      {"bias bf16 dropout 0.1 d128", 1, 2, 2, 300, 520, 128, true, true, false, {}, {}, 0.1f,
       FA_BFLOAT16},
      {"bias fp32 dropout 0.2 d64 [B,1,1,Sk]", 2, 2, 2, 129, 264, 64, false, false, false, {},
       {}, 0.2f, FA_FLOAT32, false, true, true},
      {"bias fp16 dropout 0.3 d256", 1, 1, 1, 150, 304, 256, false, true, false, {}, {}, 0.3f,
       FA_FLOAT16},
      {"bias bf16 dropout nested d128", 0, 2, 1, 0, 0, 128, false, true, false, {70, 300},
       {136, 264}, 0.2f, FA_BFLOAT16},
      {"dropout 0.1 d128 1000x1000 fp16", 1, 2, 2, 1000, 1000, 128, false, false, false, {}, {},
       0.1f},
      {"dropout 0.5 d64 1x7", 1, 2, 2, 1, 7, 64, false, true, false, {}, {}, 0.5f},
  };
  int failed = 0;
  if (checks) {
    for (const Case& c : cases) failed += check_case(c, with_oracle) ? 0 : 1;
    for (const Case& c : bias_cases) failed += check_case(c, with_oracle) ? 0 : 1;
    std::printf("%d of %zu cases failed\n", failed, cases.size() + bias_cases.size());
  }
  if (timings) {
    for (const bool causal : {false, true}) {
      time_case(1, 12, 8192, 128, causal);
      time_case(1, 12, 4096, 128, causal);
      time_case(1, 16, 8192, 64, causal);
      time_case(1, 8, 8192, 256, causal);
      time_case(1, 12, 8192, 128, causal, 0.1f);
      time_case(1, 12, 8192, 128, causal, 0.0f, true);
      time_case(1, 12, 8192, 128, causal, 0.1f, true);
      time_case(1, 16, 8192, 64, causal, 0.1f);
      time_case(1, 8, 8192, 256, causal, 0.1f);
    }
  }
  return failed == 0 ? 0 : 1;
}
