// Quantized weights on the GPU (formats: quant.h): quantization at load time, decode GEMVs and
// MoE expert kernels that dequantize in registers, and dequantization to a bf16 buffer for
// prefill (which then runs the bf16 GEMM paths).
//
// Dequantizing without int->float conversions (a quarter-rate instruction): a byte or nibble
// b, made unsigned by flipping its sign bit (q + 128 or q + 8), is placed in the low mantissa
// bits of 2^23 by one PRMT; that float minus (2^23 + 128) or (2^23 + 8) is q exactly. One PRMT,
// one FADD and one FFMA per weight (Q4: plus two mask operations per 8 weights).
#include <cuda_fp16.h>

#include <cstdlib>
#include <string>

#include "quant.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_quant.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kQWarps = 8;  // warps per block

// ---- quantization (must equal quant.cpp bit for bit) ----

__device__ __forceinline__ uint16_t scale_bits(float absmax, int qmax) {
  return __half_as_ushort(__float2half_rn(__fdiv_rn(absmax, float(qmax))));
}
__device__ __forceinline__ float half_bits(uint16_t b) { return __half2float(__ushort_as_half(b)); }
__device__ __forceinline__ int quant_value(float w, float s, int qmax) {
  if (s == 0.f) return 0;
  const float r = rintf(__fdiv_rn(w, s));
  return int(fminf(float(qmax), fmaxf(float(-qmax - 1), r)));
}

// One block per row: the row's absmax, its scale, then the bytes (zeros past K).
__global__ void quantize_q8_kernel(const uint16_t* src, int64_t K, int64_t row_bytes, int8_t* dst,
                                   uint16_t* scales) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const uint16_t* w = src + n * K;
  float m = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(bf16_at(w, k)));
  m = block_max(m, red);
  const uint16_t sb = scale_bits(m, 127);
  const float s = half_bits(sb);
  if (threadIdx.x == 0) scales[n] = sb;
  for (int64_t k = threadIdx.x; k < row_bytes; k += blockDim.x)
    dst[n * row_bytes + k] = int8_t(k < K ? quant_value(bf16_at(w, k), s, 127) : 0);
}

// One warp per (row, group of 128): lane l quantizes elements 4l..4l+3 of the group.
__global__ void quantize_q4_kernel(const uint16_t* src, int64_t N, int64_t K, int64_t groups, int64_t row_bytes,
                                   uint8_t* dst, uint16_t* scales) {
  const int lane = threadIdx.x & 31;
  const int64_t gw = int64_t(blockIdx.x) * kQWarps + (threadIdx.x >> 5);
  if (gw >= N * groups) return;
  const int64_t n = gw / groups, g = gw % groups, k0 = g * kQ4Group + 4 * lane;
  float v[4], m = 0.f;
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    v[t] = k0 + t < K ? bf16_at(src, n * K + k0 + t) : 0.f;
    m = fmaxf(m, fabsf(v[t]));
  }
  m = warp_max(m);
  const uint16_t sb = scale_bits(m, 7);
  const float s = half_bits(sb);
  if (lane == 0) scales[n * groups + g] = sb;
  if (k0 >= row_bytes * 2) return;  // past the row's padding
  unsigned packed = 0;
#pragma unroll
  for (int t = 0; t < 4; ++t) packed |= unsigned(k0 + t < K ? quant_value(v[t], s, 7) : 0) << (4 * t) & (0xfu << (4 * t));
  *reinterpret_cast<uint16_t*>(dst + n * row_bytes + k0 / 2) = uint16_t(packed);
}

__global__ void synthetic_rows_kernel(uint16_t* out, int64_t n, int64_t first, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f32_to_bf16_bits(scale * synthetic_value(seed, uint64_t(first + i)));
}

// ---- dequantization in registers ----

// 16 bytes of Q8 (16 weights) . x[0..16), unscaled.
__device__ __forceinline__ float dot_chunk_q8(uint4 w, const float4 (&x)[4]) {
  const uint32_t words[4] = {w.x ^ 0x80808080u, w.y ^ 0x80808080u, w.z ^ 0x80808080u, w.w ^ 0x80808080u};
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 xv = x[i];
    const float xs[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const float q = __int_as_float(int(__byte_perm(words[i], 0x4B000000u, 0x7440u + b))) - 8388736.f;
      s = fmaf(q, xs[b], s);
    }
  }
  return s;
}

// 16 bytes of Q4 (32 weights) . x[0..32), unscaled. Per 32-bit word (8 weights): the even
// nibbles (low halves of the bytes) and the odd ones are split into bytes with two masks, then
// each byte goes into the magic float with one PRMT as for Q8.
__device__ __forceinline__ float dot_chunk_q4(uint4 w, const float4 (&x)[8]) {
  const uint32_t words[4] = {w.x ^ 0x88888888u, w.y ^ 0x88888888u, w.z ^ 0x88888888u, w.w ^ 0x88888888u};
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t even = words[i] & 0x0f0f0f0fu, odd = (words[i] >> 4) & 0x0f0f0f0fu;
    const float4 xa = x[2 * i], xb = x[2 * i + 1];
    const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const float q0 = __int_as_float(int(__byte_perm(even, 0x4B000000u, 0x7440u + b))) - 8388616.f;
      const float q1 = __int_as_float(int(__byte_perm(odd, 0x4B000000u, 0x7440u + b))) - 8388616.f;
      s = fmaf(q0, xs[2 * b], s);
      s = fmaf(q1, xs[2 * b + 1], s);
    }
  }
  return s;
}

