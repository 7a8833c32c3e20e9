// decoder_layer() for one decode row of a MoE layer (the thinker's), instead of the eight dependent
// launches of the separate ops (add+norm, q/k/v GEMV, attention, o_proj, add+norm, router + top-k,
// expert gate/up, expert down), whose boundaries each cost the drain of one kernel and the ramp of
// the next (~4-5 us, docs/performance.md). Two ways (OMNI_CUDA_FUSED_LAYER):
//
// 2 (default): six kernels. The residual add + RMSNorm is recomputed by every block of the q/k/v
//   GEMV (stage 0 below, one item per block) and of the router (stage 3); attention, o_proj and the
//   experts are the standalone decode kernels. Measured +3-4% over the eight kernels (runs 13-14).
//
// 1: the whole layer as ONE persistent kernel. Work items are handed out by an atomic ticket in stage
//   order; an item waits only on the done-counter of the stage before it, whose items all hold
//   smaller tickets and so were already taken by running blocks: no deadlock, whatever the grid size
//   and however blocks are scheduled. An item of a stage with static weights (q/k/v, o_proj, router;
//   expert down once the top-k is known) loads its weights into registers before it waits. Measured
//   7-8% slower than the eight kernels (runs 11-14: each block waits out one load round trip per
//   item, and attention's serial chain is exposed); kept, tested, for the next round.
//
// Stages, in ticket order:
//   0  xb = x + branch; q|k|v = W_qkv (in_norm * xb) / rms(xb)  (8 rows per item; the norm is
//      recomputed per item from L2 into shared memory, no separate norm kernel)
//   1  attention: (kv head, split) items of the decode attention (cuda_decode_items.cuh)
//   2  o_out = W_o o                                             (8 rows per item)
//   3  x = xb + o_out; normed = rms_norm(x); router logits; the last item selects the top-k
//   4  act_j = silu(gate_j normed) * up_j normed                 (8 rows of one expert per item)
//   5  branch[h] = sum_j w_j down_j[h] . act_j                   (8 rows per item, experts in order)
#include <cstdio>
#include <cstdlib>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_decode_items.cuh"
#include "cuda/cuda_kernels.h"

