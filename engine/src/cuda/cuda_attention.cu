// attention(): projections (GEMV / cuBLAS), per-head q/k RMSNorm, NeoX RoPE, bf16 or fp32 KV cache,
// fp32 softmax, output projection.
// Decode (one row with a cache): one fused kernel does q/k norm + RoPE + the cache write +
// split-K attention over the cache + the merge of the splits; it reads the position from
// device memory, so the step can be replayed from a CUDA graph with a new position.
// Everything else (prefill, encoder windows): a prep kernel, then a tiled kernel.
#include <cmath>

#include "cuda/cuda_attention.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_decode_items.cuh"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_quant.h"

namespace omni {
namespace cuda {
namespace {

template <int DPL, typename CacheT, bool kTable>
__global__ void __launch_bounds__(kDecWarps * kWarp) attention_decode_kernel(DecodeArgs a) {
  __shared__ AttnSmem sm;
  pdl_launch_dependents();
  pdl_wait();
  attention_decode_item<DPL, CacheT, kTable>(a, blockIdx.x, blockIdx.y, int(gridDim.y), sm);
}

template <bool kTable>
void launch_attention_decode_as(const DecodeArgs& a, bool f32_cache, const Exec& ex) {
  const dim3 grid(unsigned(a.hkv), kCudaAttnSplits), block(kDecWarps * kWarp);
  if (a.hd == 128 && f32_cache) launch(attention_decode_kernel<4, float, kTable>, grid, block, ex, a);
  else if (a.hd == 128) launch(attention_decode_kernel<4, uint16_t, kTable>, grid, block, ex, a);
  else if (f32_cache) launch(attention_decode_kernel<2, float, kTable>, grid, block, ex, a);
  else launch(attention_decode_kernel<2, uint16_t, kTable>, grid, block, ex, a);
}

// General path, step 1: q/k norm + RoPE in place, one warp per (row, head); with a cache, the
// rows' keys/values are written to their slots (bf16).
struct PrepArgs {
  RopeTable rope;
  const float* rope_cos;  // [S, hd/2] per-row tables (AttentionArgs::rope_cos), or null
  const float* rope_sin;
  float* q;
  float* k;
  const float* v;
  const uint16_t* q_norm;
  const uint16_t* k_norm;
  float eps;
  const int32_t* pos;
  int hq, hkv, hd;
  void* kc;  // bf16 or (cache_f32) fp32 cache
  void* vc;
  bool cache_f32;
  int capacity;
  int* flags;
};

__global__ void attention_prep_kernel(PrepArgs a) {
  const int s = blockIdx.x, head = blockIdx.y, lane = threadIdx.x;
  const bool is_q = head < a.hq;
  const int h = is_q ? head : head - a.hq;
  float* row = is_q ? a.q + (int64_t(s) * a.hq + h) * a.hd : a.k + (int64_t(s) * a.hkv + h) * a.hd;
  const uint16_t* nw = is_q ? a.q_norm : a.k_norm;
  const int pos = a.pos ? a.pos[s] : 0;
  if (nw) {
    float ss = 0.f;
    for (int d = lane; d < a.hd; d += 32) ss += row[d] * row[d];
    const float inv = 1.f / sqrtf(warp_sum(ss) / float(a.hd) + a.eps);
    for (int d = lane; d < a.hd; d += 32) row[d] = bf16_at(nw, d) * (row[d] * inv);
    __syncwarp();
  }
  if (a.rope_cos) {
    const int half = a.hd / 2;
    for (int i = lane; i < half; i += 32) {
      const float c = a.rope_cos[int64_t(s) * half + i], sn = a.rope_sin[int64_t(s) * half + i];
      const float x0 = row[i], x1 = row[i + half];
      row[i] = x0 * c - x1 * sn;
      row[i + half] = x1 * c + x0 * sn;
    }
    __syncwarp();
  } else if (a.rope.on) {
    const int half = a.hd / 2;
    for (int i = lane; i < half; i += 32) {
      float c, sn;
      rope_cos_sin(pos, a.rope.inv_freq[i], c, sn);
      const float x0 = row[i], x1 = row[i + half];
      row[i] = x0 * c - x1 * sn;
      row[i + half] = x1 * c + x0 * sn;
    }
    __syncwarp();
  }
  if (!is_q && a.kc) {
    if (pos < 0 || pos >= a.capacity) {
      if (lane == 0) atomicOr(a.flags, kFlagBadPosition);
      return;
    }
    const float* vrow = a.v + (int64_t(s) * a.hkv + h) * a.hd;
    for (int d = lane; d < a.hd; d += 32) {
      const int64_t o = (int64_t(pos) * a.hkv + h) * a.hd + d;
      if (a.cache_f32) {
        static_cast<float*>(a.kc)[o] = row[d];
        static_cast<float*>(a.vc)[o] = vrow[d];
      } else {
        static_cast<uint16_t*>(a.kc)[o] = f32_to_bf16_bits(row[d]);
        static_cast<uint16_t*>(a.vc)[o] = f32_to_bf16_bits(vrow[d]);
      }
    }
  }
}

// General path, step 2: one block per (16 query rows, q head), 4 warps of 4 rows each; keys in
// tiles of 32 through shared memory, one key per lane. A warp owns its rows end to end: scores
// (lane = key), online softmax by warp shuffles (no block barrier), and P.V with lane = output
// dims (lane, lane+32, ...), each key's probability broadcast by shuffle. fp32 throughout. No block
// barrier inside a tile: a block-wide softmax per tile is what made this path slow
// (docs/performance.md, "History from code comments").
constexpr int kTq = 16, kTk = 32, kRowsPerWarp = 4, kTileThreads = kTq / kRowsPerWarp * 32, kMaxHd = 128;

// K rows padded to 132 floats: 16-byte aligned, and 8 lanes' float4 reads of 8 different rows
// fall in 32 distinct banks.
constexpr int kKsLd = kMaxHd + 4;

// K and V rows [k0, k0 + kTk) of kv head kvh into shared memory (zeros past kmax); 8 elements
// per load where head_dim allows.
__device__ __forceinline__ void load_kv_tile(const TileArgs& a, int k0, int kmax, int kvh, float (*ks)[kKsLd],
                                             float (*vs)[kMaxHd]) {
  const int hd = a.hd;
  if ((hd & 7) == 0) {
    const int hd8 = hd >> 3;
    for (int i = threadIdx.x; i < kTk * hd8; i += blockDim.x) {
      const int j = i / hd8, d = (i - j * hd8) * 8, key = k0 + j;
      float4 k0v = {}, k1v = {}, v0v = {}, v1v = {};
      if (key <= kmax) {
        const int64_t off = (int64_t(key) * a.hkv + kvh) * hd + d;
        if (a.kv_bf16) {
          const uint4 kb = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.k) + off);
          const uint4 vb = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.v) + off);
          k0v = make_float4(bf16_lo(kb.x), bf16_hi(kb.x), bf16_lo(kb.y), bf16_hi(kb.y));
          k1v = make_float4(bf16_lo(kb.z), bf16_hi(kb.z), bf16_lo(kb.w), bf16_hi(kb.w));
          v0v = make_float4(bf16_lo(vb.x), bf16_hi(vb.x), bf16_lo(vb.y), bf16_hi(vb.y));
          v1v = make_float4(bf16_lo(vb.z), bf16_hi(vb.z), bf16_lo(vb.w), bf16_hi(vb.w));
        } else {
          const float4* kf = reinterpret_cast<const float4*>(static_cast<const float*>(a.k) + off);
          const float4* vf = reinterpret_cast<const float4*>(static_cast<const float*>(a.v) + off);
          k0v = kf[0];
          k1v = kf[1];
          v0v = vf[0];
          v1v = vf[1];
        }
      }
      *reinterpret_cast<float4*>(&ks[j][d]) = k0v;
      *reinterpret_cast<float4*>(&ks[j][d + 4]) = k1v;
      *reinterpret_cast<float4*>(&vs[j][d]) = v0v;
      *reinterpret_cast<float4*>(&vs[j][d + 4]) = v1v;
    }
    return;
  }
  for (int i = threadIdx.x; i < kTk * hd; i += blockDim.x) {
    const int j = i / hd, d = i % hd, key = k0 + j;
    float kk = 0.f, vv = 0.f;
    if (key <= kmax) {
      const int64_t off = (int64_t(key) * a.hkv + kvh) * hd + d;
      if (a.kv_bf16) {
        kk = bf16_at(static_cast<const uint16_t*>(a.k), off);
        vv = bf16_at(static_cast<const uint16_t*>(a.v), off);
      } else {
        kk = static_cast<const float*>(a.k)[off];
        vv = static_cast<const float*>(a.v)[off];
      }
    }
    ks[j][d] = kk;
    vs[j][d] = vv;
  }
}

