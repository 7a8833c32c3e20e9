// Prefill attention on the tensor cores (mma.sync m16n8k16 bf16 -> fp32, compute capability 8.0
// and later: sm_87, sm_90 and sm_110 alike), flash-attention style: a block of 4 warps owns 64
// query rows of one head, each warp 16 rows end to end; keys stream through shared memory in
// tiles of 64. Per tile a warp computes S = Q K^T (16 x 64) into registers, masks it by each
// row's key range, updates the online softmax there, and adds P V into its 16 x hd output
// accumulators, reusing S's registers as P's A fragments (the C layout of m16n8 is the A layout
// of m16k16). The fp32 tile kernel (cuda_attention.cu) spent 226 us per thinker layer at 512
// tokens on the same work in FMA.
//
// Precision. Without split every operand is rounded to bf16 once. With split (f32 activations)
// each operand x goes as hi = bf16(x) and lo = bf16(x - hi), and a product is hi*hi + hi*lo +
// lo*hi (lo*lo is below fp32 rounding): ~2^-16 relative, what the fp32 reference computes to a
// few 1e-6. K/V read from a bf16 cache have lo = 0 (exact).
#include <cuda_bf16.h>

#include "cuda/cuda_attention.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_mma.cuh"

namespace omni {
namespace cuda {
namespace {

constexpr int kRows = 64, kKeys = 64, kWarps = 4, kThreads = kWarps * 32;

template <int HD>
__host__ __device__ constexpr int row_ld() {
  return HD + 8;  // bf16 per shared row: 16-B aligned rows 4 banks apart (conflict-free ldmatrix)
}
template <int HD, bool SPLIT>
__host__ __device__ constexpr int smem_bytes() {
  return (SPLIT ? 4 : 2) * kKeys * row_ld<HD>() * 2;  // K hi [lo], V hi [lo]
}

template <bool TRANS>
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint16_t* p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
#endif
}

// Keys [k0, k0 + kKeys) of kv head kvh into shared memory as bf16 hi (and lo) rows; zeros past
// kmax (those keys are masked, the zeros keep NaNs out of P V). A thread's loads go in batches of
// kBatch pieces, all issued before any is converted: one memory round trip per batch, not per
// piece (the tile is 16 pieces per thread at hd 128; one at a time, they made this the kernel's
// critical path).
template <int HD, bool SPLIT>
__device__ __forceinline__ void load_tile(const TileArgs& a, int k0, int kmax, int kvh, uint16_t* kh, uint16_t* kl,
                                          uint16_t* vh, uint16_t* vl) {
  constexpr int LD = row_ld<HD>(), Q4 = HD / 4, kPieces = kKeys * Q4 / kThreads, kBatch = 4;
  static_assert(kPieces % kBatch == 0, "tile pieces per thread");
#pragma unroll 1
  for (int b0 = 0; b0 < kPieces; b0 += kBatch) {
    float4 kf[kBatch], vf[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = threadIdx.x + (b0 + u) * kThreads, j = i / Q4, d = (i - j * Q4) * 4, key = k0 + j;
      kf[u] = vf[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (key > kmax) continue;
      const int64_t off = (int64_t(key) * a.hkv + kvh) * HD + d;
      if (a.kv_bf16) {
        const uint2 kb = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.k) + off);
        const uint2 vb = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.v) + off);
        kf[u] = make_float4(bf16_lo(kb.x), bf16_hi(kb.x), bf16_lo(kb.y), bf16_hi(kb.y));
        vf[u] = make_float4(bf16_lo(vb.x), bf16_hi(vb.x), bf16_lo(vb.y), bf16_hi(vb.y));
      } else {
        kf[u] = *reinterpret_cast<const float4*>(static_cast<const float*>(a.k) + off);
        vf[u] = *reinterpret_cast<const float4*>(static_cast<const float*>(a.v) + off);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = threadIdx.x + (b0 + u) * kThreads, j = i / Q4, d = (i - j * Q4) * 4;
      uint2 khi, klo, vhi, vlo;
      split_pack(kf[u].x, kf[u].y, khi.x, klo.x);
      split_pack(kf[u].z, kf[u].w, khi.y, klo.y);
      split_pack(vf[u].x, vf[u].y, vhi.x, vlo.x);
      split_pack(vf[u].z, vf[u].w, vhi.y, vlo.y);
      *reinterpret_cast<uint2*>(kh + j * LD + d) = khi;
      *reinterpret_cast<uint2*>(vh + j * LD + d) = vhi;
      if (SPLIT) {
        *reinterpret_cast<uint2*>(kl + j * LD + d) = klo;
        *reinterpret_cast<uint2*>(vl + j * LD + d) = vlo;
      }
    }
  }
}

