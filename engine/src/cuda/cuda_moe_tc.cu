// MoE prefill on the tensor cores: a grouped GEMM over each expert's token bucket with WMMA
// bf16 tiles (m16n16k16, fp32 accumulation; sm_80 and later, so sm_87, sm_90 and sm_110 alike).
// Prefill reads nearly every expert of every layer (512 tokens x top-8 over 128 experts leave
// ~32 tokens per expert), so the kernel must be bound by reading the weights once: a block
// covers 64 bucket entries (all of a typical expert's tokens) x 128 outputs, and k-slices stream
// through a 3-stage cp.async pipeline (no registers held for loads in flight: the gate/up
// kernel's 64 accumulators leave room for only two blocks per SM, and each keeps two slices,
// 50 KB, in flight). Both operands are bf16 in memory: the host casts x once, and the gate/up
// kernel writes silu(gate) * up in bf16 for the down kernel (as the cuBLAS paths round inputs).
// SPLIT (f32 activations): each activation is stored as bf16 hi + bf16 lo (x - hi) and both are
// multiplied with the same weight fragment, so the inputs are fp32-accurate (~2^-16) for twice
// the MMAs; the weights are still read once.
#include <cuda_bf16.h>
#include <algorithm>
#include <mma.h>

#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_mma.cuh"

namespace omni {
namespace cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 32, kStages = 3;
constexpr int kLd = kBK + 8;     // bf16 elements per shared row (80 B: 32-B aligned fragment rows)
constexpr int kOutLd = kBN + 4;  // fp32 elements per staged output row
constexpr int kThreads = 256;    // 8 warps: 2 (M) x 4 (N), each 32 x 32

template <bool DUAL, bool SPLIT>
__host__ __device__ constexpr int stage_elems() {
  return ((SPLIT ? 2 : 1) * kBM + (DUAL ? 2 : 1) * kBN) * kLd;
}
template <bool DUAL, bool SPLIT>
__host__ __device__ constexpr int smem_bytes() {
  const int pipe = kStages * stage_elems<DUAL, SPLIT>() * 2, out = kBM * kOutLd * 4;
  return pipe > out ? pipe : out;
}

// out = bf16(in); with lo: lo = bf16(in - out), the part of in that out lost.
__global__ void to_bf16_kernel(const float* in, uint16_t* out, uint16_t* lo, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint16_t h, l;
    split_bf16(in[i], h, l);
    out[i] = h;
    if (lo) lo[i] = l;
  }
}
// The same, 4 values per thread (16-byte loads, 8-byte stores): the scalar kernel's 2-byte stores
// held the cast of a 512 x 2048 activation at 8.5 us, twice its bytes' time.
__global__ void to_bf16_x4_kernel(const float4* in, uint2* out, uint2* lo, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 v = in[i];
    uint2 h, l;
    split_pack(v.x, v.y, h.x, l.x);
    split_pack(v.z, v.w, h.y, l.y);
    out[i] = h;
    if (lo) lo[i] = l;
  }
}

