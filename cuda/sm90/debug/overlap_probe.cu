// overlap_probe.cu: do integer ALU instructions (the Philox mask's IMAD.WIDE and LOP3) run
// alongside wgmma on the same SM sub-partitions for free, or do they slow the tensor cores?
// One block per SM, two warpgroups: warpgroup 0 issues m64n128k16 products (shared-memory
// operands as in S = Q K^T, or a register A operand as in O += P V), warpgroup 1 runs
// independent Philox chains (or fp32 FMA chains for comparison). Each side alone, then both:
// if "both" takes max(alone), the pipes overlap; if it takes the sum, they serialize.
// Build (here): nvcc -O3 -std=c++17 -I../.. -I../../include -gencode=arch=compute_90a,code=sm_90a \
//                 overlap_probe.cu -o overlap_probe
// Run (H100):   ./overlap_probe
#include <cuda_bf16.h>

#include <cstdio>

#include "common/philox.h"
#include "sm90/ptx90.h"
#include "sm90/wgmma.h"

using namespace fa;
using namespace fa::sm90;

enum : int { kTensorSS = 1, kTensorRS = 2, kAluPhilox = 4, kAluFma = 8, kAluEverywhere = 16 };

template <int mode>
__global__ void __launch_bounds__(256, 1) probe(int products, int alu_iters, uint32_t* sink) {
  extern __shared__ __align__(1024) uint8_t smem[];
  const uint32_t base = (uint32_t(__cvta_generic_to_shared(smem)) + 1023u) & ~1023u;
  for (int i = threadIdx.x; i < (49 * 1024) / 16; i += blockDim.x) {
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  const int warpgroup = threadIdx.x / 128;
  uint32_t result = 0;
  if constexpr ((mode & (kTensorSS | kTensorRS)) != 0) {
  if (warpgroup == 0) {
    float acc[16][4] = {};
    uint32_t a[4] = {0, 0, 0, 0};
    // Opaque values: ptxas must not fold the zeros into RZ operands of the products.
    for (int n = 0; n < 16; ++n)
      for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(acc[n][e]));
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[e]));
    const uint64_t a_desc = k_major_descriptor(base);             // 64 x 128 (16 KB)
    const uint64_t b_desc = k_major_descriptor(base + 16 * 1024);  // 128 x 128 (32 KB)
    for (int i = 0; i < products; ++i) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 8; ++kk) {
        if constexpr ((mode & kTensorRS) != 0) {
          wgmma_rs<__nv_bfloat16, 16>(acc, a, advance(b_desc, mn_major_step(kk)), true);
        } else {
          wgmma_ss<__nv_bfloat16, 16>(acc, advance(a_desc, k_major_step(kk, 64)),
                                      advance(b_desc, k_major_step(kk, 128)), true);
        }
      }
      wgmma_commit();
      wgmma_wait<0>();
      pin(acc);
    }
    for (int n = 0; n < 16; ++n) result ^= __float_as_uint(acc[n][0]);
  }
  }
  if constexpr ((mode & (kAluPhilox | kAluFma)) != 0) {
  if (warpgroup == 1 || (mode & kAluEverywhere) != 0) {
    if constexpr ((mode & kAluPhilox) != 0) {
      uint32_t x[8];
      for (int c = 0; c < 8; ++c) x[c] = threadIdx.x * 8 + c;
      for (int i = 0; i < alu_iters; ++i) {
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          const Philox4 w = philox4x32_10(Philox4{x[c], uint32_t(i), 7u, 9u}, 1234u, 5678u);
          x[c] = w.x ^ w.y ^ w.z ^ w.w;
        }
      }
      for (int c = 0; c < 8; ++c) result ^= x[c];
    } else {
      float f[16];
      for (int c = 0; c < 16; ++c) f[c] = float(threadIdx.x + c) * 1e-3f;
      for (int i = 0; i < alu_iters; ++i) {
#pragma unroll
        for (int r = 0; r < 40; ++r)
#pragma unroll
          for (int c = 0; c < 16; ++c) f[c] = fmaf(f[c], 0.999f, 1e-4f);
      }
      for (int c = 0; c < 16; ++c) result ^= __float_as_uint(f[c]);
    }
  }
  }
  if (result == 0x12345678u) sink[threadIdx.x] = result;  // keeps the work alive
}

template <int mode>
static float time_mode(int products, int alu_iters, uint32_t* sink, int smem) {
  cudaFuncSetAttribute(probe<mode>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  probe<mode><<<132, 256, smem>>>(products, alu_iters, sink);  // warm-up
  float best = 1e30f;
  for (int rep = 0; rep < 5; ++rep) {
    cudaEventRecord(start);
    probe<mode><<<132, 256, smem>>>(products, alu_iters, sink);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    best = ms < best ? ms : best;
  }
  if (cudaGetLastError() != cudaSuccess) std::printf("CUDA error\n");
  return best;
}

template <int tensor, int alu>
static void compare(int products, int iters, uint32_t* sink, int smem) {
  const float t = time_mode<tensor>(products, 0, sink, smem);
  const float a = time_mode<alu>(0, iters, sink, smem);
  const float both = time_mode<tensor | alu>(products, iters, sink, smem);
  std::printf("%s + %s: tensor alone %.3f ms, alu alone %.3f ms, both %.3f ms "
              "(max %.3f, sum %.3f)\n",
              tensor == kTensorSS ? "wgmma SS" : "wgmma RS", alu == kAluPhilox ? "Philox" : "FFMA",
              t, a, both, t > a ? t : a, t + a);
}

int main() {
  uint32_t* sink;
  cudaMalloc(&sink, 4096);
  const int smem = 49 * 1024;
  const int products = 20000;
  {
    // Philox throughput of a whole SM (both warpgroups, 8 warps): the floor of the mask's
    // cost, 8 calls per thread per iteration.
    const int iters = 9000;
    const float ms = time_mode<kAluPhilox | kAluEverywhere>(0, iters, sink, smem);
    const double calls_per_sm = double(iters) * 8 * 256;
    std::printf("Philox4x32-10 alone, 8 warps per SM: %.3f ms, %.3f ns per call per SM\n", ms,
                ms * 1e6 / calls_per_sm);
  }
  for (int iters : {3000, 9000}) {
    compare<kTensorSS, kAluPhilox>(products, iters, sink, smem);
    compare<kTensorRS, kAluPhilox>(products, iters, sink, smem);
    compare<kTensorSS, kAluFma>(products, iters, sink, smem);
    compare<kTensorRS, kAluFma>(products, iters, sink, smem);
  }
  return 0;
}