namespace omni {
namespace cuda {
namespace {

using u64 = unsigned long long;
constexpr int kLayerThreads = kDecWarps * kWarp;
constexpr int kStageFloats = 8192;  // activations staged in shared memory: H and top_k * I at most
constexpr int kDownHoist = 4;       // experts whose down rows are loaded before the gate/up stage ends
constexpr int kDownChunks = 3;      // 16-byte chunks per lane per down row hoisted (I = 768: the whole row)
// OMNI_CUDA_FUSED_OPT bits (default all):
constexpr int kOptCache = 1;  // consecutive items of a stage reuse the staged input and a seen done-counter
constexpr int kOptQkv2 = 2;   // stage 0: two rows per warp (16 per item, half the items)
constexpr int kOptSleep = 4;  // pollers back off 256 ns between polls of a done-counter
// Take the next ticket while an item of stage 0 or 1 runs too (run 11). Off: only items of stages
// >= 2 do, so that no block holds two attention items (each a serial ~8 us at long contexts) while
// others wait.
constexpr int kOptPrefetchEarly = 8;

// One layer's counters: zero at load, never reset. Each launch takes exactly items + gridDim.x
// tickets (a block takes tickets until one lies past the last item), so a ticket's launch is
// ticket / (items + grid), and stage s of launch e is done when done[s] reaches (e + 1) * its item
// count (stage 3: (e + 1), one increment by the item that selects the top-k). Eager launches and
// graph replays mix freely; 64 bits never wrap.
struct LayerCounters {
  // Each on its own 128-byte line: hundreds of blocks poll the done-counters while others take
  // tickets (run 11: all of them on one line made every stage slower).
  alignas(128) u64 ticket;
  struct alignas(128) Done {
    u64 v;
  } done[5];
  alignas(128) unsigned router_arrive;              // router items finished; reset by the last
  alignas(128) unsigned attn_merge[kCudaMaxHeads];  // per kv head: splits finished; reset by the merging split
};
static_assert(sizeof(LayerCounters) <= kCudaLayerCounterBytes, "LayerCounters outgrew its allocation");
static_assert(kMaxTopK >= kCudaMaxTopK, "router_select's shared memory holds kCudaMaxTopK experts");

struct LayerArgs {
  // stage 0
  const float* x;       // residual in (read by stage 0; written by stage 3)
  const float* branch;  // previous feed-forward output, or null (first layer)
  float* xb;            // x + branch
  const uint16_t* in_norm;
  const uint16_t* wq;
  const uint16_t* wk;
  const uint16_t* wv;
  int nq, nkv;  // rows of wq; of wk and wv
  float* qkv;   // [nq + 2 nkv]
  int H;
  float eps;
  // stage 1 (q, k, v point into qkv; out is o)
  DecodeArgs attn;
  // stage 2
  const uint16_t* wo;
  int Ko;
  float* o_out;
  // stage 3
  const uint16_t* post_norm;
  float* x_out;  // the same tensor as x
  float* normed;
  const uint16_t* router;
  int E, k;
  bool norm_topk;
  float* logits;
  const void* const* table;
  const void** sel_ptrs;
  int* sel_idx;
  float* sel_w;
  // stages 4, 5
  int I;
  float* act;
  float* out;
  LayerCounters* ctr;
  int end0, end1, end2, end3, end4, end5;  // ticket ranges of the stages
  int opt;    // kOpt* bits (OMNI_CUDA_FUSED_OPT, for A/B timing)
  bool standalone;  // stage 0 / stage 3 as kernels of their own (mode 2): waits are pdl_wait
  u64* prof;  // null, or [6][4] stage times (OMNI_CUDA_LAYER_PROFILE=1)
};

// Block-local state carried from one item to the next (the same in every thread of a block).
struct BlockState {
  int staged = -1;     // the stage whose input is still in shared memory (xs), or -1
  float inv = 0.f;     // stage 0: 1 / rms of the staged input
  unsigned seen = 0;   // bit s: done[s] already seen complete in this launch
};

union LayerSmem {
  AttnSmem attn;
  RouterSmem router;
  float xs[kStageFloats];
};

__device__ __forceinline__ u64 load_acquire(const u64* p) {
  u64 v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ u64 global_ns() {
  u64 t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// Stage timing (thread 0, when a.prof is set): [s][0] ~(first ready), [s][1] last ready,
// [s][2] last end, [s][3] ~(first ticket); minima are kept as the maximum of the complement.
__device__ __forceinline__ void prof_mark(const LayerArgs& a, int s, int what) {
  if (a.prof && threadIdx.x == 0) {
    const u64 t = global_ns();
    atomicMax(a.prof + s * 4 + what, what == 0 || what == 3 ? ~t : t);
  }
}
__device__ __forceinline__ void prof_ready(const LayerArgs& a, int s) {
  prof_mark(a, s, 0);
  prof_mark(a, s, 1);
}

// The whole block waits until done[s] >= target (one thread polls), then sees what the stage
// wrote. A counter already seen complete in this launch is not polled again.
__device__ __forceinline__ void wait_done(const LayerArgs& a, int s, u64 target, BlockState& b) {
  if (a.standalone) return pdl_wait();
  if ((a.opt & kOptCache) && (b.seen >> s & 1u)) return;
  if (threadIdx.x == 0) {
    while (load_acquire(&a.ctr->done[s].v) < target) {
      if (a.opt & kOptSleep) __nanosleep(256);
    }
    __threadfence();
  }
  __syncthreads();
  b.seen |= 1u << s;
}

// xs[i] = w[i] * (a[i] + b[i]) for i < n (b may be null; n % 4 == 0), a + b also written to
// sum_out when given; returns 1 / rms(a + b) to every thread. Plain loads: a and b may have been
// written by this kernel.
__device__ __forceinline__ float stage_norm(const float* a, const float* b, const uint16_t* w, int n, float eps,
                                            float* sum_out, float* xs, float* red) {
  float ss = 0.f;
  for (int i = threadIdx.x * 4; i < n; i += blockDim.x * 4) {
    float4 v = *reinterpret_cast<const float4*>(a + i);
    if (b) {
      const float4 u = *reinterpret_cast<const float4*>(b + i);
      v.x += u.x;
      v.y += u.y;
      v.z += u.z;
      v.w += u.w;
    }
    if (sum_out) *reinterpret_cast<float4*>(sum_out + i) = v;
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    const uint2 wb = *reinterpret_cast<const uint2*>(w + i);
    *reinterpret_cast<float4*>(xs + i) =
        make_float4(bf16_lo(wb.x) * v.x, bf16_hi(wb.x) * v.y, bf16_lo(wb.y) * v.z, bf16_hi(wb.y) * v.w);
  }
  return 1.f / sqrtf(block_sum(ss, red) / float(n) + eps);
}

// Copies n floats (n % 4 == 0) into shared memory and waits for the whole block.
__device__ __forceinline__ void stage_copy(const float* src, int n, float* xs) {
  for (int i = threadIdx.x * 4; i < n; i += blockDim.x * 4)
    *reinterpret_cast<float4*>(xs + i) = *reinterpret_cast<const float4*>(src + i);
  __syncthreads();
}

// This lane's part of row w4 (chunks of 8) . x: the U chunks already in `first`, then the rest.
// x is read with plain loads (shared memory or what this kernel wrote).
template <int U>
__device__ __forceinline__ float row_dot(const uint4 (&first)[U], const uint4* w4, int chunks, const float* x,
                                         int lane) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float acc = 0.f;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = lane + u * kWarp;
    if (c < chunks) acc += dot8(first[u], x4[2 * c], x4[2 * c + 1]);
  }
  for (int base = lane + kWarp * U; base < chunks; base += kWarp * U) {
    uint4 wv[U];
    load_chunks<U>(w4, base, chunks, wv);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      if (c < chunks) acc += dot8(wv[u], x4[2 * c], x4[2 * c + 1]);
    }
  }
  return acc;
}

// Stage 0: R rows per warp of [wq; wk; wv] (item covers 8 R rows; row = item*8R + warp + 8r).
template <int R>
__device__ __forceinline__ void qkv_item(const LayerArgs& a, int item, float* xs, float* red, BlockState& b) {
  const int lane = threadIdx.x & 31, chunks = a.H >> 3;
  const uint4* w4[R];
  bool valid[R];
  uint4 first[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = item * kDecWarps * R + (threadIdx.x >> 5) + kDecWarps * r;
    valid[r] = row < a.nq + 2 * a.nkv;
    const uint16_t* w = !valid[r]            ? a.wq
                        : row < a.nq         ? a.wq + int64_t(row) * a.H
                        : row < a.nq + a.nkv ? a.wk + int64_t(row - a.nq) * a.H
                                             : a.wv + int64_t(row - a.nq - a.nkv) * a.H;
    w4[r] = reinterpret_cast<const uint4*>(w);
    load_chunks<8>(w4[r], lane, valid[r] ? chunks : 0, first[r]);
  }
  pdl_wait();  // x and branch come from the previous kernel
  prof_ready(a, 0);
  // The normed input stays in xs for the block's next stage-0 item. Item 0 (the launch's first
  // ticket, so always a block's first item) writes xb.
  if (!((a.opt & kOptCache) && b.staged == 0)) {
    b.inv = stage_norm(a.x, a.branch, a.in_norm, a.H, a.eps, item == 0 ? a.xb : nullptr, xs, red);
    b.staged = 0;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = item * kDecWarps * R + (threadIdx.x >> 5) + kDecWarps * r;
    if (valid[r]) {
      const float acc = warp_sum(row_dot<8>(first[r], w4[r], chunks, xs, lane));
      if (lane == 0) a.qkv[row] = acc * b.inv;
    }
  }
}

// Stage 2: rows item*8 .. +7 of wo; the whole row (K <= 4096) is loaded before the wait.
__device__ __forceinline__ void oproj_item(const LayerArgs& a, int item, u64 target, BlockState& b) {
  const int lane = threadIdx.x & 31, row = item * kDecWarps + (threadIdx.x >> 5);
  const bool valid = row < a.H;
  const uint4* w4 = reinterpret_cast<const uint4*>(a.wo + int64_t(valid ? row : 0) * a.Ko);
  const int chunks = valid ? a.Ko >> 3 : 0;
  uint4 first[16];
  load_chunks<16>(w4, lane, chunks, first);
  wait_done(a, 1, target, b);
  prof_ready(a, 2);
  if (valid) {
    const float acc = warp_sum(row_dot<16>(first, w4, chunks, a.attn.out, lane));
    if (lane == 0) a.o_out[row] = acc;
  }
}

// Stage 3: router rows item*8 .. +7 with the residual add and the post-attention norm; item 0
// writes x and normed; the item that finishes last selects the top-k and completes the stage.
__device__ __forceinline__ void router_item(const LayerArgs& a, int item, int items, u64 target, LayerSmem& sm,
                                            float* red, bool& last, BlockState& b) {
  const int lane = threadIdx.x & 31, e = item * kDecWarps + (threadIdx.x >> 5);
  const bool valid = e < a.E;
  const uint4* w4 = reinterpret_cast<const uint4*>(a.router + int64_t(valid ? e : 0) * a.H);
  const int chunks = valid ? a.H >> 3 : 0;
  uint4 first[8];
  load_chunks<8>(w4, lane, chunks, first);
  wait_done(a, 2, target, b);
  prof_ready(a, 3);
  const float inv = stage_norm(a.xb, a.o_out, a.post_norm, a.H, a.eps, item == 0 ? a.x_out : nullptr, sm.xs, red);
  if (item == 0)
    for (int i = threadIdx.x; i < a.H; i += blockDim.x) a.normed[i] = sm.xs[i] * inv;
  if (valid) {
    const float acc = warp_sum(row_dot<8>(first, w4, chunks, sm.xs, lane));
    if (lane == 0) a.logits[e] = acc * inv;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(&a.ctr->router_arrive, 1u) == unsigned(items - 1);
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  router_select(a.logits, a.E, a.k, a.norm_topk, a.sel_idx, a.sel_w, a.table, a.sel_ptrs, sm.router);
  __syncthreads();
  if (threadIdx.x == 0) {
    a.ctr->router_arrive = 0;
    __threadfence();
    if (!a.standalone) atomicAdd(&a.ctr->done[3].v, 1ull);
  }
}

// Stage 4: rows item*8 .. +7 of the selected experts' gate and up (one expert per item: I % 8 == 0).
__device__ __forceinline__ void gateup_item(const LayerArgs& a, int item, u64 target, float* xs, BlockState& b) {
  wait_done(a, 3, target, b);
  prof_ready(a, 4);
  const int lane = threadIdx.x & 31, gw = item * kDecWarps + (threadIdx.x >> 5);
  const int j = gw / a.I, i = gw % a.I;
  const bool valid = j < a.k;
  const int jj = valid ? j : 0;
  const uint4* g4 = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.sel_ptrs[jj * 3]) + int64_t(i) * a.H);
  const uint4* u4 =
      reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.sel_ptrs[jj * 3 + 1]) + int64_t(i) * a.H);
  const int chunks = valid ? a.H >> 3 : 0;
  uint4 gv[8], uv[8];
  load_chunks<8>(g4, lane, chunks, gv);
  load_chunks<8>(u4, lane, chunks, uv);
  if (!((a.opt & kOptCache) && b.staged == 4)) {
    stage_copy(a.normed, a.H, xs);
    b.staged = 4;
  }
  if (!valid) return;
  const float g = warp_sum(row_dot<8>(gv, g4, chunks, xs, lane));
  const float u = warp_sum(row_dot<8>(uv, u4, chunks, xs, lane));
  if (lane == 0) a.act[j * a.I + i] = silu(g) * u;
}

