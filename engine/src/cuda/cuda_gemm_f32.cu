// fp32-input GEMM for the linears that keep fp32 activations at more than 8 rows (the MoE router,
// whose top-k a bf16 rounding could flip, and matrices of <= 256K weights): out[s][n] =
// act(sum_k x[s][k] W[n][k] + bias[n]), x fp32, W bf16, fp32 FMA. The batched GEMV it replaces
// re-read all of x for every output row: the thinker's router over a 512-token prefill took
// 119 us per layer (ncu, H100) for 0.13 GFLOP.
//
// A block: 32 rows x 32 outputs, 256 threads in 4 k-groups; each k chunk of 128 is staged in
// shared memory (transposed, so that a thread's 4 rows and 4 outputs are two float4 reads), each
// k-group multiplies its 32 k of the chunk into 4 x 4 per thread, and the groups' partial tiles
// are summed through shared memory at the end.
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kTm = 32, kTn = 32, kGroups = 4, kKc = 128, kThreads = 256;
constexpr int kLd = kTm + 4;  // floats per transposed row (16-byte aligned)

__global__ void __launch_bounds__(kThreads) gemm_f32_kernel(const float* x, const uint16_t* W, const uint16_t* bias,
                                                           float* out, int S, int N, int K, int act) {
  __shared__ __align__(16) float xs[kKc][kLd];  // [k][row]
  __shared__ __align__(16) float ws[kKc][kLd];  // [k][output]
  const int m0 = blockIdx.y * kTm, n0 = blockIdx.x * kTn, tid = threadIdx.x;
  const int grp = tid / 64, l = tid % 64, tm = (l / 8) * 4, tn = (l % 8) * 4;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kKc) {
    // 32 rows x 128 k of x and of W: 1024 pieces of 4 k each, 4 per thread; a warp takes one piece
    // of each of the 32 rows, so that its transposed stores fall in 32 different banks.
    for (int p = tid; p < kTm * kKc / 4; p += kThreads) {
      const int r = p % kTm, k = k0 + (p / kTm) * 4, kk = k - k0;
      float4 xv = make_float4(0.f, 0.f, 0.f, 0.f), wv = xv;
      if (m0 + r < S && k < K) xv = *reinterpret_cast<const float4*>(x + int64_t(m0 + r) * K + k);
      if (n0 + r < N && k < K) {
        const uint2 b = *reinterpret_cast<const uint2*>(W + int64_t(n0 + r) * K + k);
        wv = make_float4(bf16_lo(b.x), bf16_hi(b.x), bf16_lo(b.y), bf16_hi(b.y));
      }
      xs[kk][r] = xv.x, xs[kk + 1][r] = xv.y, xs[kk + 2][r] = xv.z, xs[kk + 3][r] = xv.w;
      ws[kk][r] = wv.x, ws[kk + 1][r] = wv.y, ws[kk + 2][r] = wv.z, ws[kk + 3][r] = wv.w;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = grp * (kKc / kGroups); kk < (grp + 1) * (kKc / kGroups); ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[kk][tm]);
      const float4 b = *reinterpret_cast<const float4*>(&ws[kk][tn]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
  // Sum the k-groups' tiles: groups 1-3 park theirs in xs, group 0 adds them.
  float(*part)[kTm][kTn] = reinterpret_cast<float(*)[kTm][kTn]>(&xs[0][0]);  // 3 x 32 x 32 floats fit
  if (grp > 0)
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) part[grp - 1][tm + i][tn + j] = acc[i][j];
  __syncthreads();
  if (grp > 0) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int s = m0 + tm + i;
    if (s >= S) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tn + j;
      if (n >= N) continue;
      float v = acc[i][j];
      for (int q = 0; q < kGroups - 1; ++q) v += part[q][tm + i][tn + j];
      if (bias) v += bf16_at(bias, n);
      out[int64_t(s) * N + n] = activate(v, act);
    }
  }
}

}  // namespace

bool gemm_f32_fits(int64_t rows, int64_t K, const float* x, const uint16_t* W) {
  return rows <= int64_t(65535) * kTm && K % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
         (reinterpret_cast<uintptr_t>(W) & 7) == 0;
}

void launch_gemm_f32(const float* x, const uint16_t* W, const uint16_t* bias, float* out, int S, int N, int K,
                     int act, cudaStream_t stream) {
  const dim3 grid(unsigned((N + kTn - 1) / kTn), unsigned((S + kTm - 1) / kTm));
  gemm_f32_kernel<<<grid, kThreads, 0, stream>>>(x, W, bias, out, S, N, K, act);
  cuda_check(cudaGetLastError(), "launch of gemm_f32_kernel");
}

}  // namespace cuda
}  // namespace omni