__global__ void __launch_bounds__(kTileThreads) attention_tile_kernel(TileArgs a) {
  const int r0 = blockIdx.x * kTq, h = blockIdx.y, kvh = h / (a.hq / a.hkv), hd = a.hd;
  __shared__ __align__(16) float qs[kTq][kMaxHd];  // read as warp broadcasts
  __shared__ __align__(16) float ks[kTk][kKsLd];  // lane = key; float4 rows, conflict-free
  __shared__ __align__(16) float vs[kTk][kMaxHd];  // lane = dim
  __shared__ int rlo[kTq], rhi[kTq];
  const int tid = threadIdx.x, lane = tid & 31, wr = (tid >> 5) * kRowsPerWarp;
  for (int i = tid; i < kTq * hd; i += kTileThreads) {
    const int r = i / hd, d = i % hd;
    qs[r][d] = r0 + r < a.S ? a.q[(int64_t(r0 + r) * a.hq + h) * hd + d] * a.scale : 0.f;
  }
  int kmin, kmax;
  block_key_ranges<kTq>(a, r0, rlo, rhi, kmin, kmax);  // its barrier also publishes qs
  int lo[kRowsPerWarp], hi[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kMaxHd / 32];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    lo[r] = rlo[wr + r];
    hi[r] = rhi[wr + r];
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < kMaxHd / 32; ++c) acc[r][c] = 0.f;
  }
  for (int k0 = kmin; k0 <= kmax; k0 += kTk) {
    load_kv_tile(a, k0, kmax, kvh, ks, vs);
    __syncthreads();
    float p[kRowsPerWarp] = {};
    int d = 0;
    for (; d + 4 <= hd; d += 4) {
      const float4 kv = *reinterpret_cast<const float4*>(&ks[lane][d]);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 qv = *reinterpret_cast<const float4*>(&qs[wr + r][d]);
        p[r] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
      }
    }
    for (; d < hd; ++d) {
      const float kv = ks[lane][d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p[r] += qs[wr + r][d] * kv;
    }
    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool ok = key >= lo[r] && key <= hi[r];
      const float mx = fmaxf(m[r], warp_max(ok ? p[r] : -INFINITY));
      const float corr = mx == -INFINITY ? 1.f : __expf(m[r] - mx);
      p[r] = ok ? __expf(p[r] - mx) : 0.f;
      l[r] = l[r] * corr + warp_sum(p[r]);
      m[r] = mx;
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; ++c) acc[r][c] *= corr;
    }
    for (int j = 0; j < kTk; ++j) {
      float v[kMaxHd / 32];
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; ++c) v[c] = lane + 32 * c < hd ? vs[j][lane + 32 * c] : 0.f;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float pj = __shfl_sync(kFull, p[r], j);
#pragma unroll
        for (int c = 0; c < kMaxHd / 32; ++c) acc[r][c] = fmaf(pj, v[c], acc[r][c]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int row = r0 + wr + r;
    if (row >= a.S) continue;
#pragma unroll
    for (int c = 0; c < kMaxHd / 32; ++c) {
      const int d = lane + 32 * c;
      if (d < hd) a.out[(int64_t(row) * a.hq + h) * hd + d] = l[r] > 0.f ? acc[r][c] / l[r] : 0.f;
    }
  }
}

}  // namespace

