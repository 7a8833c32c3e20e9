// MoE prefill grouped GEMM with the weights as the MMA's A operand, loaded from memory straight
// into registers (mma.sync m16n8k16 bf16 -> fp32; compute capability 8.0 and later, so sm_87,
// sm_90 and sm_110 alike).
//
// Why not the WMMA kernel (cuda_moe_tc.cu): prefill reads all 128 experts of a layer (1.2 GB) for
// ~32 tokens each, so the GEMM is bound by reading weights. That kernel staged 64-byte pieces of
// 256 weight rows per 32-k slice through shared memory, two blocks per SM, a block barrier per
// slice; ncu on the H100 showed 1.74 TB/s, one instruction issued per 2.7 cycles per scheduler.
//
// Here out^T = W x^T: 16 weight rows are an A tile, 8 of the expert's tokens an n-tile. A dot
// product does not care in which order its k terms are summed, so within a 64-wide k step lane
// (g, c) takes k 16c .. 16c+15 of its two rows g and g+8 (two 16-byte loads per row) and feeds
// them to the four k16 MMAs in the order the fragment layout (cuda_mma.cuh) gives them; the
// activations are read in the same order, from shared memory, 32 contiguous bytes per lane. So
// the weights need no shared memory, no ldmatrix and no barrier. Both steps of the next 128-k
// chunk (256 contiguous bytes per row) are in flight while the current chunk multiplies: one step
// ahead measured 7.6 ms slower over a 512-token f32 prefill (docs/performance.md, "Prefill"). The
// activations of the block's tokens come through shared memory in 128-k chunks (cp.async,
// double-buffered), shared by the block's 4 warps.
//
// A block: one expert, up to 64 of its bucket entries (a "tile"; experts with more take several
// tiles), and 64 gate + 64 up rows (dual) or 128 rows. Tiles are numbered over all experts in
// order, so the grid needs only experts + entries / 64 of them, not experts x entries / 64.
#include <cuda_bf16.h>

#include <algorithm>

#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_mma.cuh"

namespace omni {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 4, kThreads = kWarpsPerBlock * 32;
constexpr int kTokens = 64, kNTiles = kTokens / 8;  // bucket entries per tile, as n-tiles of 8
constexpr int kStep = 64;                           // k per step: 16 per lane and row
constexpr int kChunk = 128;                         // k per staged activation chunk (2 steps)
constexpr int kXLd = kChunk + 8;                    // bf16 per shared row: 272 B, rows 4 banks apart

template <bool SPLIT>
__host__ __device__ constexpr int stage_elems() {
  return (SPLIT ? 2 : 1) * kTokens * kXLd;  // hi rows, then (SPLIT) lo rows
}
template <bool SPLIT>
constexpr int smem_bytes() {
  return 2 * stage_elems<SPLIT>() * 2;
}
template <bool DUAL>
__host__ __device__ constexpr int rows_per_block() {
  return kWarpsPerBlock * (DUAL ? 16 : 32);
}

// One step's weights for one lane: [A tile][row g, g + 8][k 16c .. +7, 16c+8 .. +15].
struct StepW {
  uint4 q[2][2][2];
};
__device__ __forceinline__ uint32_t word(const uint4 (&q)[2], int w) {  // 32-bit word w of 32 bytes
  const uint4& v = q[w >> 2];
  return (w & 3) == 0 ? v.x : (w & 3) == 1 ? v.y : (w & 3) == 2 ? v.z : v.w;
}

// w[t]: row g of A tile t at lane c's first k (16c); row g + 8 is row8 elements further.
__device__ __forceinline__ void load_step(StepW& s, const uint16_t* const (&w)[2], int64_t row8, int k0) {
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 2; ++i) s.q[t][h][i] = load_stream(reinterpret_cast<const uint4*>(w[t] + h * row8 + k0) + i);
}

// acc[t][n] += W_t(16 rows) x^T(n-tile n) over one 64-wide k step at column kofs of the stage.
template <bool SPLIT>
__device__ __forceinline__ void mma_step(float (&acc)[2][kNTiles][4], const StepW& s, const uint16_t* xs, int nt,
                                         int kofs, int g, int c) {
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) {
    if (n >= nt) break;  // warp-uniform
    uint4 b[2][2];
    const uint16_t* xr = xs + (n * 8 + g) * kXLd + kofs + 16 * c;
#pragma unroll
    for (int p = 0; p < (SPLIT ? 2 : 1); ++p) {
      b[p][0] = *reinterpret_cast<const uint4*>(xr + p * kTokens * kXLd);
      b[p][1] = *reinterpret_cast<const uint4*>(xr + p * kTokens * kXLd + 8);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        const uint32_t a[4] = {word(s.q[t][0], 2 * j), word(s.q[t][1], 2 * j), word(s.q[t][0], 2 * j + 1),
                               word(s.q[t][1], 2 * j + 1)};
#pragma unroll
        for (int p = 0; p < (SPLIT ? 2 : 1); ++p) mma(acc[t][n], a, word(b[p], 2 * j), word(b[p], 2 * j + 1));
      }
  }
}

