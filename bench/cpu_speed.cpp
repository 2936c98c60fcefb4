// bench/cpu_speed.cpp: CPU backend timings of the CLI's problem (B=1, H=12, S=1024, D=128,
// bf16), straight over the C ABI, for A/B runs on a busy machine: wall and process CPU time
// per call, min and median over the runs, libraries alternated call by call.
//   g++ -O2 -Icuda/include bench/cpu_speed.cpp -ldl -o /tmp/cpu_speed
//   /tmp/cpu_speed RUNS LIB [LIB ...]
#include <dlfcn.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "flashattn.h"

using Forward = int32_t (*)(const fa_forward_args*);
using Backward = int32_t (*)(const fa_backward_args*);

static double now(clockid_t clock) {
  timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static fa_tensor tensor(void* data, int32_t dtype, std::vector<int64_t> shape) {
  fa_tensor t{};
  t.data = uint64_t(data);
  t.dtype = dtype;
  t.device = FA_DEVICE_CPU;
  t.ndim = int32_t(shape.size());
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.stride[d] = stride;
    stride *= shape[d];
  }
  return t;
}

int main(int argc, char** argv) {
  if (argc < 3) return std::fprintf(stderr, "usage: %s RUNS LIB...\n", argv[0]), 2;
  const int runs = std::atoi(argv[1]);
  const int64_t B = 1, H = 12, S = 1024, D = 128, n = B * H * S * D;
  std::vector<uint16_t> q(n), k(n), v(n), out(n), dout(n), dq(n), dk(n), dv(n);
  std::vector<float> lse(B * H * S);
  srand(1);
  auto bf16 = [](float x) { uint32_t b; std::memcpy(&b, &x, 4); return uint16_t(b >> 16); };
  for (auto* x : {&q, &k, &v, &dout}) for (auto& e : *x) e = bf16(rand() / float(RAND_MAX));
  const std::vector<int64_t> shape{B, H, S, D};
  fa_forward_args f{};
  f.abi_version = FA_ABI_VERSION;
  f.struct_size = sizeof f;
  f.q = tensor(q.data(), FA_BFLOAT16, shape);
  f.k = tensor(k.data(), FA_BFLOAT16, shape);
  f.v = tensor(v.data(), FA_BFLOAT16, shape);
  f.out = tensor(out.data(), FA_BFLOAT16, shape);
  f.lse = tensor(lse.data(), FA_FLOAT32, {B, H, S});
  f.scale = 1.0f / std::sqrt(float(D));
  f.window_left = f.window_right = -1;
  fa_backward_args g{};
  g.abi_version = FA_ABI_VERSION;
  g.struct_size = sizeof g;
  g.q = f.q; g.k = f.k; g.v = f.v; g.out = f.out; g.lse = f.lse;
  g.dout = tensor(dout.data(), FA_BFLOAT16, shape);
  g.dq = tensor(dq.data(), FA_BFLOAT16, shape);
  g.dk = tensor(dk.data(), FA_BFLOAT16, shape);
  g.dv = tensor(dv.data(), FA_BFLOAT16, shape);
  g.scale = f.scale;
  g.window_left = g.window_right = -1;
  const int libs = argc - 2;
  std::vector<Forward> fwd(libs);
  std::vector<Backward> bwd(libs);
  for (int l = 0; l < libs; ++l) {
    void* handle = dlopen(argv[2 + l], RTLD_NOW | RTLD_LOCAL);
    if (!handle) return std::fprintf(stderr, "%s\n", dlerror()), 1;
    fwd[l] = Forward(dlsym(handle, "fa_forward"));
    bwd[l] = Backward(dlsym(handle, "fa_backward"));
  }
  // [lib][pass][wall, cpu] samples
  std::vector<std::vector<double>> samples(libs * 4);
  for (int run = -1; run < runs; ++run) {  // run -1: warm-up
    for (int l = 0; l < libs; ++l) {
      for (int pass = 0; pass < 2; ++pass) {
        const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        const int32_t status = pass == 0 ? fwd[l](&f) : bwd[l](&g);
        const double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        if (status != 0) return std::fprintf(stderr, "status %d\n", status), 1;
        if (run >= 0) {
          samples[(l * 2 + pass) * 2].push_back(w1 - w0);
          samples[(l * 2 + pass) * 2 + 1].push_back(c1 - c0);
        }
      }
    }
  }
  const double flops = 4.0 * B * H * S * S * D;
  for (int l = 0; l < libs; ++l) {
    for (int pass = 0; pass < 2; ++pass) {
      auto& wall = samples[(l * 2 + pass) * 2];
      auto& cpu = samples[(l * 2 + pass) * 2 + 1];
      std::sort(wall.begin(), wall.end());
      std::sort(cpu.begin(), cpu.end());
      const double pass_flops = pass == 0 ? flops : 2.5 * flops;
      std::printf("%-40s %-8s wall min %8.1f median %8.1f ms  cpu median %8.1f ms  %6.1f GFLOP/s (min wall)\n",
                  argv[2 + l], pass == 0 ? "forward" : "backward", wall[0], wall[wall.size() / 2],
                  cpu[cpu.size() / 2], pass_flops / (wall[0] * 1e-3) / 1e9);
    }
  }
  return 0;
}