// Y[entry][n] = sum_k X[entry / x_div][k] W_e[n][k] for the entries of expert blockIdx.x;
// DUAL: W = gate (table slot 0) and up (slot 1), Y (bf16) = silu(gate) * up; else Y is fp32.
// X bf16; needs K % 32 == 0. SPLIT: X's lo parts start x_lo elements after X, and a DUAL Y's
// lo parts y_lo elements after Y.
template <bool DUAL, bool SPLIT>
__global__ void __launch_bounds__(kThreads, 2) grouped_gemm_tc_kernel(const void* const* table, int which,
                                                                  const int* counts, const int* offsets,
                                                                  const int* list, const uint16_t* X, int x_div,
                                                                  int N, int K, void* Y, int64_t x_lo, int64_t y_lo) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  const int e = blockIdx.x, m0 = blockIdx.y * kBM, n0 = blockIdx.z * kBN;
  const int count = counts[e];
  if (m0 >= count) return;
  const int off = offsets[e];
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(smem_raw);
  __shared__ int rows[kBM];
  const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 2, wn = warp & 3;
  if (tid < kBM) rows[tid] = m0 + tid < count ? list[off + m0 + tid] : -1;
  __syncthreads();

  // Per thread and k-slice: 8 activations of one row, 8 weights of two rows per matrix.
  const int lr = tid >> 2, lc = (tid & 3) * 8;
  const int ent = rows[lr];
  const uint16_t* xrow = X + (ent >= 0 ? int64_t(ent / x_div) * K : 0) + lc;
  const uint16_t* wrow[2][2];
  bool wok[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int n = n0 + lr + i * 64;
    wok[i] = n < N;
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      const uint16_t* W = static_cast<const uint16_t*>(table[e * 3 + (DUAL ? m : which)]);
      wrow[m][i] = W + int64_t(wok[i] ? n : 0) * K + lc;
    }
  }
  constexpr int kXRows = (SPLIT ? 2 : 1) * kBM;  // hi rows, then (SPLIT) lo rows
  auto stage_x = [&](int s) { return smem + s * stage_elems<DUAL, SPLIT>(); };
  auto stage_w = [&](int s, int m) { return smem + s * stage_elems<DUAL, SPLIT>() + (kXRows + m * kBN) * kLd; };
  auto load = [&](int s, int k0) {
    cp_async16(stage_x(s) + lr * kLd + lc, xrow + k0, ent >= 0);
    if (SPLIT) cp_async16(stage_x(s) + (kBM + lr) * kLd + lc, xrow + x_lo + k0, ent >= 0);
#pragma unroll
    for (int m = 0; m < (DUAL ? 2 : 1); ++m)
#pragma unroll
      for (int i = 0; i < 2; ++i) cp_async16(stage_w(s, m) + (lr + i * 64) * kLd + lc, wrow[m][i] + k0, wok[i]);
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> g[2][2], u[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::fill_fragment(g[i][j], 0.f);
      if (DUAL) wmma::fill_fragment(u[i][j], 0.f);
    }
  // A bucket rarely fills the 64-row tile (512 tokens x top-8 over 128 experts: ~32 entries),
  // so a warp skips the MMAs of its 16-row fragments that hold only padding rows (warp-uniform).
  const bool live[2] = {m0 + wm * 32 < count, m0 + wm * 32 + 16 < count};
  const int KT = K / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < KT) load(s, s * kBK);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();  // slice kt has landed (this thread's copies) ...
    __syncthreads();               // ... everyone's, and slice kt - 1's stage is free again
    if (kt + kStages - 1 < KT) load((kt + kStages - 1) % kStages, (kt + kStages - 1) * kBK);
    cp_async_commit();
    const int s = kt % kStages;
    const __nv_bfloat16* xs = reinterpret_cast<const __nv_bfloat16*>(stage_x(s));
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      constexpr int kParts = SPLIT ? 2 : 1;
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[kParts][2];
#pragma unroll
      for (int p = 0; p < kParts; ++p)
#pragma unroll
        for (int i = 0; i < 2; ++i)
          if (live[i]) wmma::load_matrix_sync(a[p][i], xs + (p * kBM + wm * 32 + i * 16) * kLd + kk, kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        const int col = (wn * 32 + j * 16) * kLd + kk;
        wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16*>(stage_w(s, 0)) + col, kLd);
#pragma unroll
        for (int p = 0; p < kParts; ++p)
#pragma unroll
          for (int i = 0; i < 2; ++i)
            if (live[i]) wmma::mma_sync(g[i][j], a[p][i], b, g[i][j]);
        if (DUAL) {
          wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16*>(stage_w(s, 1)) + col, kLd);
#pragma unroll
          for (int p = 0; p < kParts; ++p)
#pragma unroll
            for (int i = 0; i < 2; ++i)
              if (live[i]) wmma::mma_sync(u[i][j], a[p][i], b, u[i][j]);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline's stages are dead: reuse them to stage the output
  // Accumulator fragments of the same shape hold the same (row, col) in the same element, so
  // silu(gate) * up is elementwise on the fragments.
  float(*out)[kOutLd] = reinterpret_cast<float(*)[kOutLd]>(smem_raw);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (DUAL)