template <DType F>
struct Fmt {
  static constexpr int kElems = F == DType::Q4 ? 32 : 16;  // weights per 16-byte chunk
  static constexpr int kX4 = kElems / 4;                   // float4 of x per chunk
};

// U chunks per lane (c = base, base + 32, ...) of NR rows sharing x, loaded before any is used
// so that U * NR 16-byte loads per lane are in flight; Q4 also loads each chunk's group scale.
template <DType F, int NR, int U>
struct QBatch {
  uint4 w[U][NR];
  float s[U][NR];
};

template <DType F, int NR, int U>
__device__ __forceinline__ void qload(QBatch<F, NR, U>& b, const uint8_t* const (&w)[NR],
                                      const uint16_t* const (&s)[NR], int base, int chunks) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + u * kWarp;
#pragma unroll
    for (int i = 0; i < NR; ++i) {
      b.w[u][i] = c < chunks ? load_stream(reinterpret_cast<const uint4*>(w[i]) + c) : make_uint4(0, 0, 0, 0);
      if constexpr (F == DType::Q4) b.s[u][i] = c < chunks ? half_bits(__ldg(s[i] + (c >> 2))) : 0.f;
    }
  }
}

// acc[i] += the batch's chunks of row i . the matching pieces of x (Q8's per-row scale is
// applied by finish_rows). K % kElems == 0.
template <DType F, int NR, int U>
__device__ __forceinline__ void qapply(const QBatch<F, NR, U>& b, const float* x, int base, int chunks,
                                       float (&acc)[NR]) {
  constexpr int E4 = Fmt<F>::kX4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + u * kWarp;
    if (c < chunks) {
      float4 xv[E4];
#pragma unroll
      for (int t = 0; t < E4; ++t) xv[t] = __ldg(x4 + c * E4 + t);
#pragma unroll
      for (int i = 0; i < NR; ++i) {
        if constexpr (F == DType::Q4) acc[i] = fmaf(dot_chunk_q4(b.w[u][i], xv), b.s[u][i], acc[i]);
        else acc[i] += dot_chunk_q8(b.w[u][i], xv);
      }
    }
  }
}

// acc[i] += row_i . x over all chunks (batches of U per lane).
template <DType F, int NR, int U>
__device__ __forceinline__ void qdot_rows(const uint8_t* const (&w)[NR], const uint16_t* const (&s)[NR],
                                          const float* x, int chunks, int lane, float (&acc)[NR]) {
  for (int base = lane; base < chunks; base += kWarp * U) {
    QBatch<F, NR, U> b;
    qload<F, NR, U>(b, w, s, base, chunks);
    qapply<F, NR, U>(b, x, base, chunks, acc);
  }
}

// The finished dot products of NR rows (after qdot_rows): warp sums, Q8 row scales.
template <DType F, int NR>
__device__ __forceinline__ void finish_rows(const uint16_t* const (&s)[NR], float (&acc)[NR]) {
#pragma unroll
  for (int i = 0; i < NR; ++i) {
    acc[i] = warp_sum(acc[i]);
    if constexpr (F == DType::Q8) acc[i] *= half_bits(__ldg(s[i]));
  }
}

__device__ __forceinline__ float dequant_at(DType f, const uint8_t* row, const uint16_t* s, int k) {
  if (f == DType::Q8) return float(int8_t(row[k])) * half_bits(s[0]);
  const int nib = (row[k >> 1] >> ((k & 1) * 4)) & 0xf;
  return float(nib >= 8 ? nib - 16 : nib) * half_bits(s[k / kQ4Group]);
}

// One warp per RW consecutive output rows of one segment (RW = 2 when every segment has an even
// row count): x is loaded once per chunk for both rows. The first batch of weights (the whole
// row for K = 2048) depends on no earlier kernel and is loaded before pdl_wait, so its DRAM
// round trip overlaps the previous kernel. Input rows are taken one after another (the weights
// of rows > 0 come again from L2).
template <DType F, int RW, int U>
__global__ void __launch_bounds__(kQWarps * kWarp, 3) qgemv_kernel(QGemvArgs a) {
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  int row = (blockIdx.x * kQWarps + (threadIdx.x >> 5)) * RW;
  QGemvSegment g;
  if (!locate_segment(a, row, g)) return;
  const int64_t rb = quant_row_bytes(F, a.K), groups = quant_groups(F, a.K);
  const uint8_t* w[RW];
  const uint16_t* s[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) {
    w[i] = g.w + (row + i) * rb;
    s[i] = g.scales + (row + i) * groups;
  }
  const int chunks = int(rb / 16);
  QBatch<F, RW, U> first;
  qload<F, RW, U>(first, w, s, lane, chunks);
  if (chunks > kWarp * U && rb * g.n <= (int64_t(32) << 20))  // the rest of the rows toward L2
    prefetch_l2(w[0] + kWarp * U * 16, (rb - kWarp * U * 16) + (RW - 1) * rb, lane);
  pdl_wait();
  // Input row 0 starts from the hoisted batch (peeled, so that the batch is dead afterwards).
  float acc[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) acc[i] = 0.f;
  qapply<F, RW, U>(first, a.x, lane, chunks, acc);
  for (int r = 0; r < a.rows; ++r) {
    const float* xr = a.x + int64_t(r) * a.K;
    for (int base = r == 0 ? lane + kWarp * U : lane; base < chunks; base += kWarp * U) {
      QBatch<F, RW, U> b;
      qload<F, RW, U>(b, w, s, base, chunks);
      qapply<F, RW, U>(b, xr, base, chunks, acc);
    }
    finish_rows<F, RW>(s, acc);
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < RW; ++i)
        g.y[int64_t(r) * g.n + row + i] = activate(acc[i] + (g.bias ? bf16_at(g.bias, row + i) : 0.f), a.act);
    }
