// mbar_racecheck.cu: does compute-sanitizer's racecheck understand mbarrier release/acquire
// between ordinary shared-memory stores and loads? (It does not: on the H100 with CUDA 13.0,
// 2026-11-24, it reports 6 hazards on this correct protocol, the pattern the sm90 backward
// first used to hand lse and D rows from its producer warp to the consumers; it now uses
// named barriers, which racecheck models.)
// Producer warp stores 64 floats per stage and each lane arrives on full[s] (count 32);
// 4 consumer warps wait full[s], load, __syncwarp, lane 0 arrives on empty[s] (count 4).
// Build: nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -lineinfo mbar_racecheck.cu
// Run:   compute-sanitizer --tool racecheck ./a.out
#include <cstdio>
#include <cstdint>
__device__ __forceinline__ uint32_t sa(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }
__device__ void init(uint32_t b, int n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(b), "r"(n) : "memory"); }
__device__ void arrive(uint32_t b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(b) : "memory"); }
__device__ void wait(uint32_t b, uint32_t par) {
  uint32_t done = 0;
  do { asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }" : "=r"(done) : "r"(b), "r"(par) : "memory"); } while (!done);
}
__global__ void k(float* out) {
  __shared__ float buf[2][64];
  __shared__ uint64_t full[2], empty[2];
  if (threadIdx.x == 0) { for (int s = 0; s < 2; ++s) { init(sa(&full[s]), 32); init(sa(&empty[s]), 4); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int steps = 8;
  if (warp == 0) {
    for (int i = 0; i < steps; ++i) {
      const int s = i % 2; const uint32_t par = (i / 2) & 1;
      if (i >= 2) wait(sa(&empty[s]), par ^ 1);
      buf[s][lane] = float(i * 100 + lane); buf[s][lane + 32] = float(i);
      arrive(sa(&full[s]));
    }
  } else {
    float acc = 0;
    for (int i = 0; i < steps; ++i) {
      const int s = i % 2; const uint32_t par = (i / 2) & 1;
      wait(sa(&full[s]), par);
      acc += buf[s][(lane * 2) % 64] + buf[s][(lane * 2 + 1) % 64];
      __syncwarp();
      if (lane == 0) arrive(sa(&empty[s]));
    }
    out[threadIdx.x] = acc;
  }
}
int main() {
  float* d; cudaMalloc(&d, 160 * 4);
  k<<<1, 160>>>(d);
  cudaError_t e = cudaDeviceSynchronize();
  float h[160]; cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  printf("status %s, out[32] %g\n", cudaGetErrorString(e), h[32]);
  return e != cudaSuccess;
}