// Which expert and which 64 of its entries tile `tile` is (warp 0; -1 past the last tile).
__device__ void find_tile(const int* counts, int E, int tile, int lane, int* s_e, int* s_m0) {
  if (lane == 0) *s_e = -1;
  __syncwarp();
  int base = 0;
  for (int e0 = 0; e0 < E; e0 += 32) {
    const int e = e0 + lane;
    const int tiles = e < E ? (counts[e] + kTokens - 1) / kTokens : 0;
    int incl = tiles;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    const int first = base + incl - tiles;
    if (tile >= first && tile < first + tiles) {
      *s_e = e;
      *s_m0 = (tile - first) * kTokens;
    }
    base += __shfl_sync(0xffffffffu, incl, 31);
  }
}

// Y[entry][n] = sum_k X[entry / x_div][k] W_e[n][k] for the bucket entries of each expert e;
// DUAL: W = gate (table slot 0) and up (slot 1), Y (bf16) = silu(gate) * up; else Y is fp32.
// SPLIT: X's lo parts start x_lo elements after X, a DUAL Y's lo parts y_lo elements after Y.
// 2 blocks per SM: the accumulators (64) and two chunks of weights (128) take ~240 registers.
template <bool DUAL, bool SPLIT>
__global__ void __launch_bounds__(kThreads, 2)
    moe_mma_kernel(const void* const* table, int which, int E, const int* counts, const int* offsets, const int* list,
                   const uint16_t* X, int x_div, int N, int K, void* Y, int64_t x_lo, int64_t y_lo) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  extern __shared__ __align__(16) uint16_t xs[];  // [stage 2][part][token][kXLd]
  __shared__ int64_t xoff[kTokens];               // X element offset of each entry's row
  __shared__ int rows[kTokens];                   // each entry's output row, -1 past the tile
  __shared__ int s_e, s_m0;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  if (warp == 0) find_tile(counts, E, blockIdx.y, lane, &s_e, &s_m0);
  __syncthreads();
  const int e = s_e, m0 = s_m0;
  if (e < 0) return;
  const int ntok = min(kTokens, counts[e] - m0), nt = (ntok + 7) / 8;
  if (tid < kTokens) {
    const int ent = tid < ntok ? list[offsets[e] + m0 + tid] : -1;
    rows[tid] = ent;
    xoff[tid] = ent >= 0 ? int64_t(ent / x_div) * K : 0;
  }
  __syncthreads();

  // This warp's rows: DUAL rows n0 .. n0+15 of gate (A tile 0) and of up (tile 1); else rows
  // n0 .. n0+31 of W as tiles 0 and 1. Lane (g, c) reads rows g and g + 8 of each tile.
  const int n0 = blockIdx.x * rows_per_block<DUAL>() + warp * (DUAL ? 16 : 32);
  const bool live = n0 < N;  // the host checks N % rows per warp == 0
  const uint16_t* w[2];
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const uint16_t* W = static_cast<const uint16_t*>(table[e * 3 + (DUAL ? t : which)]);
    w[t] = W + int64_t(live ? n0 + (DUAL ? 0 : 16 * t) + g : 0) * K + 16 * c;
  }
  const int64_t row8 = int64_t(8) * K;

  // Stage k chunk ch of the tile's activations (rows past ntok are zeros, n-tiles past nt skipped).
  auto stage = [&](int ch) {
    uint16_t* st = xs + (ch & 1) * stage_elems<SPLIT>();
    for (int p = tid; p < nt * 8 * (kChunk / 8); p += kThreads) {
      const int r = p / (kChunk / 8), q = p % (kChunk / 8);
      const bool ok = r < ntok;
      const uint16_t* src = X + (ok ? xoff[r] + ch * kChunk + q * 8 : 0);
      cp_async16(st + r * kXLd + q * 8, src, ok);
      if (SPLIT) cp_async16(st + kTokens * kXLd + r * kXLd + q * 8, ok ? src + x_lo : X, ok);
    }
    cp_async_commit();
  };

  float acc[2][kNTiles][4];
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int n = 0; n < kNTiles; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[t][n][i] = 0.f;

  const int chunks = K / kChunk;
  StepW wa, wb;  // this chunk's two steps
  stage(0);
  if (live) {
    load_step(wa, w, row8, 0);
    load_step(wb, w, row8, kStep);
  }
  for (int ch = 0; ch < chunks; ++ch) {
    if (ch + 1 < chunks) stage(ch + 1);
    else cp_async_commit();  // an empty group keeps the wait count uniform
    cp_async_wait<1>();      // chunk ch has landed (this thread's copies) ...
    __syncthreads();         // ... everyone's
    const uint16_t* st = xs + (ch & 1) * stage_elems<SPLIT>();
    if (live) {
      StepW na, nb;  // the next chunk's weights fly while this chunk's multiply
      if (ch + 1 < chunks) {
        load_step(na, w, row8, (ch + 1) * kChunk);
        load_step(nb, w, row8, (ch + 1) * kChunk + kStep);
      }
      mma_step<SPLIT>(acc, wa, st, nt, 0, g, c);
      mma_step<SPLIT>(acc, wb, st, nt, kStep, g, c);
      wa = na;
      wb = nb;
    }
    __syncthreads();  // stage ch & 1 is free for chunk ch + 2
  }
  if (!live) return;

  // acc[t][n][i]: row n0 (+16 t unless DUAL) + g + 8 (i / 2), entry 8 n + 2 c + i % 2 of the tile.
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) {
    if (n >= nt) break;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int tok = 8 * n + 2 * c + (i & 1);
      if (tok >= ntok) continue;
      const int64_t at = int64_t(rows[tok]) * N + n0 + g + 8 * (i >> 1);
      if (DUAL) {
        uint16_t* y = static_cast<uint16_t*>(Y);
        uint16_t hi, lo;
        split_bf16(silu(acc[0][n][i]) * acc[1][n][i], hi, lo);
        y[at] = hi;
        if (SPLIT) y[y_lo + at] = lo;
      } else {
        float* y = static_cast<float*>(Y);
        y[at] = acc[0][n][i];
        y[at + 16] = acc[1][n][i];
      }
    }
  }