// Down rows h of experts j0 .. j0 + NJ - 1: the first kDownChunks chunks per lane of each.
template <int NJ>
__device__ __forceinline__ void load_down(const LayerArgs& a, int j0, int h, int chunks, int lane,
                                          uint4 (&w)[NJ][kDownChunks]) {
#pragma unroll
  for (int q = 0; q < NJ; ++q) {
    const bool ok = j0 + q < a.k;
    const uint4* w4 =
        reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.sel_ptrs[(ok ? j0 + q : 0) * 3 + 2]) + int64_t(h) * a.I);
    load_chunks<kDownChunks>(w4, lane, ok ? chunks : 0, w[q]);
  }
}

// acc += sum over experts j0 .. j0 + NJ - 1 (in order) of w_j * (down_j[h] . act_j), act in xs.
template <int NJ>
__device__ __forceinline__ float apply_down(const LayerArgs& a, int j0, int h, int chunks, int lane,
                                            const uint4 (&w)[NJ][kDownChunks], const float* xs, float acc) {
#pragma unroll
  for (int q = 0; q < NJ; ++q) {
    const int j = j0 + q;
    if (j >= a.k) break;
    const uint4* w4 = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(a.sel_ptrs[j * 3 + 2]) + int64_t(h) * a.I);
    const float d = warp_sum(row_dot<kDownChunks>(w[q], w4, chunks, xs + j * a.I, lane));
    acc += a.sel_w[j] * d;
  }
  return acc;
}

