// Device pieces of the decode step shared by the standalone decode kernels and the fused
// decoder-layer kernel (cuda_decode_layer.cu): decode attention as a work item (kv head, split)
// and the router's softmax + top-k selection. Each runs on one block of kDecWarps warps.
#pragma once
#include <cmath>

#include "../backend.h"
#include "cuda_common.cuh"

namespace omni {
namespace cuda {

constexpr int kDecWarps = 8;
constexpr int kDecMaxG = 8;    // q heads per kv head on the fused path
constexpr int kDecMaxDpl = 4;  // head_dim / 32 on the fused path (head_dim <= 128)

// cos/sin of a RoPE angle. The angle (pos * inv_freq, float as in HF) can reach thousands of
// radians; it is reduced to [-pi, pi] in double, then the fast intrinsics are accurate (~4e-7).
__device__ __forceinline__ void rope_cos_sin(int pos, float inv_freq, float& c, float& s) {
  const double a = double(float(pos) * inv_freq);
  const double k = rint(a * 0.15915494309189535);
  __sincosf(float(fma(-k, 6.283185307179586, a)), &s, &c);
}

// One warp normalizes (optional) and rotates (optional) one head held as DPL contiguous values
// per lane: lane l has dims [l*DPL, (l+1)*DPL); the rotate-half partner of a dim in the first
// half sits in lane l ^ 16.
template <int DPL>
__device__ __forceinline__ void norm_rope_head(float (&v)[DPL], const uint16_t* norm_w, float eps, int pos,
                                               const float* inv_freq, int hd, int lane) {
  if (norm_w) {
    float ss = 0.f;
#pragma unroll
    for (int t = 0; t < DPL; ++t) ss += v[t] * v[t];
    const float inv = 1.f / sqrtf(warp_sum(ss) / float(hd) + eps);
#pragma unroll
    for (int t = 0; t < DPL; ++t) v[t] = bf16_at(norm_w, lane * DPL + t) * (v[t] * inv);
  }
  if (inv_freq) {
    const int half = hd / 2;
#pragma unroll
    for (int t = 0; t < DPL; ++t) {
      const float other = __shfl_xor_sync(kFull, v[t], 16);
      const int d = lane * DPL + t;
      const int i = d < half ? d : d - half;
      float c, s;
      rope_cos_sin(pos, inv_freq[i], c, s);
      v[t] = d < half ? v[t] * c - other * s : v[t] * c + other * s;
    }
  }
}

// RoPE inverse frequencies, computed on the host exactly as the CPU reference (and HF) do.
struct RopeTable {
  float inv_freq[64];  // head_dim / 2 entries (head_dim <= 128)
  bool on;
};

struct DecodeArgs {
  RopeTable rope;
  const float* q;  // raw projections (bias included)
  const float* k;
  const float* v;
  const uint16_t* q_norm;
  const uint16_t* k_norm;
  float eps, scale;
  void* kc;  // CacheT: bf16 (uint16_t) or fp32
  void* vc;
  int capacity;
  const int32_t* pos;
  int hq, hkv, hd, window;
  float* partials;  // [hq][splits][hd + 2]
  unsigned* counters;
  float* out;  // [hq * hd]
  int* flags;
};

// A cache element as fp32, and a value as the cache stores it (the bf16 cache rounds).
__device__ __forceinline__ float cache_load(const uint16_t* p, int t) { return bf16_at(p, t); }
__device__ __forceinline__ float cache_load(const float* p, int t) { return p[t]; }
__device__ __forceinline__ float cache_store(uint16_t* p, int t, float v) {
  const uint16_t b = f32_to_bf16_bits(v);
  p[t] = b;
  return __uint_as_float(uint32_t(b) << 16);
}
__device__ __forceinline__ float cache_store(float* p, int t, float v) { return p[t] = v; }

// Shared memory of one attention work item (also reused by the fused layer kernel's other stages).
struct AttnSmem {
  float q_s[kDecMaxG][32 * kDecMaxDpl];
  float knew[32 * kDecMaxDpl], vnew[32 * kDecMaxDpl];
  float wm[kDecWarps][kDecMaxG], wl[kDecWarps][kDecMaxG];
  float wacc[kDecWarps][kDecMaxG][32 * kDecMaxDpl];
  bool last_block;
};

// One work item of decode attention: kv head g, key-range split `split` of `grid_splits`
// (fixed, so a graph can replay any position; only as many splits as give each >= 32 keys take
// part). Called by every thread of a block of kDecWarps warps; returns block-uniformly. The
// split that finishes last for head g merges all splits into a.out.
template <int DPL, typename CacheT>
__device__ __forceinline__ void attention_decode_item(const DecodeArgs& a, int g, int split, int grid_splits,
                                                      AttnSmem& sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int G = a.hq / a.hkv, hd = a.hd;
  auto& q_s = sm.q_s;
  auto& knew = sm.knew;
  auto& vnew = sm.vnew;
  auto& wm = sm.wm;
  auto& wl = sm.wl;
  auto& wacc = sm.wacc;
  bool& last_block = sm.last_block;
  const int pos = *a.pos;
  if (pos < 0 || pos >= a.capacity) {
    if (threadIdx.x == 0 && g == 0 && split == 0) atomicOr(a.flags, kFlagBadPosition);
    return;  // every item returns: the counters stay untouched
  }
  const int n = pos + 1;
  const int lo = a.window > 0 ? max(0, n - a.window) : 0;
  // Only as many splits as give each at least kKeysPerSplit keys take part: short contexts skip
  // the merge traffic, and up to 32 keys one block does everything (no partials, no merge).
  constexpr int kKeysPerSplit = 32;
  const int splits = max(1, min(grid_splits, (n - lo + kKeysPerSplit - 1) / kKeysPerSplit));
  if (split >= splits) return;
  const int chunk = (n - lo + splits - 1) / splits;
  const int start = lo + split * chunk, end = min(n, start + chunk);

  for (int h = warp; h < G; h += kDecWarps) {
    float v[DPL];
#pragma unroll
    for (int t = 0; t < DPL; ++t) v[t] = a.q[(g * G + h) * hd + lane * DPL + t];
    norm_rope_head<DPL>(v, a.q_norm, a.eps, pos, a.rope.on ? a.rope.inv_freq : nullptr, hd, lane);
#pragma unroll
    for (int t = 0; t < DPL; ++t) q_s[h][lane * DPL + t] = v[t] * a.scale;
  }
  // The block whose range holds the new position makes its key/value (as the cache stores
  // them: a bf16 cache rounds) and writes the cache slot; no other block reads that slot.
  const bool has_new = start <= pos && pos < end;
  if (has_new && warp < 2) {
    float v[DPL];
    const float* src = (warp == 0 ? a.k : a.v) + g * hd;
#pragma unroll
    for (int t = 0; t < DPL; ++t) v[t] = src[lane * DPL + t];
    if (warp == 0) norm_rope_head<DPL>(v, a.k_norm, a.eps, pos, a.rope.on ? a.rope.inv_freq : nullptr, hd, lane);
    CacheT* dst = static_cast<CacheT*>(warp == 0 ? a.kc : a.vc) + (int64_t(pos) * a.hkv + g) * hd;
    float* sm = warp == 0 ? knew : vnew;
#pragma unroll
    for (int t = 0; t < DPL; ++t) sm[lane * DPL + t] = cache_store(dst, lane * DPL + t, v[t]);
  }
  __syncthreads();

  float m[kDecMaxG], l[kDecMaxG], acc[kDecMaxG][DPL];
#pragma unroll
  for (int h = 0; h < kDecMaxG; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.f;
#pragma unroll
    for (int t = 0; t < DPL; ++t) acc[h][t] = 0.f;
  }
  // Keys in batches of kBatch per warp: all their K/V loads are issued before any is used.
  constexpr int kBatch = 4;
  for (int j0 = start + warp; j0 < end; j0 += kDecWarps * kBatch) {
    float kv[kBatch][DPL], vv[kBatch][DPL];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int j = j0 + b * kDecWarps;
      const bool cached = j < end && j != pos;
      const int64_t row = (int64_t(cached ? j : 0) * a.hkv + g) * hd + lane * DPL;
      const CacheT* kr = static_cast<const CacheT*>(a.kc) + row;
      const CacheT* vr = static_cast<const CacheT*>(a.vc) + row;
#pragma unroll
      for (int t = 0; t < DPL; ++t) {
        kv[b][t] = cached ? cache_load(kr, t) : knew[lane * DPL + t];
        vv[b][t] = cached ? cache_load(vr, t) : vnew[lane * DPL + t];
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (j0 + b * kDecWarps >= end) break;
#pragma unroll
      for (int h = 0; h < kDecMaxG; ++h) {
        if (h < G) {
          float sc = 0.f;
#pragma unroll
          for (int t = 0; t < DPL; ++t) sc += q_s[h][lane * DPL + t] * kv[b][t];
          sc = warp_sum(sc);
          const float mn = fmaxf(m[h], sc);
          const float corr = __expf(m[h] - mn), p = __expf(sc - mn);
          l[h] = l[h] * corr + p;
#pragma unroll
          for (int t = 0; t < DPL; ++t) acc[h][t] = acc[h][t] * corr + p * vv[b][t];
          m[h] = mn;
        }
      }
    }
  }
#pragma unroll
  for (int h = 0; h < kDecMaxG; ++h) {
    if (h < G) {
      if (lane == 0) {
        wm[warp][h] = m[h];
        wl[warp][h] = l[h];
      }
#pragma unroll
      for (int t = 0; t < DPL; ++t) wacc[warp][h][lane * DPL + t] = acc[h][t];
    }
  }
  __syncthreads();
  // Merge the warps into this split's partial: unnormalized output, max and sum per head. A
  // lone split's merge is the answer: it writes a.out itself and skips the partials, the fence
  // and the counter.
  const bool alone = splits == 1;
  const int stride = hd + 4;  // 16-byte aligned rows: O[hd], then max and sum
  for (int idx = threadIdx.x; idx < G * hd; idx += blockDim.x) {
    const int h = idx / hd, d = idx % hd;
    float M = -INFINITY;
    for (int w = 0; w < kDecWarps; ++w) M = fmaxf(M, wm[w][h]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
      for (int w = 0; w < kDecWarps; ++w) {
        const float e = wm[w][h] == -INFINITY ? 0.f : __expf(wm[w][h] - M);
        L += wl[w][h] * e;
        O += wacc[w][h][d] * e;
      }
    }
    if (alone) {
      a.out[(g * G + h) * hd + d] = O / L;
      continue;
    }
    float* part = a.partials + (int64_t(g * G + h) * splits + split) * stride;
    part[d] = O;
    if (d == 0) {
      part[hd] = M;
      part[hd + 1] = L;
    }
  }
  if (alone) return;
  // The last split of this kv head to finish merges all splits.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(&a.counters[g], 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  // One warp per head: lane l holds splits l and l + 32's max and sum (splits <= 64); each lane
  // then sums its DPL output dims over the splits with independent loads.
  for (int h = warp; h < G; h += kDecWarps) {
    const float* part = a.partials + int64_t(g * G + h) * splits * stride;
    float ms[2], ls[2], e[2];
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int sp = lane + 32 * q;
      ms[q] = sp < splits ? __ldcg(part + sp * stride + hd) : -INFINITY;
      ls[q] = sp < splits ? __ldcg(part + sp * stride + hd + 1) : 0.f;
    }
    const float M = warp_max(fmaxf(ms[0], ms[1]));
#pragma unroll
    for (int q = 0; q < 2; ++q) e[q] = ms[q] == -INFINITY ? 0.f : __expf(ms[q] - M);
    const float L = warp_sum(ls[0] * e[0] + ls[1] * e[1]);
    float o[DPL];
#pragma unroll
    for (int t = 0; t < DPL; ++t) o[t] = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < splits; ++sp) {
      const float es = __shfl_sync(kFull, sp < 32 ? e[0] : e[1], sp & 31);
      const float* src = part + sp * stride + lane * DPL;
#pragma unroll
      for (int t = 0; t < DPL; ++t) o[t] += es * __ldcg(src + t);
    }
#pragma unroll
    for (int t = 0; t < DPL; ++t) a.out[(g * G + h) * hd + lane * DPL + t] = o[t] / L;
  }
  if (threadIdx.x == 0) a.counters[g] = 0;
}