#pragma unroll
    for (int i = 0; i < RW; ++i) acc[i] = 0.f;
  }
}

// Large single matrices with one input row (lm_head: 76032 row pairs): each warp takes row pairs
// p, p + stride, ... and loads the next pair's weights before computing the current pair, so
// that loads and arithmetic overlap within each warp instead of alternating in waves. The whole
// row must fit one batch (K = 2048).
template <DType F, int U>
__global__ void __launch_bounds__(kQWarps * kWarp, 2) qgemv_stream_kernel(QGemvArgs a) {
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  const QGemvSegment g = a.seg[0];
  const int pairs = g.n / 2, stride = gridDim.x * kQWarps;
  int p = blockIdx.x * kQWarps + (threadIdx.x >> 5);
  if (p >= pairs) return;
  const int64_t rb = quant_row_bytes(F, a.K), groups = quant_groups(F, a.K);
  const int chunks = int(rb / 16);
  const uint8_t* w[2] = {g.w + 2 * p * rb, g.w + (2 * p + 1) * rb};
  const uint16_t* s[2] = {g.scales + 2 * p * groups, g.scales + (2 * p + 1) * groups};
  QBatch<F, 2, U> cur;
  qload<F, 2, U>(cur, w, s, lane, chunks);
  pdl_wait();
  for (; p < pairs; p += stride) {
    const int q = p + stride < pairs ? p + stride : p;
    const uint8_t* wn[2] = {g.w + 2 * q * rb, g.w + (2 * q + 1) * rb};
    const uint16_t* sn[2] = {g.scales + 2 * q * groups, g.scales + (2 * q + 1) * groups};
    QBatch<F, 2, U> next;
    qload<F, 2, U>(next, wn, sn, lane, q == p ? 0 : chunks);  // nothing to load after the last pair
    float acc[2] = {0.f, 0.f};
    qapply<F, 2, U>(cur, a.x, lane, chunks, acc);
    finish_rows<F, 2>(s, acc);
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < 2; ++i)
        g.y[2 * p + i] = activate(acc[i] + (g.bias ? bf16_at(g.bias, 2 * p + i) : 0.f), a.act);
    }
    cur = next;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      w[i] = wn[i];
      s[i] = sn[i];
    }
  }
}

// Any K (rows not a whole number of chunks, e.g. the tiny test models): scalar dequantization.
template <DType F>
__global__ void qgemv_scalar_kernel(QGemvArgs a) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31;
  int row = blockIdx.x * kQWarps + (threadIdx.x >> 5);
  QGemvSegment g;
  if (!locate_segment(a, row, g)) return;
  const uint8_t* w = g.w + row * quant_row_bytes(F, a.K);
  const uint16_t* s = g.scales + row * quant_groups(F, a.K);
  for (int r = 0; r < a.rows; ++r) {
    float acc = 0.f;
    for (int k = lane; k < a.K; k += kWarp) acc += dequant_at(F, w, s, k) * a.x[int64_t(r) * a.K + k];
    acc = warp_sum(acc);
    if (lane == 0) g.y[int64_t(r) * g.n + row] = activate(acc + (g.bias ? bf16_at(g.bias, row) : 0.f), a.act);
  }
}

// Dequantizes matrices to bf16: matrix m (grid y) of `count` is table[m] with scales stable[m]
// ([N, K] where K = m % 3 == 2 ? k_down : k_other for expert tables; one matrix: k_other),
// written to dst + m * N * K. Thread per 8 consecutive weights of a row when K % 8 == 0.
struct DequantArgs {
  const void* const* table = nullptr;   // device [count]: data (expert layers: [E][3])
  const void* const* stable = nullptr;  // device [count]: scales
  const uint8_t* w = nullptr;           // one matrix (table == null)
  const uint16_t* s = nullptr;
  int64_t N = 0;
  int k_other = 0, k_down = 0;  // K of matrices m % 3 != 2 and == 2 (expert tables)
  uint16_t* dst = nullptr;
  const void** dst_table = nullptr;  // optional: dst_table[m] = this matrix's bf16 copy
};