// Stage 5: rows item*8 .. +7 of the weighted sum of the experts' down projections. The top-k is
// known once stage 3 is done, so the first experts' rows are loaded before waiting for stage 4.
__device__ __forceinline__ void down_item(const LayerArgs& a, int item, u64 target3, u64 target4, float* xs,
                                          BlockState& b) {
  wait_done(a, 3, target3, b);
  const int lane = threadIdx.x & 31, h = item * kDecWarps + (threadIdx.x >> 5);
  const bool valid = h < a.H;
  const int chunks = valid ? a.I >> 3 : 0, hh = valid ? h : 0;
  uint4 w[kDownHoist][kDownChunks];
  load_down<kDownHoist>(a, 0, hh, chunks, lane, w);
  wait_done(a, 4, target4, b);
  prof_ready(a, 5);
  if (!((a.opt & kOptCache) && b.staged == 5)) {
    stage_copy(a.act, a.k * a.I, xs);
    b.staged = 5;
  }
  float acc = apply_down<kDownHoist>(a, 0, hh, chunks, lane, w, xs, 0.f);
  for (int j0 = kDownHoist; j0 < a.k; j0 += kDownHoist) {
    load_down<kDownHoist>(a, j0, hh, chunks, lane, w);
    acc = apply_down<kDownHoist>(a, j0, hh, chunks, lane, w, xs, acc);
  }
  if (valid && lane == 0) a.out[h] = acc;
}

