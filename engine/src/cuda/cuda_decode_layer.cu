// decoder_layer() for one decode row of a MoE layer (the thinker's) as six kernels instead of the eight
// dependent launches of the separate ops (add+norm, q/k/v GEMV, attention, o_proj, add+norm, router +
// top-k, expert gate/up, expert down), whose boundaries each cost the drain of one kernel and the ramp
// of the next (~4-5 us, docs/performance.md). The residual add + RMSNorm is recomputed by every block
// of the q/k/v GEMV (qkv_norm_kernel) and of the router (router_norm_kernel); attention, o_proj and
// the experts are the standalone decode kernels. CudaTuning::decode_layer = 0 runs the separate ops.
//
// In order:
//   qkv_norm_kernel     xb = x + branch; q|k|v = W_qkv (in_norm * xb) / rms(xb)   (16 rows per block)
//   attention           the decode attention (cuda_decode_items.cuh)
//   o_proj              o_out = W_o o                                              (launch_gemv)
//   router_norm_kernel  x = xb + o_out; normed = rms_norm(x); router logits; the last block selects the top-k
//   experts             act_j = silu(gate_j normed) * up_j normed; branch = sum_j w_j down_j act_j
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_decode_items.cuh"
#include "cuda/cuda_kernels.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kLayerThreads = kDecWarps * kWarp;
constexpr int kStageFloats = 8192;  // the normed input in shared memory: H at most
constexpr int kQkvRows = 2;         // q/k/v rows per warp: 320 blocks at 3 per SM for the thinker, one wave

// One layer's counters (CudaMoeLayout::decode_counters): zero at load; each is reset by its last user.
struct LayerCounters {
  alignas(128) unsigned router_arrive;              // router blocks finished; reset by the last
  alignas(128) unsigned attn_merge[kCudaMaxHeads];  // per kv head: splits finished; reset by the merging split
};
static_assert(sizeof(LayerCounters) <= kCudaLayerCounterBytes, "LayerCounters outgrew its allocation");
static_assert(kMaxTopK >= kCudaMaxTopK, "router_select's shared memory holds kCudaMaxTopK experts");

struct LayerArgs {
  // qkv_norm_kernel
  const float* x;       // residual in (read by qkv_norm_kernel; written by router_norm_kernel)
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
  // router_norm_kernel
  const float* o_out;  // the o_proj output
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
  LayerCounters* ctr;
};

union RouterNormSmem {
  RouterSmem router;
  float xs[kStageFloats];
};

// xs[i] = w[i] * (a[i] + b[i]) for i < n (b may be null; n % 4 == 0), a + b also written to
// sum_out when given; returns 1 / rms(a + b) to every thread.
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

// This lane's part of row w4 (chunks of 8) . x: the U chunks already in `first`, then the rest.
// x is read with plain loads (shared memory).
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

// R rows per warp of [wq; wk; wv] (block covers 8 R rows; row = block*8R + warp + 8r); the normed input is
// recomputed per block into shared memory. Block 0 writes xb.
template <int R>
__global__ void __launch_bounds__(kLayerThreads, 3) qkv_norm_kernel(LayerArgs a) {
  __shared__ __align__(16) float xs[kStageFloats];
  __shared__ float red[32];
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, chunks = a.H >> 3, item = blockIdx.x;
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
  const float inv = stage_norm(a.x, a.branch, a.in_norm, a.H, a.eps, item == 0 ? a.xb : nullptr, xs, red);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int row = item * kDecWarps * R + (threadIdx.x >> 5) + kDecWarps * r;
    if (valid[r]) {
      const float acc = warp_sum(row_dot<8>(first[r], w4[r], chunks, xs, lane));
      if (lane == 0) a.qkv[row] = acc * inv;
    }
  }
}