template <DType F>
__global__ void dequant_kernel(DequantArgs a) {
  const int m = blockIdx.y;
  const int K = a.table && m % 3 == 2 ? a.k_down : a.k_other;
  const int64_t N = a.table && m % 3 == 2 ? int64_t(a.k_other) * a.N / a.k_down : a.N;  // same numel
  const uint8_t* w = a.table ? static_cast<const uint8_t*>(a.table[m]) : a.w;
  const uint16_t* s = a.table ? static_cast<const uint16_t*>(a.stable[m]) : a.s;
  uint16_t* dst = a.dst + int64_t(m) * N * K;
  if (a.dst_table && blockIdx.x == 0 && threadIdx.x == 0) a.dst_table[m] = dst;
  const int64_t rb = quant_row_bytes(F, K), groups = quant_groups(F, K);
  constexpr int E = Fmt<F>::kElems;
  if (K % E == 0) {  // a thread per 16-byte chunk: E weights in, E bf16 out
    for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < N * K / E;
         u += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = u * E, n = e / K;
      const int k = int(e % K);
      const uint4 c = load_stream(reinterpret_cast<const uint4*>(w + n * rb + (F == DType::Q4 ? k / 2 : k)));
      const float sc = half_bits(s[n * groups + (F == DType::Q4 ? k / kQ4Group : 0)]);
      const uint32_t words[4] = {c.x, c.y, c.z, c.w};
      uint32_t out[E / 2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (F == DType::Q4) {
          const uint32_t v = words[i] ^ 0x88888888u, even = v & 0x0f0f0f0fu, odd = (v >> 4) & 0x0f0f0f0fu;
#pragma unroll
          for (int b = 0; b < 4; ++b) {
            const float q0 = __int_as_float(int(__byte_perm(even, 0x4B000000u, 0x7440u + b))) - 8388616.f;
            const float q1 = __int_as_float(int(__byte_perm(odd, 0x4B000000u, 0x7440u + b))) - 8388616.f;
            out[i * 4 + b] = uint32_t(f32_to_bf16_bits(q0 * sc)) | uint32_t(f32_to_bf16_bits(q1 * sc)) << 16;
          }
        } else {
          const uint32_t v = words[i] ^ 0x80808080u;
#pragma unroll
          for (int b = 0; b < 2; ++b) {
            const float q0 = __int_as_float(int(__byte_perm(v, 0x4B000000u, 0x7440u + 2 * b))) - 8388736.f;
            const float q1 = __int_as_float(int(__byte_perm(v, 0x4B000000u, 0x7441u + 2 * b))) - 8388736.f;
            out[i * 2 + b] = uint32_t(f32_to_bf16_bits(q0 * sc)) | uint32_t(f32_to_bf16_bits(q1 * sc)) << 16;
          }
        }
      }
      uint4* d4 = reinterpret_cast<uint4*>(dst + e);
#pragma unroll
      for (int t = 0; t < E / 8; ++t) d4[t] = make_uint4(out[4 * t], out[4 * t + 1], out[4 * t + 2], out[4 * t + 3]);
    }
    return;
  }
  const bool vec = K % 8 == 0;
  const int64_t units = vec ? N * K / 8 : N * K;
  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units; u += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = vec ? u * 8 : u, n = e / K;
    const int k = int(e % K);
    const uint8_t* row = w + n * rb;
    const uint16_t* rs = s + n * groups;
    if (vec) {
      uint32_t out[4];
#pragma unroll
      for (int t = 0; t < 4; ++t)
        out[t] = uint32_t(f32_to_bf16_bits(dequant_at(F, row, rs, k + 2 * t))) |
                 uint32_t(f32_to_bf16_bits(dequant_at(F, row, rs, k + 2 * t + 1))) << 16;
      *reinterpret_cast<uint4*>(dst + e) = make_uint4(out[0], out[1], out[2], out[3]);
    } else {
      dst[e] = f32_to_bf16_bits(dequant_at(F, row, rs, k));
    }
  }
}

// ---- MoE decode over quantized experts (the router is the bf16 one of cuda_moe.cu) ----

struct QExperts {
  const void* const* ptrs = nullptr;    // [k][3] the selected experts' data (written by the router)
  const void* const* stable = nullptr;  // [E][3] scales
  const int* sel = nullptr;             // [k] expert ids
  const float* selw = nullptr;          // [k] routing weights
  int count = 0, H = 0, I = 0;
};

// act[j][i] = silu(gate_j x)[i] * (up_j x)[i]; one warp per (j, i pair): four rows share x.
// MinBlocks 3 (<= 80 registers; the thinker's 384 blocks in one wave, Q8 spills 96 bytes) or 2
// (no cap: 92 / 114 registers), chosen by CudaTuning::qgateup_min_blocks.
template <DType F, int MinBlocks>
__global__ void __launch_bounds__(kQWarps * kWarp, MinBlocks) qgateup_kernel(QExperts e, const float* x, float* act) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, gw = blockIdx.x * kQWarps + (threadIdx.x >> 5);
  const int pairs = e.I / 2, j = gw / pairs, i = (gw % pairs) * 2;
  if (j >= e.count) return;
  const int64_t rb = quant_row_bytes(F, e.H), groups = quant_groups(F, e.H);
  const int ex = e.sel[j];
  const uint8_t* gate = static_cast<const uint8_t*>(e.ptrs[j * 3 + 0]) + i * rb;
  const uint8_t* up = static_cast<const uint8_t*>(e.ptrs[j * 3 + 1]) + i * rb;
  const uint16_t* gs = static_cast<const uint16_t*>(e.stable[ex * 3 + 0]) + i * groups;
  const uint16_t* us = static_cast<const uint16_t*>(e.stable[ex * 3 + 1]) + i * groups;
  const uint8_t* const w[4] = {gate, gate + rb, up, up + rb};
  const uint16_t* const s[4] = {gs, gs + groups, us, us + groups};
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  qdot_rows<F, 4, 2>(w, s, x, int(rb / 16), lane, acc);  // Q4, H = 2048: the whole rows at once
  finish_rows<F, 4>(s, acc);
  if (lane == 0) {
    act[j * e.I + i] = silu(acc[0]) * acc[2];
    act[j * e.I + i + 1] = silu(acc[1]) * acc[3];
  }
}