template <typename CacheT>
__global__ void __launch_bounds__(kLayerThreads, 2) decoder_layer_kernel(LayerArgs a) {
  __shared__ __align__(16) LayerSmem sm;
  __shared__ float red[32];
  __shared__ u64 ticket;
  __shared__ bool last;
  // The next kernel's blocks may take SM slots as this kernel's blocks leave; they wait
  // (griddepcontrol.wait) before reading anything this layer writes.
  pdl_launch_dependents();
  const u64 per_launch = u64(a.end5) + gridDim.x;
  if (threadIdx.x == 0) ticket = atomicAdd(&a.ctr->ticket, 1ull);
  __syncthreads();
  u64 t = ticket;
  const u64 epoch = t / per_launch, base = epoch * per_launch;
  BlockState b;
  for (;;) {
    const int local = int(t - base);
    if (local >= a.end5) break;
    // The next ticket is taken now and used after this item: its round trip overlaps the work.
    const int stage = local < a.end0 ? 0 : local < a.end1 ? 1 : local < a.end2 ? 2 : local < a.end3 ? 3
                                   : local < a.end4 ? 4 : 5;
    const bool prefetch = stage >= 2 || (a.opt & kOptPrefetchEarly);
    u64 next = 0;
    if (threadIdx.x == 0 && prefetch) next = atomicAdd(&a.ctr->ticket, 1ull);
    if (stage != b.staged) b.staged = -1;  // another stage's item clobbers shared memory
    prof_mark(a, stage, 3);
    if (stage == 0) {
      if (a.opt & kOptQkv2) qkv_item<2>(a, local, sm.xs, red, b);
      else qkv_item<1>(a, local, sm.xs, red, b);
    } else if (stage == 1) {
      wait_done(a, 0, (epoch + 1) * u64(a.end0), b);
      prof_ready(a, 1);
      b.staged = -1;
      const int item = local - a.end0;
      attention_decode_item<4, CacheT>(a.attn, item / kCudaAttnSplits, item % kCudaAttnSplits, kCudaAttnSplits, sm.attn);
    } else if (stage == 2) {
      oproj_item(a, local - a.end1, (epoch + 1) * u64(a.end1 - a.end0), b);
    } else if (stage == 3) {
      b.staged = -1;
      router_item(a, local - a.end2, a.end3 - a.end2, (epoch + 1) * u64(a.end2 - a.end1), sm, red, last, b);
    } else if (stage == 4) {
      gateup_item(a, local - a.end3, epoch + 1, sm.xs, b);
    } else {
      down_item(a, local - a.end4, epoch + 1, (epoch + 1) * u64(a.end4 - a.end3), sm.xs, b);
    }
    __syncthreads();  // the item's writes are done; shared memory and `ticket` are free again
    if (threadIdx.x == 0) ticket = prefetch ? next : atomicAdd(&a.ctr->ticket, 1ull);
    __syncthreads();
    t = ticket;
    // Count the item as done; the other warps already start on the next item meanwhile.
    if (threadIdx.x == 0) {
      prof_mark(a, stage, 2);
      if (stage != 3 && stage != 5) {
        __threadfence();
        atomicAdd(&a.ctr->done[stage].v, 1ull);
      }
    }
  }
}

