// The prefill (general) attention path's arguments and key ranges, shared by its two kernels:
// the fp32 tile kernel (cuda_attention.cu; any head_dim <= 128) and the tensor-core kernel
// (cuda_attention_mma.cu; head_dim 64 or 128, compute capability >= 8.0).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace omni {
namespace cuda {

struct TileArgs {
  const float* q;   // [S, hq, hd], normalized and rotated
  const void* k;    // cache [cap, hkv, hd] bf16 or fp32, or rows [S, hkv, hd] fp32
  const void* v;
  bool kv_bf16;
  const int32_t* pos;  // with a cache
  int S, hq, hkv, hd, capacity;
  bool cached, causal;
  int window, block;
  float scale;
  float* out;  // [S, hq * hd]
};

// Keys [lo, hi] (key-index space: cache slots or rows of this call) that row s attends to.
__device__ __forceinline__ void key_range(const TileArgs& a, int s, int& lo, int& hi) {
  lo = 0;
  hi = a.S - 1;
  const int qi = a.cached ? a.pos[s] : s;
  if (a.cached) hi = min(a.pos[s], a.capacity - 1);  // a bad position was flagged by the prep kernel
  else if (a.causal) hi = s;
  if (a.window > 0) lo = max(0, qi - a.window + 1);
  if (a.block > 0 && !a.cached) {
    lo = max(lo, (s / a.block) * a.block);
    hi = min(hi, (s / a.block + 1) * a.block - 1);
  }
}

// Every thread of the block calls it: the key ranges of the block's ROWS query rows from r0 go to
// rlo/rhi (shared; rows past S get an empty range), and [kmin, kmax] is the union of the non-empty
// ones (kmax < kmin: no keys).
template <int ROWS>
__device__ __forceinline__ void block_key_ranges(const TileArgs& a, int r0, int* rlo, int* rhi, int& kmin, int& kmax) {
  if (threadIdx.x < ROWS) {
    int lo = 0, hi = -1;
    if (r0 + int(threadIdx.x) < a.S) key_range(a, r0 + threadIdx.x, lo, hi);
    rlo[threadIdx.x] = lo;
    rhi[threadIdx.x] = hi;
  }
  __syncthreads();
  kmin = 1 << 30;
  kmax = -1;
  for (int r = 0; r < ROWS; ++r)
    if (rhi[r] >= rlo[r]) {
      kmin = min(kmin, rlo[r]);
      kmax = max(kmax, rhi[r]);
    }
}

// Tensor-core prefill attention (cuda_attention_mma.cu). split: q, k, v and the probabilities
// go to the MMAs as bf16 hi + lo parts (f32 activations); else rounded to bf16.
bool attention_mma_fits(int hd);
void launch_attention_mma(const TileArgs& a, bool split, cudaStream_t stream);

}  // namespace cuda
}  // namespace omni