// The router's last block: softmax over all E logits, then each expert's rank among them (ties to
// the lower id, as the CPU's partial_sort); the k best are written in rank order to idx and w
// (renormalized when `norm`), and their gate/up/down addresses to sel_ptrs (from `table` [E][3]),
// so the expert kernels start with one dependent load. All threads of the block call it.
constexpr int kMaxExperts = 1024;
constexpr int kMaxTopK = 16;
struct RouterSmem {
  float probs[kMaxExperts];
  float red[32];
  int sel[kMaxTopK];
  float selp[kMaxTopK];
};
__device__ __forceinline__ void router_select(const float* logits, int E, int k, bool norm, int* idx, float* w,
                                              const void* const* table, const void** sel_ptrs, RouterSmem& sm) {
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    sm.probs[i] = __ldcg(logits + i);
    mx = fmaxf(mx, sm.probs[i]);
  }
  mx = block_max(mx, sm.red);
  float sum = 0.f;
  for (int i = threadIdx.x; i < E; i += blockDim.x) sum += (sm.probs[i] = expf(sm.probs[i] - mx));
  sum = block_sum(sum, sm.red);
  for (int i = threadIdx.x; i < E; i += blockDim.x) sm.probs[i] /= sum;
  __syncthreads();
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    const float p = sm.probs[i];
    int rank = 0;
    for (int f = 0; f < E; ++f) rank += sm.probs[f] > p || (sm.probs[f] == p && f < i);
    if (rank < k) {
      sm.sel[rank] = i;
      sm.selp[rank] = p;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float chosen = 0.f;
    for (int j = 0; j < k; ++j) chosen += sm.selp[j];
    for (int j = 0; j < k; ++j) {
      idx[j] = sm.sel[j];
      w[j] = norm ? sm.selp[j] / chosen : sm.selp[j];
    }
  }
  if (threadIdx.x < 3 * k) sel_ptrs[threadIdx.x] = table[sm.sel[threadIdx.x / 3] * 3 + threadIdx.x % 3];
}

