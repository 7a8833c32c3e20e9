// Device pieces of the decode step shared by the standalone decode kernels and decoder_layer's
// kernels (cuda_decode_layer.cu): decode attention as a work item (kv head, split) and the router's
// softmax + top-k selection. Each runs on one block of kDecWarps warps.
#pragma once
#include <cmath>

#include "backend.h"
#include "cuda/cuda_common.cuh"

namespace omni {
namespace cuda {

struct Exec;  // cuda_tuning.h

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
// half sits in lane l ^ 16. The angle of pair i is pos * inv_freq[i], or, with tables (a step
// after an image: 3-row positions, docs/model.md §3.5), the one whose cosine and sine are
// cos_tab[i] and sin_tab[i]. The table path is a separate instantiation (kTable) so that the plain step's code is
// not touched by it.
template <int DPL, bool kTable = false>
__device__ __forceinline__ void norm_rope_head(float (&v)[DPL], const uint16_t* norm_w, float eps, int pos,
                                               const float* inv_freq, const float* cos_tab, const float* sin_tab,
                                               int hd, int lane) {
  if (norm_w) {
    float ss = 0.f;
#pragma unroll
    for (int t = 0; t < DPL; ++t) ss += v[t] * v[t];
    const float inv = 1.f / sqrtf(warp_sum(ss) / float(hd) + eps);
#pragma unroll
    for (int t = 0; t < DPL; ++t) v[t] = bf16_at(norm_w, lane * DPL + t) * (v[t] * inv);
  }
  if (kTable || inv_freq) {
    const int half = hd / 2;
#pragma unroll
    for (int t = 0; t < DPL; ++t) {
      const float other = __shfl_xor_sync(kFull, v[t], 16);
      const int d = lane * DPL + t;
      const int i = d < half ? d : d - half;
      float c, s;
      if constexpr (kTable) {
        c = cos_tab[i];
        s = sin_tab[i];
      } else {
        rope_cos_sin(pos, inv_freq[i], c, s);
      }
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
  const float* rope_cos;  // [hd/2] each: the step's rotary table (AttentionArgs::rope_cos), or null
  const float* rope_sin;
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

// Stores a value as the cache stores it and returns what was stored (the bf16 cache rounds).
__device__ __forceinline__ float cache_store(uint16_t* p, int t, float v) {
  const uint16_t b = f32_to_bf16_bits(v);
  p[t] = b;
  return __uint_as_float(uint32_t(b) << 16);
}
__device__ __forceinline__ float cache_store(float* p, int t, float v) { return p[t] = v; }

// Shared memory of one attention work item.
// Keys are processed in tiles of kDecTile: their K and V rows (as fp32) are staged here once and
// read by every q-head warp of the kv head.
constexpr int kDecTile = 32;
constexpr int kDecKtLd = 32 * kDecMaxDpl + 4;  // padded K row: lanes reading different rows hit different banks
struct AttnSmem {
  float q_s[kDecMaxG][32 * kDecMaxDpl];
  float knew[32 * kDecMaxDpl], vnew[32 * kDecMaxDpl];
  float kt[kDecTile][kDecKtLd];
  float vt[kDecTile][32 * kDecMaxDpl];
  bool last_block;
};

// Four cache elements (16-byte or 8-byte aligned) as fp32. The slots read were written by earlier
// launches (this launch's new slot comes from shared memory), so the read-only path is safe.
__device__ __forceinline__ float4 cache_load4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 cache_load4(const uint16_t* p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(bf16_lo(u.x), bf16_hi(u.x), bf16_lo(u.y), bf16_hi(u.y));
}

// One tile of keys [t0, t0 + nk) of kv head g, held in registers between its loads and its
// shared-memory store so that the next tile's loads are in flight while this one is used: thread i
// holds the float4s i, i + 256, ... of the K and V rows (the new key's slot is filled from
// knew / vnew at the store).
template <int DPL>
struct TileRegs {
  static constexpr int kRow4 = 8 * DPL;                              // float4s per head row
  static constexpr int kPer = kDecTile * kRow4 / (kDecWarps * 32);  // per thread
  float4 k[kPer], v[kPer];
};
template <int DPL, typename CacheT>
__device__ __forceinline__ void load_tile(const DecodeArgs& a, int g, int t0, int nk, int pos, TileRegs<DPL>& r) {
  constexpr int kRow4 = TileRegs<DPL>::kRow4;
#pragma unroll
  for (int u = 0; u < TileRegs<DPL>::kPer; ++u) {
    const int i = threadIdx.x + u * kDecWarps * 32, row = i / kRow4, c = (i % kRow4) * 4, key = t0 + row;
    if (row < nk && key != pos) {
      const int64_t off = (int64_t(key) * a.hkv + g) * a.hd + c;
      r.k[u] = cache_load4(static_cast<const CacheT*>(a.kc) + off);
      r.v[u] = cache_load4(static_cast<const CacheT*>(a.vc) + off);
    }
  }
}
template <int DPL>
__device__ __forceinline__ void store_tile(const TileRegs<DPL>& r, int t0, int nk, int pos, const float* knew,
                                           const float* vnew, float (*kt)[kDecKtLd], float (*vt)[32 * kDecMaxDpl]) {
  constexpr int kRow4 = TileRegs<DPL>::kRow4;
#pragma unroll
  for (int u = 0; u < TileRegs<DPL>::kPer; ++u) {
    const int i = threadIdx.x + u * kDecWarps * 32, row = i / kRow4, c = (i % kRow4) * 4;
    if (row < nk) {
      const bool is_new = t0 + row == pos;
      *reinterpret_cast<float4*>(&kt[row][c]) = is_new ? *reinterpret_cast<const float4*>(knew + c) : r.k[u];
      *reinterpret_cast<float4*>(&vt[row][c]) = is_new ? *reinterpret_cast<const float4*>(vnew + c) : r.v[u];
    }
  }
}

// One work item of decode attention: kv head g, key-range split `split` of `grid_splits`
// (fixed, so a graph can replay any position; only some of them take part, below). Called by every thread of a block of kDecWarps warps; returns block-uniformly. The
// split that finishes last for head g merges all splits into a.out.
// kTable: a.rope_cos / a.rope_sin hold the step's rotary table (launch_attention_decode picks it).
template <int DPL, typename CacheT, bool kTable = false>
__device__ __forceinline__ void attention_decode_item(const DecodeArgs& a, int g, int split, int grid_splits,
                                                      AttnSmem& sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int G = a.hq / a.hkv, hd = a.hd;
  auto& q_s = sm.q_s;
  auto& knew = sm.knew;
  auto& vnew = sm.vnew;
  bool& last_block = sm.last_block;
  const int pos = *a.pos;
  if (pos < 0 || pos >= a.capacity) {
    if (threadIdx.x == 0 && g == 0 && split == 0) atomicOr(a.flags, kFlagBadPosition);
    return;  // every item returns: the counters stay untouched
  }
  const int n = pos + 1;
  const int lo = a.window > 0 ? max(0, n - a.window) : 0;
  // Only as many splits as give each at least 32 keys take part, and at most 32 (the launch grid
  // stays at grid_splits, for graph replay): short contexts skip the merge traffic, up to 32 keys
  // one block does everything (no partials, no merge), and past 1024 keys every split takes more
  // than one tile, pipelined, which costs less than merging more splits (H100, omni-bench @4000:
  // 238.9 -> 255.3 tok/s against 63 splits; tests/gpu/micro: 18.9 against 25.0 us per layer).
  constexpr int kKeysPerSplit = 32, kMaxSplits = 32;
  const int splits = max(1, min(min(grid_splits, kMaxSplits), (n - lo + kKeysPerSplit - 1) / kKeysPerSplit));
  if (split >= splits) return;
  const int chunk = (n - lo + splits - 1) / splits;
  const int start = lo + split * chunk, end = min(n, start + chunk);
  // This warp's q head (G <= kDecWarps) and, in the block that holds the new position, the new
  // key / value are loaded first: they come from L2 and would otherwise queue behind the first
  // tile's cache reads, which are requested next and arrive during the q / new-key work.
  const bool has_new = start <= pos && pos < end;
  float qv[DPL], nv[DPL];
  if (warp < G) {
#pragma unroll
    for (int t = 0; t < DPL; ++t) qv[t] = a.q[(g * G + warp) * hd + lane * DPL + t];
  }
  if (has_new && warp < 2) {
    const float* src = (warp == 0 ? a.k : a.v) + g * hd;
#pragma unroll
    for (int t = 0; t < DPL; ++t) nv[t] = src[lane * DPL + t];
  }
  TileRegs<DPL> tile;
  load_tile<DPL, CacheT>(a, g, start, min(kDecTile, end - start), pos, tile);
  if (warp < G) {
    norm_rope_head<DPL, kTable>(qv, a.q_norm, a.eps, pos, a.rope.on ? a.rope.inv_freq : nullptr, a.rope_cos,
                                a.rope_sin, hd, lane);
#pragma unroll
    for (int t = 0; t < DPL; ++t) q_s[warp][lane * DPL + t] = qv[t] * a.scale;
  }
  // The new key / value as the cache stores them (a bf16 cache rounds), written to the cache
  // slot; no other block reads that slot.
  if (has_new && warp < 2) {
    if (warp == 0)
      norm_rope_head<DPL, kTable>(nv, a.k_norm, a.eps, pos, a.rope.on ? a.rope.inv_freq : nullptr, a.rope_cos,
                                  a.rope_sin, hd, lane);
    CacheT* dst = static_cast<CacheT*>(warp == 0 ? a.kc : a.vc) + (int64_t(pos) * a.hkv + g) * hd;
    float* dst_s = warp == 0 ? knew : vnew;
#pragma unroll
    for (int t = 0; t < DPL; ++t) dst_s[lane * DPL + t] = cache_store(dst, lane * DPL + t, nv[t]);
  }
  __syncthreads();

  // One warp per q head (G <= kDecWarps; warps past G only help stage the tiles). Per tile, lane j
  // scores key j against its head's q from shared memory (no shuffle per key), then the tile's
  // softmax weights are broadcast lane by lane into P.V, where lane l owns dims [l*DPL, (l+1)*DPL).
  // The online softmax runs once per tile: one max and one rescale for 32 keys.
  const int h = warp;
  const bool active = h < G;
  float m = -INFINITY, lsum = 0.f, acc[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) acc[t] = 0.f;
  for (int t0 = start; t0 < end; t0 += kDecTile) {
    const int nk = min(kDecTile, end - t0);
    store_tile<DPL>(tile, t0, nk, pos, knew, vnew, sm.kt, sm.vt);
    if (t0 + kDecTile < end) load_tile<DPL, CacheT>(a, g, t0 + kDecTile, min(kDecTile, end - t0 - kDecTile), pos, tile);
    __syncthreads();
    if (active) {
      float sc = -INFINITY;
      if (lane < nk) {
        float d0 = 0.f, d1 = 0.f;
#pragma unroll
        for (int c = 0; c < 32 * DPL; c += 8) {
          const float4 k0 = *reinterpret_cast<const float4*>(&sm.kt[lane][c]);
          const float4 k1 = *reinterpret_cast<const float4*>(&sm.kt[lane][c + 4]);
          const float4 q0 = *reinterpret_cast<const float4*>(&q_s[h][c]);
          const float4 q1 = *reinterpret_cast<const float4*>(&q_s[h][c + 4]);
          d0 = fmaf(q0.x, k0.x, fmaf(q0.y, k0.y, fmaf(q0.z, k0.z, fmaf(q0.w, k0.w, d0))));
          d1 = fmaf(q1.x, k1.x, fmaf(q1.y, k1.y, fmaf(q1.z, k1.z, fmaf(q1.w, k1.w, d1))));
        }
        sc = d0 + d1;
      }
      const float mn = fmaxf(m, warp_max(sc));  // finite: the tile holds >= 1 key
      const float corr = __expf(m - mn), p = lane < nk ? __expf(sc - mn) : 0.f;
      lsum = lsum * corr + p;
#pragma unroll
      for (int t = 0; t < DPL; ++t) acc[t] *= corr;
      for (int j = 0; j < nk; ++j) {
        const float pj = __shfl_sync(kFull, p, j);
        const float* vr = &sm.vt[j][lane * DPL];
#pragma unroll
        for (int t = 0; t < DPL; ++t) acc[t] = fmaf(pj, vr[t], acc[t]);
      }
      m = mn;
    }
    __syncthreads();  // the next tile overwrites kt / vt
  }
  // This split's result per head: unnormalized output, max and sum. A lone split's result is the
  // answer: it writes a.out itself and skips the partials, the fence and the counter.
  const bool alone = splits == 1;
  const int stride = hd + 4;  // 16-byte aligned rows: O[hd], then max and sum
  if (active) {
    const float L = warp_sum(lsum);
    if (alone) {
#pragma unroll
      for (int t = 0; t < DPL; ++t) a.out[(g * G + h) * hd + lane * DPL + t] = acc[t] / L;
    } else {
      float* part = a.partials + (int64_t(g * G + h) * splits + split) * stride;
#pragma unroll
      for (int t = 0; t < DPL; ++t) part[lane * DPL + t] = acc[t];
      if (lane == 0) {
        part[hd] = m;
        part[hd + 1] = L;
      }
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
    // 16 splits' rows in flight per lane (DPL contiguous floats each, one vector load).
    for (int sp0 = 0; sp0 < splits; sp0 += 16) {
      float r[16][DPL];
#pragma unroll
      for (int q = 0; q < 16; ++q) {
        const float* src = part + (sp0 + q) * stride + lane * DPL;
        if (sp0 + q < splits) {
          if constexpr (DPL == 4) {
            const float4 v = __ldcg(reinterpret_cast<const float4*>(src));
            r[q][0] = v.x, r[q][1] = v.y, r[q][2] = v.z, r[q][3] = v.w;
          } else {
#pragma unroll
            for (int t = 0; t < DPL; ++t) r[q][t] = __ldcg(src + t);
          }
        }
      }
#pragma unroll
      for (int q = 0; q < 16; ++q) {
        const int sp = sp0 + q;
        const float es = __shfl_sync(kFull, sp < 32 ? e[0] : e[1], sp & 31);
        if (sp < splits) {
#pragma unroll
          for (int t = 0; t < DPL; ++t) o[t] = fmaf(es, r[q][t], o[t]);
        }
      }
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
void launch_attention_decode(const DecodeArgs& a, bool f32_cache, const Exec& ex);

// inv_freq[i] = 1 / theta^(2i/d) in float32, as the CPU reference computes it (host side).
inline RopeTable rope_table(float theta, int hd) {
  RopeTable r{};
  r.on = theta > 0.f;
  for (int i = 0; r.on && i < hd / 2 && i < 64; ++i) r.inv_freq[i] = 1.0f / std::pow(theta, float(2 * i) / float(hd));
  return r;
}

// True when `args` carries a rotary table the decode kernels take: one row, fp32, on the device (decode_args).
inline bool decode_rope_table(const AttentionArgs& args, int hd) {
  auto one_row = [&](const Tensor& t) { return t.dtype == DType::F32 && t.on_device && t.numel() == hd / 2; };
  return one_row(args.rope_cos) && one_row(args.rope_sin);
}

// The arguments of decode attention for weights w over `cache` (bf16 or fp32) at the one position
// in `positions` (its cache slot, and its rotary position unless `args` carries a one-row table:
// decode_rope_table); q, k, v are the raw projections, out receives the heads' outputs; partials and
// counters are the split-merge scratch (counters zero, reset by each merge).
inline DecodeArgs decode_args(const AttentionWeights& w, const KVCache& cache, const AttentionArgs& args,
                              const float* q, const float* k, const float* v, float* partials, unsigned* counters,
                              float* out, int* flags) {
  const Tensor& positions = args.positions;
  const int window = args.sliding_window;
  DecodeArgs a;
  a.rope = rope_table(w.rope_theta, w.head_dim);
  const bool table = decode_rope_table(args, w.head_dim);
  a.rope_cos = table ? args.rope_cos.as<float>() : nullptr;
  a.rope_sin = table ? args.rope_sin.as<float>() : nullptr;
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