// Mode 2 (OMNI_CUDA_FUSED_LAYER=2): stage 0 and stage 3 as kernels of their own, one item per block;
// attention, o_proj and the experts run the standalone decode kernels in between.
// R rows per warp: R = 2 (default, OMNI_CUDA_QKV_ROWS): 320 blocks at 3 per SM, one wave, 8 KB per warp in
// flight; R = 1: MinBlocks 4 (56 registers: 640 blocks in 1.2 waves) or 5 (<= 48: one wave), OMNI_CUDA_QKVNORM_MINB.
template <int MinBlocks, int R>
__global__ void __launch_bounds__(kLayerThreads, MinBlocks) qkv_norm_kernel(LayerArgs a) {
  __shared__ __align__(16) float xs[kStageFloats];
  __shared__ float red[32];
  pdl_launch_dependents();
  BlockState b;
  qkv_item<R>(a, blockIdx.x, xs, red, b);
}
__global__ void __launch_bounds__(kLayerThreads) router_norm_kernel(LayerArgs a) {
  __shared__ __align__(16) LayerSmem sm;
  __shared__ float red[32];
  __shared__ bool last;
  pdl_launch_dependents();
  BlockState b;
  router_item(a, blockIdx.x, gridDim.x, 0, sm, red, last, b);
}

// Blocks of the persistent grid: as many as fit on the device at once (fewer would leave SMs
// idle; more would only queue).
template <typename CacheT>
int layer_grid(int sms) {
  static int blocks_per_sm = -1;
  if (blocks_per_sm < 0) {
    int n = 0;
    cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decoder_layer_kernel<CacheT>, kLayerThreads, 0),
               "cudaOccupancyMaxActiveBlocksPerMultiprocessor(decoder_layer_kernel)");
    blocks_per_sm = n;
  }
  return blocks_per_sm * sms;
}

int ceil8(int64_t n) { return int((n + 7) / 8); }

}  // namespace

int g_fused_layer = kFusedLayerDefault;
int g_fused_opt = kFusedOptDefault;
int g_qkv_norm_min_blocks = 4;
int g_qkv_rows = 2;
static_assert(kFusedOptDefault == kOptCache, "the default options: kOptCache (run 12)");

}  // namespace cuda

using namespace cuda;