// Router rows block*8 .. +7 with the residual add and the post-attention norm; block 0 writes x and
// normed; the block that finishes last selects the top-k.
__global__ void __launch_bounds__(kLayerThreads) router_norm_kernel(LayerArgs a) {
  __shared__ __align__(16) RouterNormSmem sm;
  __shared__ float red[32];
  __shared__ bool last;
  pdl_launch_dependents();
  const int item = blockIdx.x, items = gridDim.x;
  const int lane = threadIdx.x & 31, e = item * kDecWarps + (threadIdx.x >> 5);
  const bool valid = e < a.E;
  const uint4* w4 = reinterpret_cast<const uint4*>(a.router + int64_t(valid ? e : 0) * a.H);
  const int chunks = valid ? a.H >> 3 : 0;
  uint4 first[8];
  load_chunks<8>(w4, lane, chunks, first);
  pdl_wait();
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
  }
}

int ceil8(int64_t n) { return int((n + 7) / 8); }

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::decoder_layer(const DecoderLayerWeights& L, float eps, const Tensor& x, const Tensor& branch,
                                bool add_branch, const AttentionArgs& args, const Tensor& normed) {
  const AttentionWeights& w = L.attn;
  const auto* M = L.is_moe ? static_cast<const CudaMoeLayout*>(L.moe.prepared.get()) : nullptr;
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  const int64_t H = x.dim(-1);
  const KVCache* c = args.cache;
  // The six kernels cover the thinker's decode step (head_dim 128, the only shape tested; top_k * I within
  // kStageFloats as measured); everything else (prefill rows, dense or shared-expert layers, biases, other
  // head shapes) runs the separate ops. A step after an image brings its one-row rotary table (decode_rope_table).
  const bool fused =
      exec_.tuning.decode_layer == 2 && M && M->decode_counters && x.dtype == DType::F32 && x.numel() == H &&
      branch.numel() == H && normed.numel() == H && L.moe.shared.gate.empty() && c &&
      (c->k.dtype == DType::BF16 || c->k.dtype == DType::F32) && c->v.dtype == c->k.dtype && c->k.ndim == 3 &&
      c->k.dim(1) == hkv && c->k.dim(2) == hd && !args.positions.empty() &&
      (args.rope_cos.empty() || decode_rope_table(args, hd)) &&
      args.block == 0 && hq > 0 && hkv > 0 &&
      hq % hkv == 0 && hq / hkv <= kDecMaxG && hd == 128 && hq <= kCudaMaxHeads && H == M->hidden && H % 8 == 0 &&
      H <= kStageFloats && w.wq.dim(1) == H && int64_t(hq) * hd <= 4096 && w.wo.dim(1) == int64_t(hq) * hd &&
      M->inter % 8 == 0 && int64_t(L.moe.top_k) * M->inter <= kStageFloats && w.bq.empty() && w.bk.empty() &&
      w.bv.empty() && w.bo.empty() && w.wq.dtype == DType::BF16 && w.wo.dtype == DType::BF16 &&
      M->format == DType::BF16;  // Q8/Q4: separate ops
  if (!fused) return Backend::decoder_layer(L, eps, x, branch, add_branch, args, normed);
  const bool f32_cache = c->k.dtype == DType::F32;

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
  a.ctr = ctr;
  const DecodeArgs attn =
      decode_args(w, *c, args, qkv, qkv + nq, qkv + nq + nkv, attn_partials_, ctr->attn_merge, o, flags_);

  const unsigned qkv_blocks = unsigned((nq + 2 * nkv + kDecWarps * kQkvRows - 1) / (kDecWarps * kQkvRows));
  launch(qkv_norm_kernel<kQkvRows>, dim3(qkv_blocks), dim3(kLayerThreads), exec_, a);
  OMNI_LAUNCHED("qkv_norm_kernel");
  launch_attention_decode(attn, f32_cache, exec_);
  GemvArgs g;
  g.seg[0] = {w.wo.as<uint16_t>(), nullptr, o_out, int(H)};
  g.K = nq;
  g.x = o;
  launch_gemv(g, exec_);
  launch(router_norm_kernel, dim3(unsigned(ceil8(E))), dim3(kLayerThreads), exec_, a);
  OMNI_LAUNCHED("router_norm_kernel");
  launch_experts_decode(topk_ptrs_, M->table, topk_idx_, topk_w_, k, int(H), I, normed.as<float>(), act,
                        branch.as<float>(), exec_);
}

}  // namespace omni