template <int HD, bool SPLIT>
__global__ void __launch_bounds__(kThreads) attention_mma_kernel(TileArgs a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  constexpr int LD = row_ld<HD>(), KS = HD / 16 /* k-steps of Q K^T */, NT = kKeys / 8 /* key n-tiles */,
                DT = HD / 8 /* output n-tiles */;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* kh = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* vh = kh + kKeys * LD;
  uint16_t* kl = vh + kKeys * LD;  // SPLIT only
  uint16_t* vl = kl + kKeys * LD;
  __shared__ int rlo[kRows], rhi[kRows];
  const int r0 = blockIdx.x * kRows, h = blockIdx.y, kvh = h / (a.hq / a.hkv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  int kmin, kmax;
  block_key_ranges<kRows>(a, r0, rlo, rhi, kmin, kmax);
  // This thread's two rows: g and g + 8 of the warp's 16.
  const int wr = warp * 16;
  int lo[2], hi[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    lo[i] = rlo[wr + g + 8 * i];
    hi[i] = rhi[wr + g + 8 * i];
  }
  // Q as A fragments (scaled by 1/sqrt(hd) first): a0 (row g, cols 2t..), a1 (g+8, 2t..),
  // a2 (g, 2t+8..), a3 (g+8, 2t+8..) of each 16-column k-step.
  uint32_t qh[KS][4], ql[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks)
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      const int row = r0 + wr + g + 8 * (f & 1), col = ks * 16 + 2 * t + 8 * (f >> 1);
      float2 v = make_float2(0.f, 0.f);
      if (row < a.S) v = *reinterpret_cast<const float2*>(a.q + (int64_t(row) * a.hq + h) * HD + col);
      split_pack(v.x * a.scale, v.y * a.scale, qh[ks][f], ql[ks][f]);
    }
  float o[DT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int n = 0; n < DT; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) o[n][c] = 0.f;

  for (int k0 = kmin; k0 <= kmax; k0 += kKeys) {
    __syncthreads();  // the previous tile is consumed
    load_tile<HD, SPLIT>(a, k0, kmax, kvh, kh, kl, vh, vl);
    __syncthreads();
    // S = Q K^T: n-tile j covers keys k0 + 8j ..; one ldmatrix.x4 gives b0/b1 of two k-steps.
    float s[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[j][c] = 0.f;
      const int krow = 8 * j + (lane & 7), kcol = 8 * (lane >> 3);
#pragma unroll
      for (int ks = 0; ks < KS; ks += 2) {
        uint32_t bh[4];
        ldsm_x4<false>(bh, kh + krow * LD + ks * 16 + kcol);
        mma(s[j], qh[ks], bh[0], bh[1]);
        mma(s[j], qh[ks + 1], bh[2], bh[3]);
        if (SPLIT) {
          uint32_t bl[4];
          ldsm_x4<false>(bl, kl + krow * LD + ks * 16 + kcol);
          mma(s[j], qh[ks], bl[0], bl[1]);
          mma(s[j], qh[ks + 1], bl[2], bl[3]);
          mma(s[j], ql[ks], bh[0], bh[1]);
          mma(s[j], ql[ks + 1], bh[2], bh[3]);
        }
      }
    }
    // Mask by each row's key range; online softmax per row (the 4 lanes of a quad share a row).
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = k0 + 8 * j + 2 * t + c;
          float& v = s[j][2 * i + c];
          if (key < lo[i] || key > hi[i]) v = -INFINITY;
          mx = fmaxf(mx, v);
        }
      mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
      const float mn = fmaxf(m[i], mx);
      corr[i] = mn == -INFINITY ? 1.f : __expf(m[i] - mn);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& v = s[j][2 * i + c];
          v = mn == -INFINITY ? 0.f : __expf(v - mn);
          sum += v;
        }
      sum += __shfl_xor_sync(kFull, sum, 1);
      sum += __shfl_xor_sync(kFull, sum, 2);
      l[i] = l[i] * corr[i] + sum;
      m[i] = mn;
    }
