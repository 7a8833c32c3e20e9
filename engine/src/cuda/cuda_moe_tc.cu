// MoE prefill on the tensor cores: a grouped GEMM over each expert's token bucket with WMMA
// bf16 tiles (m16n16k16, fp32 accumulation; sm_80 and later, so sm_87, sm_90 and sm_110 alike).
// Prefill reads nearly every expert of every layer (512 tokens x top-8 over 128 experts leave
// ~32 tokens per expert), so the kernel must be bound by reading the weights once: a block
// covers 64 bucket entries (all of a typical expert's tokens) x 128 outputs, and the next
// k-slice of weights and activations is loaded into registers while the current one multiplies.
// Activations are rounded to bf16 on the way into shared memory, as the cuBLAS GEMMs do.
#include <cuda_bf16.h>
#include <mma.h>

#include "cuda_common.cuh"
#include "cuda_kernels.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 32;
constexpr int kLd = kBK + 8;     // bf16 elements per shared row (80 B: 32-B aligned fragment rows)
constexpr int kOutLd = kBN + 4;  // fp32 elements per staged output row
constexpr int kThreads = 256;    // 8 warps: 2 (M) x 4 (N), each 32 x 32

struct Tiles {
  uint16_t x[kBM][kLd];
  uint16_t w[2][kBN][kLd];
};
union Smem {
  Tiles t;
  float out[kBM][kOutLd];
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(f32_to_bf16_bits(lo)) | (uint32_t(f32_to_bf16_bits(hi)) << 16);
}

// Y[entry][n] = sum_k X[entry / x_div][k] W_e[n][k] for the entries of expert blockIdx.x;
// DUAL: W = gate (table slot 0) and up (slot 1), Y = silu(gate) * up. Needs K % 32 == 0.
template <bool DUAL>
__global__ void __launch_bounds__(kThreads) grouped_gemm_tc_kernel(const void* const* table, int which,
                                                                  const int* counts, const int* offsets,
                                                                  const int* list, const float* X, int x_div, int N,
                                                                  int K, float* Y) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  const int e = blockIdx.x, m0 = blockIdx.y * kBM, n0 = blockIdx.z * kBN;
  const int count = counts[e];
  if (m0 >= count) return;
  const int off = offsets[e];
  const uint16_t* W0 = static_cast<const uint16_t*>(table[e * 3 + which]);
  const uint16_t* W1 = DUAL ? static_cast<const uint16_t*>(table[e * 3 + 1]) : nullptr;
  __shared__ __align__(128) Smem sm;
  __shared__ int rows[kBM];
  const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 2, wn = warp & 3;
  if (tid < kBM) rows[tid] = m0 + tid < count ? list[off + m0 + tid] : -1;
  __syncthreads();

  // Per thread: 8 activations of one row, 8 weights of two rows (per matrix) per k-slice.
  const int lr = tid >> 2, lc = (tid & 3) * 8;
  const int ent = rows[lr];
  const float* xrow = ent >= 0 ? X + int64_t(ent / x_div) * K + lc : nullptr;
  const uint16_t* wrow0[2];
  const uint16_t* wrow1[2];
  bool wok[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int n = n0 + lr + i * 64;
    wok[i] = n < N;
    wrow0[i] = W0 + int64_t(wok[i] ? n : 0) * K + lc;
    wrow1[i] = DUAL ? W1 + int64_t(wok[i] ? n : 0) * K + lc : nullptr;
  }
  float4 xa = {}, xb = {};
  uint4 wa[2] = {}, wb[2] = {};
  auto load = [&](int k0) {
    if (xrow) {
      xa = *reinterpret_cast<const float4*>(xrow + k0);
      xb = *reinterpret_cast<const float4*>(xrow + k0 + 4);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
      if (wok[i]) {
        wa[i] = load_stream(reinterpret_cast<const uint4*>(wrow0[i] + k0));
        if (DUAL) wb[i] = load_stream(reinterpret_cast<const uint4*>(wrow1[i] + k0));
      }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> g[2][2], u[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::fill_fragment(g[i][j], 0.f);
      if (DUAL) wmma::fill_fragment(u[i][j], 0.f);
    }
  load(0);
  for (int k0 = 0; k0 < K; k0 += kBK) {
    *reinterpret_cast<uint4*>(&sm.t.x[lr][lc]) =
        make_uint4(pack_bf16(xa.x, xa.y), pack_bf16(xa.z, xa.w), pack_bf16(xb.x, xb.y), pack_bf16(xb.z, xb.w));
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      *reinterpret_cast<uint4*>(&sm.t.w[0][lr + i * 64][lc]) = wa[i];
      if (DUAL) *reinterpret_cast<uint4*>(&sm.t.w[1][lr + i * 64][lc]) = wb[i];
    }
    __syncthreads();
    if (k0 + kBK < K) load(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(a[i], reinterpret_cast<const __nv_bfloat16*>(&sm.t.x[wm * 32 + i * 16][kk]), kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16*>(&sm.t.w[0][wn * 32 + j * 16][kk]), kLd);
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::mma_sync(g[i][j], a[i], b, g[i][j]);
        if (DUAL) {
          wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16*>(&sm.t.w[1][wn * 32 + j * 16][kk]), kLd);
#pragma unroll
          for (int i = 0; i < 2; ++i) wmma::mma_sync(u[i][j], a[i], b, u[i][j]);
        }
      }
    }
    __syncthreads();
  }
  // Accumulator fragments of the same shape hold the same (row, col) in the same element, so
  // silu(gate) * up is elementwise on the fragments. Stage through shared memory (the tiles are
  // dead now) to scatter whole rows to their bucket entries.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (DUAL)
#pragma unroll
        for (int t = 0; t < g[i][j].num_elements; ++t) g[i][j].x[t] = silu(g[i][j].x[t]) * u[i][j].x[t];
      wmma::store_matrix_sync(&sm.out[wm * 32 + i * 16][wn * 32 + j * 16], g[i][j], kOutLd, wmma::mem_row_major);
    }
  __syncthreads();
  for (int idx = tid; idx < kBM * kBN; idx += kThreads) {
    const int r = idx / kBN, c = idx % kBN, dst = rows[r];
    if (dst >= 0 && n0 + c < N) Y[int64_t(dst) * N + n0 + c] = sm.out[r][c];
  }
#else
  __trap();  // the host selects this kernel only on compute capability 8.0 and later
#endif
}

}  // namespace

bool grouped_gemm_tc_fits(int N, int K) { return K % kBK == 0 && N > 0 && K > 0; }

void launch_grouped_gemm_tc(bool dual, const void* const* table, int which, const int* counts, const int* offsets,
                            const int* list, const float* X, int x_div, int experts, int max_entries, int N, int K,
                            float* Y, cudaStream_t stream) {
  const dim3 grid(unsigned(experts), unsigned((max_entries + kBM - 1) / kBM), unsigned((N + kBN - 1) / kBN));
  if (dual)
    grouped_gemm_tc_kernel<true><<<grid, kThreads, 0, stream>>>(table, which, counts, offsets, list, X, x_div, N, K, Y);
  else
    grouped_gemm_tc_kernel<false><<<grid, kThreads, 0, stream>>>(table, which, counts, offsets, list, X, x_div, N, K, Y);
  cuda_check(cudaGetLastError(), dual ? "launch of grouped_gemm_tc_kernel<gate_up>" : "launch of grouped_gemm_tc_kernel<down>");
}

}  // namespace cuda
}  // namespace omni