void CudaBackend::decoder_layer(const DecoderLayerWeights& L, float eps, const Tensor& x, const Tensor& branch,
                                bool add_branch, const AttentionArgs& args, const Tensor& normed) {
  const AttentionWeights& w = L.attn;
  const auto* M = L.is_moe ? static_cast<const CudaMoeLayout*>(L.moe.prepared.get()) : nullptr;
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  const int64_t H = x.dim(-1);
  const KVCache* c = args.cache;
  // The fused kernel covers the thinker's decode step (head_dim 128, the only shape tested); everything
  // else (prefill rows, dense or shared-expert layers, biases, other head shapes) runs the separate ops.
  const bool fused =
      g_fused_layer && M && M->decode_counters && x.dtype == DType::F32 && x.numel() == H && branch.numel() == H &&
      normed.numel() == H && L.moe.shared.gate.empty() && c && (c->k.dtype == DType::BF16 || c->k.dtype == DType::F32) &&
      c->v.dtype == c->k.dtype && c->k.ndim == 3 && c->k.dim(1) == hkv && c->k.dim(2) == hd && !args.positions.empty() &&
      args.block == 0 && hq > 0 && hkv > 0 && hq % hkv == 0 && hq / hkv <= kDecMaxG && hd == 128 &&
      hq <= kCudaMaxHeads && H == M->hidden && H % 8 == 0 && H <= kStageFloats && w.wq.dim(1) == H &&
      int64_t(hq) * hd <= 4096 && w.wo.dim(1) == int64_t(hq) * hd && M->inter % 8 == 0 &&
      int64_t(L.moe.top_k) * M->inter <= kStageFloats && w.bq.empty() && w.bk.empty() && w.bv.empty() &&
      w.bo.empty() && w.wq.dtype == DType::BF16 && w.wo.dtype == DType::BF16 && M->format == DType::BF16;  // Q8/Q4: separate ops
  if (!fused) return Backend::decoder_layer(L, eps, x, branch, add_branch, args, normed);
  const bool f32_cache = c->k.dtype == DType::F32;
  const int grid = f32_cache ? layer_grid<float>(props_.multiProcessorCount)
                             : layer_grid<uint16_t>(props_.multiProcessorCount);
  if (grid <= 0) return Backend::decoder_layer(L, eps, x, branch, add_branch, args, normed);

  const int nq = hq * hd, nkv = hkv * hd, E = M->experts, I = M->inter, k = L.moe.top_k;
  scratch_reset();
  float* qkv = static_cast<float*>(scratch(sizeof(float) * size_t(nq + 2 * nkv), "decoder_layer"));
  float* o = static_cast<float*>(scratch(sizeof(float) * size_t(nq), "decoder_layer"));
  float* o_out = static_cast<float*>(scratch(sizeof(float) * size_t(H), "decoder_layer"));
  float* xb = static_cast<float*>(scratch(sizeof(float) * size_t(H), "decoder_layer"));
  float* logits = static_cast<float*>(scratch(sizeof(float) * size_t(E), "decoder_layer"));
  float* act = static_cast<float*>(scratch(sizeof(float) * size_t(k) * I, "decoder_layer"));
  auto* ctr = static_cast<LayerCounters*>(M->decode_counters);

  LayerArgs a{};
  a.x = x.as<float>();
  a.branch = add_branch ? branch.as<float>() : nullptr;
  a.xb = xb;
  a.in_norm = L.input_norm.as<uint16_t>();
  a.wq = w.wq.as<uint16_t>();
  a.wk = w.wk.as<uint16_t>();
  a.wv = w.wv.as<uint16_t>();
  a.nq = nq;
  a.nkv = nkv;
  a.qkv = qkv;
  a.H = int(H);
  a.eps = eps;
  a.attn = decode_args(w, *c, args.positions, args.sliding_window, qkv, qkv + nq, qkv + nq + nkv, attn_partials_,
                       ctr->attn_merge, o, flags_);
  a.wo = w.wo.as<uint16_t>();
  a.Ko = nq;
  a.o_out = o_out;
  a.post_norm = L.post_norm.as<uint16_t>();
  a.x_out = x.as<float>();
  a.normed = normed.as<float>();
  a.router = L.moe.router.as<uint16_t>();
  a.E = E;
  a.k = k;
  a.norm_topk = L.moe.norm_topk_prob;
  a.logits = logits;
  a.table = M->table;
  a.sel_ptrs = topk_ptrs_;
  a.sel_idx = topk_idx_;
  a.sel_w = topk_w_;
  a.I = I;
  a.act = act;
  a.out = branch.as<float>();
  a.ctr = ctr;
  a.opt = g_fused_opt;
  a.prof = layer_prof_ && !capturing_ ? static_cast<u64*>(layer_prof_) : nullptr;
  a.end0 = (a.opt & kOptQkv2) ? (nq + 2 * nkv + 15) / 16 : ceil8(nq + 2 * nkv);
  a.end1 = a.end0 + hkv * kCudaAttnSplits;
  a.end2 = a.end1 + ceil8(H);
  a.end3 = a.end2 + ceil8(E);
  a.end4 = a.end3 + ceil8(int64_t(k) * I);
  a.end5 = a.end4 + ceil8(H);
  if (g_fused_layer == 2) {
    a.opt = 0;
    a.prof = nullptr;
    a.standalone = true;
    if (g_qkv_rows == 2)
      launch(qkv_norm_kernel<3, 2>, dim3(unsigned((nq + 2 * nkv + 15) / 16)), dim3(kLayerThreads), stream_, a);
    else
      launch(g_qkv_norm_min_blocks == 5 ? qkv_norm_kernel<5, 1> : qkv_norm_kernel<4, 1>,
             dim3(unsigned(ceil8(nq + 2 * nkv))), dim3(kLayerThreads), stream_, a);
    OMNI_LAUNCHED("qkv_norm_kernel");
    launch_attention_decode(a.attn, f32_cache, stream_);
    GemvArgs g;
    g.seg[0] = {a.wo, nullptr, o_out, int(H)};
    g.K = nq;
    g.x = o;
    launch_gemv(g, stream_);
    launch(router_norm_kernel, dim3(unsigned(ceil8(E))), dim3(kLayerThreads), stream_, a);
    OMNI_LAUNCHED("router_norm_kernel");
    launch_experts_decode(topk_ptrs_, M->table, topk_idx_, topk_w_, k, int(H), I, normed.as<float>(), act,
                          branch.as<float>(), stream_);
    return;
  }
  if (a.prof) OMNI_CUDA(cudaMemsetAsync(a.prof, 0, sizeof(u64) * 24, stream_));
  if (f32_cache) launch(decoder_layer_kernel<float>, dim3(unsigned(grid)), dim3(kLayerThreads), stream_, a);
  else launch(decoder_layer_kernel<uint16_t>, dim3(unsigned(grid)), dim3(kLayerThreads), stream_, a);
  OMNI_LAUNCHED("decoder_layer_kernel");
  if (a.prof) record_layer_profile();
}

