// Device helpers shared by the CUDA kernels: bf16 unpacking, warp/block reductions and the
// bandwidth-bound dot product every decode GEMV is built from.
#pragma once
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

namespace omni {
namespace cuda {

constexpr int kWarp = 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float bf16_at(const uint16_t* p, int64_t i) { return __uint_as_float(uint32_t(p[i]) << 16); }
// float → bf16 bits, round to nearest even (as tensor.h's f32_to_bf16 and torch).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t b = __float_as_uint(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return uint16_t((b >> 16) | 0x40);
  b += 0x7fffu + ((b >> 16) & 1u);
  return uint16_t(b >> 16);
}
__device__ __forceinline__ float round_bf16(float f) { return __uint_as_float(uint32_t(f32_to_bf16_bits(f)) << 16); }
// v as bf16 hi + lo: hi = bf16(v), lo = bf16(v - hi), the part hi lost; hi + lo carries v to ~2^-16
// (the f32-activation GEMM inputs).
__device__ __forceinline__ void split_bf16(float v, uint16_t& hi, uint16_t& lo) {
  hi = f32_to_bf16_bits(v);
  lo = f32_to_bf16_bits(v - __uint_as_float(uint32_t(hi) << 16));
}
// The same for a pair (a, b), each part packed as two bf16 with a in the low half (mma fragments,
// 4-byte stores).
__device__ __forceinline__ void split_pack(float a, float b, uint32_t& hi, uint32_t& lo) {
  uint16_t ha, la, hb, lb;
  split_bf16(a, ha, la);
  split_bf16(b, hb, lb);
  hi = uint32_t(ha) | uint32_t(hb) << 16;
  lo = uint32_t(la) | uint32_t(lb) << 16;
}

// A 16-byte weight load that bypasses L1: weights are read once per token and would only
// evict the activations that are re-read. Plain PTX available on sm_70 and later.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b) {
  float s = bf16_lo(w.x) * a.x;
  s = fmaf(bf16_hi(w.x), a.y, s);
  s = fmaf(bf16_lo(w.y), a.z, s);
  s = fmaf(bf16_hi(w.y), a.w, s);
  s = fmaf(bf16_lo(w.z), b.x, s);
  s = fmaf(bf16_hi(w.z), b.y, s);
  s = fmaf(bf16_lo(w.w), b.z, s);
  s = fmaf(bf16_hi(w.w), b.w, s);
  return s;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `red` holds >= 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < warps ? red[lane] : 0.f;
  return warp_sum(t);
}

// Loads the U chunks base, base + 32, ... of a weight row (zeros past its end).
template <int U>
__device__ __forceinline__ void load_chunks(const uint4* w4, int base, int chunks, uint4 (&wv)[U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + u * kWarp;
    wv[u] = c < chunks ? load_stream(w4 + c) : make_uint4(0, 0, 0, 0);
  }
}

// Partial dot product of one bf16 row w[0:K] with fp32 x[0:K] for this lane (K % 8 == 0, both
// 16-byte aligned): lanes take 8-element chunks lane, lane+32, ...; U chunks are loaded before
// any is used so that U 16-byte loads per lane are in flight. Sum over the warp with warp_sum.
template <int U>
__device__ __forceinline__ float lane_dot(const uint16_t* w, const float* x, int K, int lane) {
  const uint4* w4 = reinterpret_cast<const uint4*>(w);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int chunks = K >> 3;
  float acc = 0.f;
  for (int base = lane; base < chunks; base += kWarp * U) {
    uint4 wv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      wv[u] = c < chunks ? load_stream(w4 + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      if (c < chunks) acc += dot8(wv[u], __ldg(x4 + 2 * c), __ldg(x4 + 2 * c + 1));
    }
  }
  return acc;
}

// The same for two rows sharing x (gate and up of one expert): 2U loads in flight.
template <int U>
__device__ __forceinline__ void lane_dot2(const uint16_t* w0, const uint16_t* w1, const float* x, int K, int lane,
                                          float& acc0, float& acc1) {
  const uint4* a4 = reinterpret_cast<const uint4*>(w0);
  const uint4* b4 = reinterpret_cast<const uint4*>(w1);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int chunks = K >> 3;
  for (int base = lane; base < chunks; base += kWarp * U) {
    uint4 av[U], bv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      av[u] = c < chunks ? load_stream(a4 + c) : make_uint4(0, 0, 0, 0);
      bv[u] = c < chunks ? load_stream(b4 + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      if (c < chunks) {
        const float4 xa = __ldg(x4 + 2 * c), xb = __ldg(x4 + 2 * c + 1);
        acc0 += dot8(av[u], xa, xb);
        acc1 += dot8(bv[u], xa, xb);
      }
    }
  }
}

__device__ __forceinline__ float silu(float v) { return v / (1.f + __expf(-v)); }
__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_tanh(float v) {
  return 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}
// Activation codes of the kernels: 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh, Activation::GELUTanh).
__device__ __forceinline__ float activate(float v, int act) {
  return act == 1 ? silu(v) : act == 2 ? gelu_erf(v) : act == 3 ? gelu_tanh(v) : v;
}

// Programmatic dependent launch (sm_90+; no-ops elsewhere and when launched without the
// attribute). Every decode kernel lets the next kernel in the stream launch at once
// (launch_dependents) and waits for its predecessor's results (wait) only right before
// reading them, so weight loads that depend on nothing overlap the previous kernel's tail.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Pulls [p, p + bytes) toward L2 (one hint per 128-byte line, spread over the warp's lanes).
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes, int lane) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = int64_t(lane) * 128; off < bytes; off += 32 * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < warps ? red[lane] : -INFINITY;
  return warp_max(t);
}

// Multi-segment GEMVs (GemvArgs, QGemvArgs: up to three matrices sharing x, a.seg[0 .. a.nseg)):
// the segment holding global output row `row`, which is rewritten as the row inside it.
// Constant indices only: a run-time index into the parameter struct would copy it to local memory.
template <class Args, class Segment>
__device__ __forceinline__ bool locate_segment(const Args& a, int& row, Segment& g) {
  if (row < a.seg[0].n) {
    g = a.seg[0];
    return true;
  }
  row -= a.seg[0].n;
  if (a.nseg > 1 && row < a.seg[1].n) {
    g = a.seg[1];
    return true;
  }
  row -= a.nseg > 1 ? a.seg[1].n : 0;
  if (a.nseg > 2 && row < a.seg[2].n) {
    g = a.seg[2];
    return true;
  }
  return false;
}

// Device error flags (checked by the host at the next synchronizing call).
constexpr int kFlagBadToken = 1;
constexpr int kFlagBadPosition = 2;

}  // namespace cuda
}  // namespace omni