// out[h] = sum_j w_j (down_j act_j)[h] for h = 4 * blockIdx.x + {0..3}: warp q takes experts
// q, q + 8, ...; the per-warp sums are added in warp order (deterministic).
template <DType F>
__global__ void __launch_bounds__(kQWarps * kWarp, 3) qdown_kernel(QExperts e, const float* act, float* out) {
  constexpr int NR = 4, U = F == DType::Q4 ? 1 : 2;  // I = 768: the whole rows at once
  __shared__ float part[kQWarps][NR];
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, h = blockIdx.x * NR;
  const int64_t rb = quant_row_bytes(F, e.I), groups = quant_groups(F, e.I);
  float sum[NR] = {};
  for (int j = warp; j < e.count; j += kQWarps) {
    const uint8_t* d = static_cast<const uint8_t*>(e.ptrs[j * 3 + 2]) + h * rb;
    const uint16_t* ds = static_cast<const uint16_t*>(e.stable[e.sel[j] * 3 + 2]) + h * groups;
    const uint8_t* const w[NR] = {d, d + rb, d + 2 * rb, d + 3 * rb};
    const uint16_t* const s[NR] = {ds, ds + groups, ds + 2 * groups, ds + 3 * groups};
    float acc[NR] = {};
    qdot_rows<F, NR, U>(w, s, act + j * e.I, int(rb / 16), lane, acc);
    finish_rows<F, NR>(s, acc);
#pragma unroll
    for (int i = 0; i < NR; ++i) sum[i] = fmaf(e.selw[j], acc[i], sum[i]);
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < NR; ++i) part[warp][i] = sum[i];
  }
  __syncthreads();
  if (threadIdx.x < NR) {
    float v = 0.f;
    for (int q = 0; q < kQWarps; ++q) v += part[q][threadIdx.x];
    out[h + threadIdx.x] = v;
  }
}

// Any shape and row count (small models, prefill chunks of <= 8 rows): scalar dequantization.
// act[entry][i] = silu(gate . x_s)[i] * (up . x_s)[i], entry = s * k + j; one warp per (entry, i).
template <DType F>
__global__ void qexperts_rows_gateup_kernel(const void* const* table, const void* const* stable, const int* idx,
                                            const float* x, int entries, int k, int H, int I, float* act) {
  const int lane = threadIdx.x & 31;
  const int64_t gw = int64_t(blockIdx.x) * kQWarps + (threadIdx.x >> 5);
  if (gw >= int64_t(entries) * I) return;
  const int entry = int(gw / I), i = int(gw % I), e = idx[entry];
  const int64_t rb = quant_row_bytes(F, H), groups = quant_groups(F, H);
  const uint8_t* gw_ = static_cast<const uint8_t*>(table[e * 3 + 0]) + i * rb;
  const uint8_t* uw = static_cast<const uint8_t*>(table[e * 3 + 1]) + i * rb;
  const uint16_t* gs = static_cast<const uint16_t*>(stable[e * 3 + 0]) + i * groups;
  const uint16_t* us = static_cast<const uint16_t*>(stable[e * 3 + 1]) + i * groups;
  const float* xs = x + int64_t(entry / k) * H;
  float g = 0.f, u = 0.f;
  for (int kk = lane; kk < H; kk += kWarp) {
    g += dequant_at(F, gw_, gs, kk) * xs[kk];
    u += dequant_at(F, uw, us, kk) * xs[kk];
  }
  g = warp_sum(g);
  u = warp_sum(u);
  if (lane == 0) act[int64_t(entry) * I + i] = silu(g) * u;
}

// out[s][h] = sum_j wts[s * k + j] (down_e act[s * k + j])[h], experts in slot order; warp per (s, h).
template <DType F>
__global__ void qexperts_rows_down_kernel(const void* const* table, const void* const* stable, const int* idx,
                                          const float* wts, const float* act, int rows, int k, int H, int I,
                                          float* out) {
  const int lane = threadIdx.x & 31;
  const int64_t gw = int64_t(blockIdx.x) * kQWarps + (threadIdx.x >> 5);
  if (gw >= int64_t(rows) * H) return;
  const int s = int(gw / H), h = int(gw % H);
  const int64_t rb = quant_row_bytes(F, I), groups = quant_groups(F, I);
  float sum = 0.f;
  for (int j = 0; j < k; ++j) {
    const int entry = s * k + j, e = idx[entry];
    const uint8_t* d = static_cast<const uint8_t*>(table[e * 3 + 2]) + h * rb;
    const uint16_t* ds = static_cast<const uint16_t*>(stable[e * 3 + 2]) + h * groups;
    const float* a = act + int64_t(entry) * I;
    float v = 0.f;
    for (int kk = lane; kk < I; kk += kWarp) v += dequant_at(F, d, ds, kk) * a[kk];
    sum = fmaf(wts[entry], warp_sum(v), sum);
  }
  if (lane == 0) out[int64_t(s) * H + h] = sum;
}