void launch_attention_decode(const DecodeArgs& a, bool f32_cache, const Exec& ex) {
  if (a.rope_cos) launch_attention_decode_as<true>(a, f32_cache, ex);
  else launch_attention_decode_as<false>(a, f32_cache, ex);
  OMNI_LAUNCHED("attention_decode_kernel");
}

}  // namespace cuda

using namespace cuda;

namespace {
const uint16_t* opt_bf16(const Tensor& t) { return t.empty() ? nullptr : t.as<uint16_t>(); }
}  // namespace

void CudaBackend::attention(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out) {
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  if (hq <= 0 || hkv <= 0 || hq % hkv != 0 || hd <= 0 || hd % 2 != 0)
    throw Error("attention: " + std::to_string(hq) + " q heads, " + std::to_string(hkv) + " kv heads, head_dim " +
                std::to_string(hd) + " is not a valid grouping");
  if (x.dtype != DType::F32 || out.dtype != DType::F32 || x.dim(-1) != w.wq.dim(1))
    throw Error("attention: x " + x.shape_str() + " does not match wq " + w.wq.shape_str());
  if (((w.rope_theta > 0.f && args.rope_cos.empty()) || args.cache) && args.positions.empty())
    throw Error("attention: positions are required");
  // Caches are bf16 or fp32 (kv_cache_dtype() says which this backend allocates; every path
  // reads either).
  if (args.cache && ((args.cache->k.dtype != DType::BF16 && args.cache->k.dtype != DType::F32) ||
                     args.cache->v.dtype != args.cache->k.dtype || args.cache->k.ndim != 3 ||
                     args.cache->k.dim(1) != hkv || args.cache->k.dim(2) != hd))
    throw Error("attention: KV cache " + args.cache->k.shape_str() + " " + dtype_name(args.cache->k.dtype) +
                " is not a bf16/f32 [capacity, " + std::to_string(hkv) + ", " + std::to_string(hd) + "] cache");
  const int G = hq / hkv;
  const bool fused = x.dim(0) == 1 && args.cache && args.block == 0 &&
                     (args.rope_cos.empty() || decode_rope_table(args, hd)) &&
                     G <= 8 && (hd == 64 || hd == 128) && hq <= kCudaMaxHeads;
  if (fused) attention_decode(w, x, args, out);
  else attention_general(w, x, args, out);
}