// The standalone decode attention kernel over grid (hkv, kCudaAttnSplits) (cuda_attention.cu), for a
// bf16 or an fp32 (f32_cache) KV cache.
void launch_attention_decode(const DecodeArgs& a, bool f32_cache, cudaStream_t stream);

// inv_freq[i] = 1 / theta^(2i/d) in float32, as the CPU reference computes it (host side).
inline RopeTable rope_table(float theta, int hd) {
  RopeTable r{};
  r.on = theta > 0.f;
  for (int i = 0; r.on && i < hd / 2 && i < 64; ++i) r.inv_freq[i] = 1.0f / std::pow(theta, float(2 * i) / float(hd));
  return r;
}

// The arguments of decode attention for weights w over `cache` (bf16 or fp32) at the one position
// in `positions`; q, k, v are the raw projections, out receives the heads' outputs; partials and
// counters are the split-merge scratch (counters zero, reset by each merge).
inline DecodeArgs decode_args(const AttentionWeights& w, const KVCache& cache, const Tensor& positions, int window,
                              const float* q, const float* k, const float* v, float* partials, unsigned* counters,
                              float* out, int* flags) {
  DecodeArgs a;
  a.rope = rope_table(w.rope_theta, w.head_dim);
  a.q = q;
  a.k = k;
  a.v = v;
  a.q_norm = w.q_norm.empty() ? nullptr : w.q_norm.as<uint16_t>();
  a.k_norm = w.k_norm.empty() ? nullptr : w.k_norm.as<uint16_t>();
  a.eps = w.norm_eps;
  a.scale = 1.f / std::sqrt(float(w.head_dim));
  a.kc = cache.k.data;
  a.vc = cache.v.data;
  a.capacity = int(cache.capacity());
  a.pos = positions.as<int32_t>();
  a.hq = w.num_heads;
  a.hkv = w.num_kv_heads;
  a.hd = w.head_dim;
  a.window = window;
  a.partials = partials;
  a.counters = counters;
  a.out = out;
  a.flags = flags;
  return a;
}

}  // namespace cuda
}  // namespace omni