int grid_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535)); }

template <DType F>
void launch_qgemv_f(const QGemvArgs& a, const Exec& ex) {
  int total = 0;
  bool even = true;
  for (int i = 0; i < a.nseg; ++i) {
    total += a.seg[i].n;
    even = even && a.seg[i].n % 2 == 0;
  }
  if (total == 0) return;
  const dim3 block(kQWarps * kWarp);
  const bool aligned = a.K % Fmt<F>::kElems == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  if (!aligned) {
    launch(qgemv_scalar_kernel<F>, dim3(unsigned((total + kQWarps - 1) / kQWarps)), block, ex, a);
    OMNI_LAUNCHED("qgemv_scalar_kernel");
  } else {
    // Chunks per lane in flight: Q8 4, Q4 2 with two rows per warp (K = 2048: the whole row); rows that do
    // not fit one batch (o_proj, K = 4096) or odd row counts take one row per warp and twice the chunks.
    constexpr int U = F == DType::Q4 ? 2 : 4;
    const int chunks = int(quant_row_bytes(F, a.K) / 16);
    static const int sms = [] {
      int dev = 0, v = 0;
      cudaGetDevice(&dev);
      cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
      return v > 0 ? v : 1;
    }();
    const int pairs = total / 2, resident = sms * 2 * kQWarps;  // warps of qgemv_stream_kernel at 2 blocks/SM
    if (ex.tuning.qstream && even && a.nseg == 1 && a.rows == 1 && chunks <= kWarp * U && pairs > 4 * resident) {
      launch(qgemv_stream_kernel<F, U>, dim3(unsigned(sms * 2)), block, ex, a);
      OMNI_LAUNCHED("qgemv_stream_kernel");
    } else if (even && chunks <= kWarp * U) {
      launch(qgemv_kernel<F, 2, U>, dim3(unsigned((pairs + kQWarps - 1) / kQWarps)), block, ex, a);
      OMNI_LAUNCHED("qgemv_kernel<2>");
    } else {
      launch(qgemv_kernel<F, 1, 2 * U>, dim3(unsigned((total + kQWarps - 1) / kQWarps)), block, ex, a);
      OMNI_LAUNCHED("qgemv_kernel<1>");
    }
  }
}

template <DType F>
void launch_dequant_f(const DequantArgs& a, int matrices, int64_t numel, cudaStream_t st) {
  const int64_t units = numel / 8 + 1;
  dequant_kernel<F><<<dim3(unsigned(std::min<int64_t>((units + 255) / 256, 4096)), unsigned(matrices)), 256, 0, st>>>(a);
  OMNI_LAUNCHED("dequant_kernel");
}

void launch_dequant(DType f, const DequantArgs& a, int matrices, int64_t numel, cudaStream_t st) {
  if (f == DType::Q4) launch_dequant_f<DType::Q4>(a, matrices, numel, st);
  else launch_dequant_f<DType::Q8>(a, matrices, numel, st);
}

}  // namespace

QGemvSegment qgemv_segment(const Tensor& w, const Tensor& bias, float* y) {
  return {w.as<uint8_t>(), static_cast<const uint16_t*>(w.scales), bias.empty() ? nullptr : bias.as<uint16_t>(), y,
          int(w.dim(0))};
}

void launch_qgemv(DType format, const QGemvArgs& a, const Exec& ex) {
  if (format == DType::Q4) launch_qgemv_f<DType::Q4>(a, ex);
  else launch_qgemv_f<DType::Q8>(a, ex);
}

}  // namespace cuda

using namespace cuda;

void CudaBackend::quantize_device(const uint16_t* src, int64_t N, int64_t K, DType format, uint8_t* data,
                                  uint16_t* scales) {
  if (N == 0) return;
  const int64_t rb = quant_row_bytes(format, K), groups = quant_groups(format, K);
  if (format == DType::Q8) {
    quantize_q8_kernel<<<unsigned(N), 256, 0, stream_>>>(src, K, rb, reinterpret_cast<int8_t*>(data), scales);
    OMNI_LAUNCHED("quantize_q8_kernel");
  } else {
    quantize_q4_kernel<<<unsigned((N * groups + kQWarps - 1) / kQWarps), kQWarps * kWarp, 0, stream_>>>(
        src, N, K, groups, rb, data, scales);
    OMNI_LAUNCHED("quantize_q4_kernel");
  }
}