#pragma unroll
        for (int t = 0; t < g[i][j].num_elements; ++t) g[i][j].x[t] = silu(g[i][j].x[t]) * u[i][j].x[t];
      wmma::store_matrix_sync(&out[wm * 32 + i * 16][wn * 32 + j * 16], g[i][j], kOutLd, wmma::mem_row_major);
    }
  __syncthreads();
  for (int idx = tid; idx < kBM * kBN; idx += kThreads) {
    const int r = idx / kBN, c = idx % kBN, dst = rows[r];
    if (dst < 0 || n0 + c >= N) continue;
    const int64_t at = int64_t(dst) * N + n0 + c;
    if (DUAL) {
      uint16_t* y = static_cast<uint16_t*>(Y);
      uint16_t hi, lo;
      split_bf16(out[r][c], hi, lo);
      y[at] = hi;
      if (SPLIT) y[y_lo + at] = lo;
    } else {
      static_cast<float*>(Y)[at] = out[r][c];
    }
  }
#else
  __trap();  // the host selects this kernel only on compute capability 8.0 and later
#endif
}

template <bool DUAL, bool SPLIT>
void launch_one(dim3 grid, cudaStream_t stream, const void* const* table, int which, const int* counts,
                const int* offsets, const int* list, const uint16_t* X, int x_div, int N, int K, void* Y,
                int64_t x_lo, int64_t y_lo) {
  static const bool configured = [] {
    cuda_check(cudaFuncSetAttribute(grouped_gemm_tc_kernel<DUAL, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    smem_bytes<DUAL, SPLIT>()),
               "cudaFuncSetAttribute(grouped_gemm_tc_kernel)");
    return true;
  }();
  (void)configured;
  grouped_gemm_tc_kernel<DUAL, SPLIT><<<grid, kThreads, smem_bytes<DUAL, SPLIT>(), stream>>>(
      table, which, counts, offsets, list, X, x_div, N, K, Y, x_lo, y_lo);
  cuda_check(cudaGetLastError(), DUAL ? "launch of grouped_gemm_tc_kernel<gate_up>" : "launch of grouped_gemm_tc_kernel<down>");
}

}  // namespace

bool grouped_gemm_tc_fits(int N, int K) { return K % kBK == 0 && N > 0 && K > 0; }

void launch_to_bf16(const float* in, uint16_t* out, int64_t n, cudaStream_t stream, uint16_t* lo) {
  const bool vec = n % 4 == 0 && (reinterpret_cast<uintptr_t>(in) & 15) == 0 && (reinterpret_cast<uintptr_t>(out) & 7) == 0 &&
                   (reinterpret_cast<uintptr_t>(lo) & 7) == 0;
  if (vec) {
    to_bf16_x4_kernel<<<unsigned(std::min<int64_t>((n / 4 + 255) / 256, 65535)), 256, 0, stream>>>(
        reinterpret_cast<const float4*>(in), reinterpret_cast<uint2*>(out), reinterpret_cast<uint2*>(lo), n / 4);
  } else {
    to_bf16_kernel<<<unsigned(std::min<int64_t>((n + 255) / 256, 65535)), 256, 0, stream>>>(in, out, lo, n);
  }
  cuda_check(cudaGetLastError(), "launch of to_bf16_kernel");
}

void launch_grouped_gemm_tc(bool dual, const void* const* table, int which, const int* counts, const int* offsets,
                            const int* list, const uint16_t* X, int x_div, int experts, int max_entries, int N, int K,
                            void* Y, cudaStream_t stream, int64_t x_lo, int64_t y_lo) {
  const dim3 grid(unsigned(experts), unsigned((max_entries + kBM - 1) / kBM), unsigned((N + kBN - 1) / kBN));
  const bool split = x_lo != 0;
  if (dual && split) launch_one<true, true>(grid, stream, table, which, counts, offsets, list, X, x_div, N, K, Y, x_lo, y_lo);
  else if (dual) launch_one<true, false>(grid, stream, table, which, counts, offsets, list, X, x_div, N, K, Y, 0, 0);
  else if (split) launch_one<false, true>(grid, stream, table, which, counts, offsets, list, X, x_div, N, K, Y, x_lo, 0);
  else launch_one<false, false>(grid, stream, table, which, counts, offsets, list, X, x_div, N, K, Y, 0, 0);
}

}  // namespace cuda
}  // namespace omni
