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
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

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

float bias_value(const std::vector<uint8_t>& bias, int dtype, int64_t i) {
  if (dtype == FA_FLOAT32) return reinterpret_cast<const float*>(bias.data())[i];
  return from_half_bits(reinterpret_cast<const uint16_t*>(bias.data())[i], dtype == FA_BFLOAT16);
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
  const harness::Geometry g = harness::geometry_of(c);
  const bool nested = g.nested;
  const int batch = g.batch, max_q = g.max_q, max_k = g.max_k;
  const std::vector<int>& cu_q = g.cu_q;
  const std::vector<int>& cu_k = g.cu_k;
  const int64_t total_q = g.total_q;
  const harness::Layout lq = g.lq, lk = g.lk;
  const size_t q_elems = g.q_elems, k_elems = g.k_elems, lse_elems = g.lse_elems;

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
    dbias = harness::to_device(hbias);
  }

  harness::Buffers dev;
  dev.q = harness::to_device(hq);
  dev.k = harness::to_device(hk);
  dev.v = harness::to_device(hv);
  CHECK(cudaMalloc(&dev.out, q_elems * 2));
  CHECK(cudaMalloc(&dev.lse, lse_elems * 4));
  if (nested) {
    dev.cu_q = harness::to_device(cu_q);
    dev.cu_k = harness::to_device(cu_k);
  }
  fa::AttentionParams ap = harness::base_params(c, g, dev);
  if (dbias != nullptr) {
    ap.bias.ptr = dbias;
    ap.bias.dtype = c.bias_dtype;
    ap.bias.stride_b = bsb;
    ap.bias.stride_head = bsh;
    ap.bias.stride_row = bsr;
  }

  const fa::LaunchContext ctx = harness::hopper_context();
  const fa::KernelParams p = fa::make_params(ap);
  bool launched = false;
  auto sm80 = [&](const fa::AttentionParams&) {
    const fa_status s = c.d <= 64    ? fa::sm80::launch_fwd_d64(p, c.bf16, ctx)
                        : c.d <= 128 ? fa::sm80::launch_fwd_d128(p, c.bf16, ctx)
                                     : fa::sm80::launch_fwd_d256(p, c.bf16, ctx);
    if (s != FA_OK) std::fprintf(stderr, "sm80 status %d\n", s);
  };
  auto sm90 = [&](const fa::AttentionParams&) {
    const fa_status s = harness::launch_fwd90(p, c.bf16, ctx, &launched);
    if (s != FA_OK) std::fprintf(stderr, "sm90 status %d\n", s);
  };
  std::vector<uint16_t> o80, o90;
  std::vector<float> l80, l90;
  uint16_t* d_out = static_cast<uint16_t*>(dev.out);
  run_case(c, ap, sm80, d_out, dev.lse, q_elems, lse_elems, o80, l80);
  run_case(c, ap, sm90, d_out, dev.lse, q_elems, lse_elems, o90, l90);

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
          const int64_t lo = g.lse_index(b, h, i, c.hq, c.sq);
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
          const int64_t lo = g.lse_index(b, h, i, c.hq, c.sq);
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
  dev.release();
  if (dbias != nullptr) CHECK(cudaFree(dbias));
  return ok;
}

// Median time of the forward on (B, H, S, D) bf16, sm80 and sm90, in microseconds.
bool g_time_sm80 = true;  // --time-sm90: skip the sm80 timings

void time_case(int batch, int heads, int s, int d, bool causal, float dropout = 0.0f,
               bool bias = false) {
  Case c{"", batch, heads, heads, s, s, d, causal, true};
  c.dropout = dropout;
  const harness::Geometry g = harness::geometry_of(c);
  std::vector<uint16_t> h(g.q_elems);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : h) x = to_half_bits(normal(rng), true);
  harness::Buffers dev;
  dev.q = harness::to_device(h);
  dev.k = harness::to_device(h);
  dev.v = harness::to_device(h);
  CHECK(cudaMalloc(&dev.out, g.q_elems * 2));
  CHECK(cudaMalloc(&dev.lse, g.lse_elems * 4));
  fa::AttentionParams ap = harness::base_params(c, g, dev);
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
  const fa::LaunchContext ctx = harness::hopper_context();
  const fa::KernelParams p = fa::make_params(ap);
  auto median_us = [](auto&& launch) { return harness::median_us(launch, 20); };
  const float t80 = !g_time_sm80 ? 0.0f : median_us([&] {
    d <= 64 ? fa::sm80::launch_fwd_d64(p, true, ctx)
            : d <= 128 ? fa::sm80::launch_fwd_d128(p, true, ctx)
                       : fa::sm80::launch_fwd_d256(p, true, ctx);
  });
  bool launched = false;
  const float t90 = median_us([&] { harness::launch_fwd90(p, true, ctx, &launched); });
  CHECK(cudaGetLastError());
  const double flops = 4.0 * batch * heads * double(s) * s * d / (causal ? 2 : 1);
  std::printf("(%d,%d,%d,%d) causal=%d p=%.1f bias=%d  sm80 %8.1f us %5.0f TF/s   "
              "sm90 %8.1f us %5.0f TF/s%s\n",
              batch, heads, s, d, int(causal), dropout, int(bias), t80, flops / t80 * 1e-6,
              t90, flops / t90 * 1e-6, launched ? "" : "  (sm90 not launched)");
  if (dbias != nullptr) CHECK(cudaFree(dbias));
  dev.release();
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