Tensor CudaBackend::quantized_storage(std::initializer_list<int64_t> shape, DType format, const std::string& name) {
  Tensor t(nullptr, format, shape, true);
  if (t.ndim != 2) throw Error("weight " + name + ": only matrices are quantized, not " + t.shape_str());
  const int64_t N = t.dim(0), K = t.dim(1);
  const size_t scale_bytes = size_t(N * quant_groups(format, K)) * 2;
  t.data = arena_alloc(t.bytes());
  t.scales = arena_alloc(scale_bytes);
  weight_bytes_ += t.bytes() + scale_bytes;
  // Prefill dequantizes a quantized matrix into one shared bf16 buffer (sized here, at load).
  reserve_dequant(size_t(N * K) * 2);
  return t;
}

void CudaBackend::reserve_dequant(size_t bytes) {
  if (bytes <= dequant_bytes_) return;
  dequant_buf_ = static_cast<uint16_t*>(arena_alloc(bytes));
  dequant_bytes_ = bytes;
}

// Row blocks of the host matrix go through the scratch area as bf16 and are quantized there.
Tensor CudaBackend::weight_as(const Tensor& host, DType format, const std::string& name) {
  if (!is_quantized(format)) return weight(host);
  if (host.on_device || host.ndim != 2 || host.dtype == DType::I32)
    throw Error("weight " + name + ": only host float matrices are quantized, not " + host.shape_str());
  const int64_t N = host.dim(0), K = host.dim(1);
  Tensor t = quantized_storage({N, K}, format, name);
  const int64_t block = std::max<int64_t>(1, int64_t(scratch_size_ / 2) / std::max<int64_t>(1, K * 2));
  for (int64_t r = 0; r < N; r += block) {
    const int64_t rows = std::min(block, N - r);
    scratch_reset();
    uint16_t* stage = static_cast<uint16_t*>(scratch(size_t(rows * K) * 2, "weight"));
    // Stream order keeps the staging area safe: the next block's copy into it follows this quantize.
    upload_as_bf16(stage, static_cast<const char*>(host.data) + size_t(r * K) * dtype_size(host.dtype), host.dtype,
                   rows * K);
    const Tensor part = t.rows(r, rows);
    quantize_device(stage, rows, K, format, part.as<uint8_t>(), static_cast<uint16_t*>(part.scales));
  }
  scratch_reset();
  return t;
}

Tensor CudaBackend::synthetic_weight_as(std::initializer_list<int64_t> shape, uint64_t seed, float scale,
                                        DType format) {
  if (!is_quantized(format)) return synthetic_weight(shape, seed, scale);
  Tensor t = quantized_storage(shape, format, "synthetic");
  const int64_t N = t.dim(0), K = t.dim(1);
  const int64_t block = std::max<int64_t>(1, int64_t(scratch_size_ / 2) / std::max<int64_t>(1, K * 2));
  for (int64_t r = 0; r < N; r += block) {
    const int64_t rows = std::min(block, N - r);
    scratch_reset();
    uint16_t* stage = static_cast<uint16_t*>(scratch(size_t(rows * K) * 2, "synthetic_weight"));
    synthetic_rows_kernel<<<grid_for(rows * K), 256, 0, stream_>>>(stage, rows * K, r * K, seed, scale);
    OMNI_LAUNCHED("synthetic_rows_kernel");
    const Tensor part = t.rows(r, rows);
    quantize_device(stage, rows, K, format, part.as<uint8_t>(), static_cast<uint16_t*>(part.scales));
  }
  scratch_reset();  // stream order keeps the staging reuse safe: no host data involved
  return t;
}

void CudaBackend::linear_rows_quant(const float* x, int64_t rows, const Tensor& w, const Tensor& bias, float* out,
                                    Activation act, bool fp32_inputs) {
  const int64_t N = w.dim(0), K = w.row_numel();
  if (rows == 0 || N == 0) return;
  // fp32 GEMV (all rows) where the bf16 path would also keep fp32 inputs (see linear_rows).
  if (rows <= kGemvMaxRows || fp32_inputs || N * K <= (int64_t(1) << 18)) {
    QGemvArgs g;
    g.seg[0] = qgemv_segment(w, bias, out);
    g.K = int(K);
    g.rows = int(rows);
    g.x = x;
    g.act = act == Activation::SiLU ? 1 : act == Activation::GELU ? 2 : act == Activation::GELUTanh ? 3 : 0;
    launch_qgemv(w.dtype, g, exec_);
    return;
  }
  // Prefill: the matrix dequantized to bf16 once per call, then the bf16 paths (GEMV or GEMM).
  if (size_t(N * K) * 2 > dequant_bytes_) throw Error("linear: no dequantization buffer for " + w.shape_str());
  DequantArgs d;
  d.w = w.as<uint8_t>();
  d.s = static_cast<const uint16_t*>(w.scales);
  d.N = N;
  d.k_other = int(K);
  d.dst = dequant_buf_;
  launch_dequant(w.dtype, d, 1, N * K, stream_);
  Tensor wb(dequant_buf_, DType::BF16, {N, K}, true);
  linear_rows(x, rows, wb, bias, out, act, fp32_inputs);
}