#pragma unroll
    for (int n = 0; n < DT; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
    // O += P V: k-step kk covers keys 16kk ..; P's A fragment is S n-tiles 2kk and 2kk + 1.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t ph[4], pl[4];
      split_pack(s[2 * kk][0], s[2 * kk][1], ph[0], pl[0]);
      split_pack(s[2 * kk][2], s[2 * kk][3], ph[1], pl[1]);
      split_pack(s[2 * kk + 1][0], s[2 * kk + 1][1], ph[2], pl[2]);
      split_pack(s[2 * kk + 1][2], s[2 * kk + 1][3], ph[3], pl[3]);
      const int vrow = 16 * kk + (lane & 7) + 8 * ((lane >> 3) & 1), vcol = 8 * (lane >> 4);
#pragma unroll
      for (int n = 0; n < DT; n += 2) {  // one ldmatrix.x4.trans: b0/b1 of output n-tiles n, n + 1
        uint32_t bh[4];
        ldsm_x4<true>(bh, vh + vrow * LD + n * 8 + vcol);
        mma(o[n], ph, bh[0], bh[1]);
        mma(o[n + 1], ph, bh[2], bh[3]);
        if (SPLIT) {
          uint32_t bl[4];
          ldsm_x4<true>(bl, vl + vrow * LD + n * 8 + vcol);
          mma(o[n], ph, bl[0], bl[1]);
          mma(o[n + 1], ph, bl[2], bl[3]);
          mma(o[n], pl, bh[0], bh[1]);
          mma(o[n + 1], pl, bh[2], bh[3]);
        }
      }
    }
  }
  // Output rows g and g + 8: columns 8n + 2t, + 1.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = r0 + wr + g + 8 * i;
    if (row >= a.S) continue;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    float* dst = a.out + (int64_t(row) * a.hq + h) * HD + 2 * t;
#pragma unroll
    for (int n = 0; n < DT; ++n)
      *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
  }
#else
  __trap();  // the host selects this kernel only on compute capability 8.0 and later
#endif
}

template <int HD, bool SPLIT>
void launch_one(const TileArgs& a, cudaStream_t stream) {
  static const bool configured = [] {
    cuda_check(cudaFuncSetAttribute(attention_mma_kernel<HD, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    smem_bytes<HD, SPLIT>()),
               "cudaFuncSetAttribute(attention_mma_kernel)");
    return true;
  }();
  (void)configured;
  const dim3 grid(unsigned((a.S + kRows - 1) / kRows), unsigned(a.hq));
  attention_mma_kernel<HD, SPLIT><<<grid, kThreads, smem_bytes<HD, SPLIT>(), stream>>>(a);
  cuda_check(cudaGetLastError(), "launch of attention_mma_kernel");
}

}  // namespace

bool attention_mma_fits(int hd) { return hd == 64 || hd == 128; }

void launch_attention_mma(const TileArgs& a, bool split, cudaStream_t stream) {
  if (a.hd == 128 && split) launch_one<128, true>(a, stream);
  else if (a.hd == 128) launch_one<128, false>(a, stream);
  else if (split) launch_one<64, true>(a, stream);
  else launch_one<64, false>(a, stream);
}

}  // namespace cuda
}  // namespace omni