void CudaBackend::attention_decode(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args,
                                   const Tensor& out) {
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  scratch_reset();
  float* q = static_cast<float*>(scratch(sizeof(float) * size_t(hq + 2 * hkv) * hd, "attention"));
  float* k = q + hq * hd;
  float* v = k + hkv * hd;
  float* o = static_cast<float*>(scratch(sizeof(float) * size_t(hq) * hd, "attention"));
  if (is_quantized(w.wq.dtype)) {  // cuda_quant.cu; q, k, v share one format
    QGemvArgs g;
    g.nseg = 3;
    g.seg[0] = qgemv_segment(w.wq, w.bq, q);
    g.seg[1] = qgemv_segment(w.wk, w.bk, k);
    g.seg[2] = qgemv_segment(w.wv, w.bv, v);
    g.K = int(x.dim(1));
    g.x = x.as<float>();
    launch_qgemv(w.wq.dtype, g, exec_);
  } else {
    GemvArgs g;
    g.nseg = 3;
    g.seg[0] = {w.wq.as<uint16_t>(), opt_bf16(w.bq), q, hq * hd};
    g.seg[1] = {w.wk.as<uint16_t>(), opt_bf16(w.bk), k, hkv * hd};
    g.seg[2] = {w.wv.as<uint16_t>(), opt_bf16(w.bv), v, hkv * hd};
    g.K = int(x.dim(1));
    g.x = x.as<float>();
    launch_gemv(g, exec_);
  }

  const DecodeArgs a = decode_args(w, *args.cache, args, q, k, v, attn_partials_, counters_, o, flags_);
  launch_attention_decode(a, args.cache->k.dtype == DType::F32, exec_);
  linear_rows(o, 1, w.wo, w.bo, out.as<float>(), Activation::None);
}