void CudaBackend::prepare_moe_quant(MoeWeights& moe, CudaMoeLayout& L) {
  const int E = L.experts;
  const DType f = moe.experts[0].gate.dtype;
  std::vector<const void*> scales(size_t(E) * 3);
  for (int e = 0; e < E; ++e) {
    const MlpWeights& m = moe.experts[size_t(e)];
    if (m.gate.dtype != f || m.up.dtype != f || m.down.dtype != f)
      throw Error("prepare_moe: expert " + std::to_string(e) + " is not stored as " + dtype_name(f) +
                  " like expert 0");
    scales[size_t(e) * 3 + 0] = m.gate.scales;
    scales[size_t(e) * 3 + 1] = m.up.scales;
    scales[size_t(e) * 3 + 2] = m.down.scales;
  }
  L.format = f;
  L.scales = static_cast<const void**>(arena_alloc(scales.size() * sizeof(void*)));
  // On stream_ (see weight(): a pageable cudaMemcpy may land after stream_'s next kernel reads it).
  OMNI_CUDA(cudaMemcpyAsync(L.scales, scales.data(), scales.size() * sizeof(void*), cudaMemcpyHostToDevice, stream_));
  reserve_dequant(size_t(E) * 3 * L.inter * L.hidden * 2);
  if (!dequant_table_) dequant_table_ = static_cast<const void**>(arena_alloc(sizeof(void*) * 3 * kCudaMaxExperts));
}

bool CudaBackend::moe_quant_decode_ok(const CudaMoeLayout& L) const {
  const int e = L.format == DType::Q4 ? 32 : 16;
  return L.hidden % e == 0 && L.inter % e == 0 && L.inter % 2 == 0 && L.hidden % 4 == 0;
}

const void* const* CudaBackend::dequantize_experts(const CudaMoeLayout& L) {
  DequantArgs d;
  d.table = L.table;
  d.stable = L.scales;
  d.N = L.inter;  // gate/up [I, H]; down [H, I]
  d.k_other = L.hidden;
  d.k_down = L.inter;
  d.dst = dequant_buf_;
  d.dst_table = dequant_table_;
  launch_dequant(L.format, d, L.experts * 3, int64_t(L.inter) * L.hidden, stream_);
  return dequant_table_;
}

void CudaBackend::moe_rows_quant(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const int* idx,
                                 const float* wts, const Tensor& out) {
  const int H = L.hidden, I = L.inter, k = w.top_k;
  const int rows = int(x.numel() / H), entries = rows * k;
  float* act = static_cast<float*>(scratch(sizeof(float) * size_t(entries) * I, "moe"));
  const unsigned gu_blocks = unsigned((int64_t(entries) * I + kQWarps - 1) / kQWarps);
  const unsigned down_blocks = unsigned((int64_t(rows) * H + kQWarps - 1) / kQWarps);
  const dim3 block(kQWarps * kWarp);
  if (L.format == DType::Q4) {
    qexperts_rows_gateup_kernel<DType::Q4><<<gu_blocks, block, 0, stream_>>>(L.table, L.scales, idx, x.as<float>(),
                                                                            entries, k, H, I, act);
    qexperts_rows_down_kernel<DType::Q4><<<down_blocks, block, 0, stream_>>>(L.table, L.scales, idx, wts, act, rows,
                                                                            k, H, I, out.as<float>());
  } else {
    qexperts_rows_gateup_kernel<DType::Q8><<<gu_blocks, block, 0, stream_>>>(L.table, L.scales, idx, x.as<float>(),
                                                                            entries, k, H, I, act);
    qexperts_rows_down_kernel<DType::Q8><<<down_blocks, block, 0, stream_>>>(L.table, L.scales, idx, wts, act, rows,
                                                                            k, H, I, out.as<float>());
  }
  OMNI_LAUNCHED("qexperts_rows kernels");
}

void CudaBackend::moe_experts_quant(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, float* act,
                                    const Tensor& out) {
  QExperts e;
  e.ptrs = topk_ptrs_;
  e.stable = L.scales;
  e.sel = topk_idx_;
  e.selw = topk_w_;
  e.count = w.top_k;
  e.H = L.hidden;
  e.I = L.inter;
  const dim3 block(kQWarps * kWarp);
  const unsigned gu_blocks = unsigned((int64_t(w.top_k) * (L.inter / 2) + kQWarps - 1) / kQWarps);
  const unsigned down_blocks = unsigned(L.hidden / 4);
  const bool gateup_3 = exec_.tuning.qgateup_min_blocks == 3;
  if (L.format == DType::Q4) {
    launch(gateup_3 ? qgateup_kernel<DType::Q4, 3> : qgateup_kernel<DType::Q4, 2>, dim3(gu_blocks), block, exec_, e,
           x.as<float>(), act);
    OMNI_LAUNCHED("qgateup_kernel<Q4>");
    launch(qdown_kernel<DType::Q4>, dim3(down_blocks), block, exec_, e, static_cast<const float*>(act),
           out.as<float>());
    OMNI_LAUNCHED("qdown_kernel<Q4>");
  } else {
    launch(gateup_3 ? qgateup_kernel<DType::Q8, 3> : qgateup_kernel<DType::Q8, 2>, dim3(gu_blocks), block, exec_, e,
           x.as<float>(), act);
    OMNI_LAUNCHED("qgateup_kernel<Q8>");
    launch(qdown_kernel<DType::Q8>, dim3(down_blocks), block, exec_, e, static_cast<const float*>(act),
           out.as<float>());
    OMNI_LAUNCHED("qdown_kernel<Q8>");
  }
}

}  // namespace omni
