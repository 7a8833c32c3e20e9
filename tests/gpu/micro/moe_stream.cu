// Micro-benchmark (exploration, not a test): how fast can the MoE prefill GEMM's weight access
// pattern read memory, with nothing else in the kernel? 805 MB (the gate + up matrices of 128
// experts, rows of K = 2048 bf16), 4 warps per block, 3 blocks per SM (the occupancy of
// moe_mma_kernel), each warp 32 rows. "tile" patterns: per step, lane (g, c) reads 16 U bytes of
// rows g, g + 8 of two 16-row tiles (the warp: 32 rows x 64 U bytes), D steps in flight. "rows":
// contig: lane c's pieces are 64 bytes apart (each instruction reads 64 contiguous bytes of a row);
// otherwise a lane's U pieces are adjacent. "rows": the warp reads its rows one after another, 512 contiguous bytes per instruction, two rows in flight.
// Build and run on a GPU host: BENCHES=moe_stream tests/gpu/micro/run.sh. Results: docs/performance.md, "the MoE GEMM rebuilt".
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
#include "cuda/cuda_common.cuh"

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)
using namespace omni::cuda;

constexpr int K = 2048;
__device__ __forceinline__ unsigned fold(const uint4& v) { return v.x ^ v.y ^ v.z ^ v.w; }

template <int U, int D, bool CONTIG>
__global__ void __launch_bounds__(128, 3) tile_read(const uint16_t* W, unsigned* sink) {
  extern __shared__ unsigned char pad[];  // only to hold occupancy at 3 blocks per SM
  const int lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int64_t base = (int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5)) * 32;
  const uint16_t* p[2][2];
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < 2; ++h) p[t][h] = W + (base + 16 * t + g + 8 * h) * K + (CONTIG ? c * 8 : c * U * 8);
  constexpr int kStepElems = 32 * U, steps = K / kStepElems;
  uint4 buf[D][2][2][U];
  unsigned acc = 0;
  // Step s's pieces of the warp's 32 rows into ring slot d.
  auto load = [&](int d, int s) {
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int u = 0; u < U; ++u)
          buf[d][t][h][u] = load_stream(reinterpret_cast<const uint4*>(p[t][h] + s * kStepElems + (CONTIG ? 32 * u : 8 * u)));
  };
#pragma unroll
  for (int d = 0; d < D; ++d) load(d, d);
  for (int s0 = 0; s0 < steps; s0 += D) {
#pragma unroll
    for (int d = 0; d < D; ++d) {
#pragma unroll
      for (int t = 0; t < 2; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int u = 0; u < U; ++u) acc ^= fold(buf[d][t][h][u]);
      if (s0 + d + D < steps) load(d, s0 + d + D);
    }
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

__global__ void __launch_bounds__(128, 3) rows_read(const uint16_t* W, unsigned* sink) {
  extern __shared__ unsigned char pad[];
  const int lane = threadIdx.x & 31;
  const int64_t base = (int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5)) * 32;
  unsigned acc = 0;
  for (int r = 0; r < 32; r += 2) {
    uint4 a[8], b[8];
    const uint4* pa = reinterpret_cast<const uint4*>(W + (base + r) * K) + lane;
    const uint4* pb = reinterpret_cast<const uint4*>(W + (base + r + 1) * K) + lane;
#pragma unroll
    for (int u = 0; u < 8; ++u) { a[u] = load_stream(pa + 32 * u); b[u] = load_stream(pb + 32 * u); }
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= fold(a[u]) ^ fold(b[u]);
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

__global__ void fill(uint32_t* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = uint32_t(i * 2654435761u) & 0x3f7f3f7fu;
}

template <typename F>
void bench(const char* name, F launch, double bytes) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  launch(); CK(cudaDeviceSynchronize());
  float best = 1e30f;
  for (int rep = 0; rep < 5; ++rep) {
    CK(cudaEventRecord(a)); launch(); CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b)); best = ms < best ? ms : best;
  }
  printf("%-28s %8.1f us  %7.1f GB/s\n", name, best * 1e3, bytes / (best * 1e-3) / 1e9);
}

int main() {
  const int64_t rows = 128LL * 1536, elems = rows * K;
  uint16_t* W; unsigned* sink;
  CK(cudaMalloc(&W, elems * 2)); CK(cudaMalloc(&sink, 4));
  fill<<<4096, 256>>>(reinterpret_cast<uint32_t*>(W), elems / 2);
  const int blocks = int(rows / 128);
  const int smem = 70 * 1024;
  const double bytes = double(elems) * 2;
#define TILE(U, D, C) do { auto k = tile_read<U, D, C>; CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem)); \
    bench("tile U=" #U " D=" #D " contig=" #C, [&] { k<<<blocks, 128, smem>>>(W, sink); }, bytes); } while (0)
  TILE(2, 1, false); TILE(2, 2, false); TILE(4, 1, false); TILE(1, 2, false);
  TILE(2, 1, true); TILE(2, 2, true); TILE(2, 3, true); TILE(4, 1, true); TILE(4, 2, true);
  CK(cudaFuncSetAttribute(rows_read, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  bench("rows (512 B/instr, 2 rows)", [&] { rows_read<<<blocks, 128, smem>>>(W, sink); }, bytes);
  CK(cudaGetLastError());
  return 0;
}