#else
  __trap();  // the host selects this kernel only on compute capability 8.0 and later
#endif
}

template <bool DUAL, bool SPLIT>
void launch_one(dim3 grid, cudaStream_t stream, const void* const* table, int which, int E, const int* counts,
                const int* offsets, const int* list, const uint16_t* X, int x_div, int N, int K, void* Y,
                int64_t x_lo, int64_t y_lo) {
  static const bool configured = [] {
    cuda_check(cudaFuncSetAttribute(moe_mma_kernel<DUAL, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    smem_bytes<SPLIT>()),
               "cudaFuncSetAttribute(moe_mma_kernel)");
    return true;
  }();
  (void)configured;
  moe_mma_kernel<DUAL, SPLIT><<<grid, kThreads, smem_bytes<SPLIT>(), stream>>>(table, which, E, counts, offsets, list,
                                                                            X, x_div, N, K, Y, x_lo, y_lo);
  cuda_check(cudaGetLastError(), DUAL ? "launch of moe_mma_kernel<gate_up>" : "launch of moe_mma_kernel<down>");
}

}  // namespace

bool grouped_gemm_mma_fits(int N, int K, bool dual) {
  return N > 0 && K > 0 && K % kChunk == 0 && N % (dual ? 16 : 32) == 0;
}

void launch_grouped_gemm_mma(bool dual, const void* const* table, int which, const int* counts, const int* offsets,
                             const int* list, const uint16_t* X, int x_div, int experts, int entries, int N, int K,
                             void* Y, cudaStream_t stream, int64_t x_lo, int64_t y_lo) {
  // Each expert's entries make ceil(count / 64) tiles: at most experts + entries / 64 in all.
  const unsigned tiles = unsigned(experts + entries / kTokens);
  const int rows = dual ? rows_per_block<true>() : rows_per_block<false>();
  const dim3 grid(unsigned((N + rows - 1) / rows), tiles);
  const bool split = x_lo != 0;
  if (dual && split) launch_one<true, true>(grid, stream, table, which, experts, counts, offsets, list, X, x_div, N, K, Y, x_lo, y_lo);
  else if (dual) launch_one<true, false>(grid, stream, table, which, experts, counts, offsets, list, X, x_div, N, K, Y, 0, 0);
  else if (split) launch_one<false, true>(grid, stream, table, which, experts, counts, offsets, list, X, x_div, N, K, Y, x_lo, 0);
  else launch_one<false, false>(grid, stream, table, which, experts, counts, offsets, list, X, x_div, N, K, Y, 0, 0);
}

}  // namespace cuda
}  // namespace omni