void CudaBackend::attention_general(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args,
                                    const Tensor& out) {
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  const int64_t S = x.dim(0);
  if (hd > kMaxHd) throw Error("attention: head_dim " + std::to_string(hd) + " above 128 is not supported on CUDA");
  scratch_reset();
  float* q = static_cast<float*>(scratch(sizeof(float) * size_t(S) * hq * hd, "attention"));
  float* k = static_cast<float*>(scratch(sizeof(float) * size_t(S) * hkv * hd, "attention"));
  float* v = static_cast<float*>(scratch(sizeof(float) * size_t(S) * hkv * hd, "attention"));
  float* o = static_cast<float*>(scratch(sizeof(float) * size_t(S) * hq * hd, "attention"));
  // q, k and v read the same x: where all three go to cuBLAS, x is converted for it once.
  const bool cast_once =
      linear_uses_gemm(S, w.wq, false) && linear_uses_gemm(S, w.wk, false) && linear_uses_gemm(S, w.wv, false);
  const uint16_t* xc = cast_once ? cast_for_gemm(x.as<float>(), S * x.dim(1)) : nullptr;
  linear_rows(x.as<float>(), S, w.wq, w.bq, q, Activation::None, false, xc);
  linear_rows(x.as<float>(), S, w.wk, w.bk, k, Activation::None, false, xc);
  linear_rows(x.as<float>(), S, w.wv, w.bv, v, Activation::None, false, xc);
  const bool table = !args.rope_cos.empty();
  if (table && (args.rope_cos.dtype != DType::F32 || args.rope_sin.dtype != DType::F32 || !args.rope_cos.on_device ||
                !args.rope_sin.on_device || args.rope_cos.numel() != S * (hd / 2) ||
                args.rope_sin.numel() != S * (hd / 2)))
    throw Error("attention: rotary tables " + args.rope_cos.shape_str() + " / " + args.rope_sin.shape_str() +
                " are not F32 CUDA tensors [" + std::to_string(S) + ", " + std::to_string(hd / 2) + "]");
  PrepArgs p{rope_table(table ? 0.f : w.rope_theta, hd), table ? args.rope_cos.as<float>() : nullptr,
             table ? args.rope_sin.as<float>() : nullptr, q, k, v, opt_bf16(w.q_norm), opt_bf16(w.k_norm), w.norm_eps,
             args.positions.empty() ? nullptr : args.positions.as<int32_t>(), hq, hkv, hd,
             args.cache ? args.cache->k.data : nullptr, args.cache ? args.cache->v.data : nullptr,
             args.cache && args.cache->k.dtype == DType::F32, args.cache ? int(args.cache->capacity()) : 0, flags_};
  if (S > 0 && (p.q_norm || p.k_norm || p.rope.on || p.rope_cos || p.kc)) {
    attention_prep_kernel<<<dim3(unsigned(S), unsigned(hq + hkv)), 32, 0, stream_>>>(p);
    OMNI_LAUNCHED("attention_prep_kernel");
  }
  TileArgs t;
  t.q = q;
  t.k = args.cache ? static_cast<const void*>(args.cache->k.data) : k;
  t.v = args.cache ? static_cast<const void*>(args.cache->v.data) : v;
  t.kv_bf16 = args.cache != nullptr && args.cache->k.dtype == DType::BF16;
  t.pos = args.positions.empty() ? nullptr : args.positions.as<int32_t>();
  t.S = int(S);
  t.hq = hq;
  t.hkv = hkv;
  t.hd = hd;
  t.capacity = args.cache ? int(args.cache->capacity()) : 0;
  t.cached = args.cache != nullptr;
  t.causal = args.causal;
  t.window = args.sliding_window;
  t.block = args.block;
  t.scale = 1.f / std::sqrt(float(hd));
  t.out = o;
  if (S > 0 && props_.major >= 8 && attention_mma_fits(hd) && exec_.tuning.attn_mma) {
    launch_attention_mma(t, f32_activations_, stream_);
  } else if (S > 0) {
    attention_tile_kernel<<<dim3(unsigned((S + kTq - 1) / kTq), unsigned(hq)), kTileThreads, 0, stream_>>>(t);
    OMNI_LAUNCHED("attention_tile_kernel");
  }
  linear_rows(o, S, w.wo, w.bo, out.as<float>(), Activation::None);
}

}  // namespace omni