// Stage times of one eager launch (synchronizes): microseconds from the first ticket taken.
void CudaBackend::record_layer_profile() {
  u64 v[24];
  OMNI_CUDA(cudaMemcpyAsync(v, layer_prof_, sizeof(v), cudaMemcpyDeviceToHost, stream_));
  OMNI_CUDA(cudaStreamSynchronize(stream_));
  const u64 t0 = ~v[3];
  if (layer_prof_sum_.empty()) layer_prof_sum_.assign(24, 0.0);
  for (int s = 0; s < 6; ++s) {
    const u64 t[4] = {~v[s * 4], v[s * 4 + 1], v[s * 4 + 2], ~v[s * 4 + 3]};
    for (int w = 0; w < 4; ++w) layer_prof_sum_[size_t(s * 4 + w)] += double(int64_t(t[w] - t0)) * 1e-3;
  }
  ++layer_prof_launches_;
}

void CudaBackend::report_layer_profile() const {
  if (layer_prof_launches_ == 0) return;
  static const char* names[6] = {"qkv", "attention", "o_proj", "router", "gate/up", "down"};
  std::fprintf(stderr, "decoder_layer profile, %d eager launches, mean us from the first ticket "
               "(first ticket / first ready / last ready / last done):\n", layer_prof_launches_);
  for (int s = 0; s < 6; ++s) {
    const double* t = layer_prof_sum_.data() + s * 4;
    const double n = layer_prof_launches_;
    std::fprintf(stderr, "  %-9s %7.1f %7.1f %7.1f %7.1f\n", names[s], t[3] / n, t[0] / n, t[1] / n, t[2] / n);
  }
}

}  // namespace omni
