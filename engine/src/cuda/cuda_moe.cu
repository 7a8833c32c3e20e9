// mlp() and moe(). Decode (one row): the router GEMV ends with softmax + top-k + renorm done by
// its last block; one GEMV pass computes silu(gate x) * up x for all selected experts; one more
// computes the down projections and their weighted sum. No host round trip.
// Prefill: cuBLAS router, per-row top-k, tokens bucketed by expert on the device, then tiled
// grouped GEMMs over each expert's tokens (weights read once per tile, not once per token):
// on the tensor cores (cuda_moe_tc.cu) for large experts, else the fp32 FMA kernel below.
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_decode_items.cuh"
#include "cuda/cuda_kernels.h"
#include "quant.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kRouterCounter = 512;  // index into the backend's counters

// The experts a kernel applies: selected on the device (table + sel) or given directly.
struct ExpertSet {
  const void* const* ptrs = nullptr;   // [count][3] the selected experts' weights (decode)
  const void* const* table = nullptr;  // [E][3] gate, up, down
  const int* sel = nullptr;            // [count] expert ids
  const float* selw = nullptr;         // [count] weights; null: 1
  const uint16_t* gate = nullptr;      // direct (table == null)
  const uint16_t* up = nullptr;
  const uint16_t* down = nullptr;
  int count = 1, H = 0, I = 0;
};

__device__ __forceinline__ const uint16_t* expert_w(const ExpertSet& s, int j, int which) {
  if (s.ptrs) return static_cast<const uint16_t*>(s.ptrs[j * 3 + which]);
  if (!s.table) return which == 0 ? s.gate : which == 1 ? s.up : s.down;
  return static_cast<const uint16_t*>(s.table[s.sel[j] * 3 + which]);
}

// One warp: softmax over E logits, top-k (ties to the lower id), optional renormalization.
__device__ void select_topk(const float* logits, int E, int k, bool norm, float* probs, int* out_idx,
                            float* out_w) {
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, __ldcg(logits + e));
  mx = warp_max(mx);
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) {
    const float p = expf(__ldcg(logits + e) - mx);
    probs[e] = p;
    sum += p;
  }
  sum = warp_sum(sum);
  __syncwarp();
  for (int e = lane; e < E; e += 32) probs[e] /= sum;
  __syncwarp();
  float chosen_sum = 0.f;
  for (int j = 0; j < k; ++j) {
    float best = -1.f;
    int bi = 0x7fffffff;
    for (int e = lane; e < E; e += 32)
      if (probs[e] > best || (probs[e] == best && e < bi)) {
        best = probs[e];
        bi = e;
      }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(kFull, best, o);
      const int oi = __shfl_xor_sync(kFull, bi, o);
      if (ob > best || (ob == best && oi < bi)) {
        best = ob;
        bi = oi;
      }
    }
    if (lane == 0) {
      out_idx[j] = bi;
      out_w[j] = best;
      probs[bi] = -2.f;  // taken
    }
    chosen_sum += best;
    __syncwarp();
  }
  if (norm && lane < k) out_w[lane] /= chosen_sum;
}

// Hoist: the first 8 chunks per lane of the router row (all of it for H = 2048) are loaded into
// registers before pdl_wait (they depend on no earlier kernel); otherwise only pulled toward L2.
template <bool Hoist>
__global__ void __launch_bounds__(kWarps * kWarp) router_topk_kernel(const uint16_t* router, const float* x, int E,
                                                                    int H, int k, bool norm, float* logits,
                                                                    unsigned* counter, int* idx, float* w,
                                                                    const void* const* table, const void** sel_ptrs) {
  __shared__ RouterSmem sm;
  __shared__ bool last;
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, e = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if constexpr (Hoist) {
    constexpr int U = 8;
    const uint4* w4 = reinterpret_cast<const uint4*>(router + int64_t(e < E ? e : 0) * H);
    const int chunks = H >> 3;
    uint4 first[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = lane + u * kWarp;
      first[u] = e < E && c < chunks ? load_stream(w4 + c) : make_uint4(0, 0, 0, 0);
    }
    if (e < E && chunks > kWarp * U) prefetch_l2(w4 + kWarp * U, int64_t(chunks - kWarp * U) * 16, lane);
    pdl_wait();
    if (e < E) {
      const float4* x4 = reinterpret_cast<const float4*>(x);
      float acc = 0.f;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = lane + u * kWarp;
        if (c < chunks) acc += dot8(first[u], __ldg(x4 + 2 * c), __ldg(x4 + 2 * c + 1));
      }
      if (chunks > kWarp * U) acc += lane_dot<4>(router + int64_t(e) * H + kWarp * U * 8, x + kWarp * U * 8,
                                                 H - kWarp * U * 8, lane);
      const float v = warp_sum(acc);
      if (lane == 0) logits[e] = v;
    }
  } else {
    if (e < E) prefetch_l2(router + int64_t(e) * H, int64_t(H) * 2, lane);
    pdl_wait();
    if (e < E) {
      const float v = warp_sum(lane_dot<4>(router + int64_t(e) * H, x, H, lane));
      if (lane == 0) logits[e] = v;
    }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  router_select(logits, E, k, norm, idx, w, table, sel_ptrs, sm);
  if (threadIdx.x == 0) *counter = 0;
}

__global__ void topk_rows_kernel(const float* logits, int E, int k, bool norm, int* idx, float* w) {
  __shared__ float probs[kMaxExperts];
  const int s = blockIdx.x;
  select_topk(logits + int64_t(s) * E, E, k, norm, probs, idx + s * k, w + s * k);
}

// act[j][i] = silu(gate_j x)[i] * (up_j x)[i]; one warp per (j, i).
__device__ __forceinline__ void gateup_body(const ExpertSet& s, const float* x, float* act) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, gw = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int j = gw / s.I, i = gw % s.I;
  if (j >= s.count) return;
  float g = 0.f, u = 0.f;
  lane_dot2<8>(expert_w(s, j, 0) + int64_t(i) * s.H, expert_w(s, j, 1) + int64_t(i) * s.H, x, s.H, lane, g, u);
  g = warp_sum(g);
  u = warp_sum(u);
  if (lane == 0) act[j * s.I + i] = silu(g) * u;
}
// ptxas takes 89 registers: 2 blocks per SM.
__global__ void __launch_bounds__(kWarps * kWarp) gateup_kernel(ExpertSet s, const float* x, float* act) {
  gateup_body(s, x, act);
}

// Gate and up rows on different warps (H = 2048: one 4 KB row, 8 chunks per lane, per warp): warp w
// of a block computes row (w & 3) of the block's four (expert, i) pairs of matrix w >> 2; the pair's
// two results meet in shared memory. 64 registers (gateup_kernel: 89): 4 blocks per SM instead of 2,
// 40% more bytes in flight per SM (H100: +2.4% tok/s at ctx 64, +2.9% at 2048; at 5 blocks per SM it
// spills and gains 0.6%, and gateup_kernel with x staged in shared memory at 3 blocks spilled and lost 1.7%).
__global__ void __launch_bounds__(kWarps * kWarp, 4) gateup_split_kernel(ExpertSet s, const float* x, float* act) {
  __shared__ float res[2][kWarps / 2];
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, which = w / (kWarps / 2), q = w % (kWarps / 2);
  const int gp = blockIdx.x * (kWarps / 2) + q, j = gp / s.I, i = gp % s.I;
  if (j < s.count) {
    const uint4* w4 = reinterpret_cast<const uint4*>(expert_w(s, j, which) + int64_t(i) * s.H);
    uint4 wv[8];
    load_chunks<8>(w4, lane, 256, wv);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float acc = 0.f;
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int c = lane + u * kWarp;
      acc += dot8(wv[u], __ldg(x4 + 2 * c), __ldg(x4 + 2 * c + 1));
    }
    acc = warp_sum(acc);
    if (lane == 0) res[which][q] = acc;
  }
  __syncthreads();
  if (threadIdx.x < kWarps / 2) {
    const int p = blockIdx.x * (kWarps / 2) + threadIdx.x, jj = p / s.I;
    if (jj < s.count) act[jj * s.I + p % s.I] = silu(res[0][threadIdx.x]) * res[1][threadIdx.x];
  }
}

void launch_gateup(dim3 grid, const Exec& ex, const ExpertSet& s, const float* x, float* act) {
  if (ex.tuning.gateup_split && s.H == 2048) {
    const unsigned blocks = unsigned((int64_t(s.count) * s.I + kWarps / 2 - 1) / (kWarps / 2));
    return launch(gateup_split_kernel, dim3(blocks), dim3(kWarps * kWarp), ex, s, x, act);
  }
  launch(gateup_kernel, grid, dim3(kWarps * kWarp), ex, s, x, act);
}

// out[h] = sum_j w_j * (down_j act_j)[h]: warps of a block split (row, expert) pairs; the
// per-expert terms are summed in expert order through shared memory (deterministic).
__device__ __forceinline__ void down_body(const ExpertSet& s, const float* act, float* out, float* part) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int per = s.count < kWarps ? s.count : kWarps, rows_per_block = kWarps / per;
  const int hr = warp / per, j0 = warp % per, h = blockIdx.x * rows_per_block + hr;
  float acc = 0.f;
  if (hr < rows_per_block && h < s.H) {
    for (int j = j0; j < s.count; j += per) {
      const float d = warp_sum(lane_dot<4>(expert_w(s, j, 2) + int64_t(h) * s.I, act + j * s.I, s.I, lane));
      acc += (s.selw ? s.selw[j] : 1.f) * d;
    }
  }
  if (lane == 0) part[warp] = acc;
  __syncthreads();
  if (threadIdx.x < rows_per_block) {
    const int hh = blockIdx.x * rows_per_block + threadIdx.x;
    if (hh < s.H) {
      float sum = 0.f;
      for (int q = 0; q < per; ++q) sum += part[threadIdx.x * per + q];
      out[hh] = sum;
    }
  }
}
// ptxas takes 44 registers: 5 blocks per SM, the 2048 blocks of a thinker layer in ~3.1 waves.
__global__ void __launch_bounds__(kWarps * kWarp) down_kernel(ExpertSet s, const float* act, float* out) {
  __shared__ float part[kWarps];
  down_body(s, act, out, part);
}

// Down projection with RB output rows per block and one warp per expert (exactly kWarps experts,
// I = 256 * CPL): each lane holds its RB rows' CPL chunks in flight at once (the one-row kernel
// above has 1.5 KB per warp in flight at I = 768). The per-expert terms are summed in expert
// order through shared memory, as down_body does (the same values, bit for bit).
template <int RB, int CPL>
__global__ void __launch_bounds__(kWarps * kWarp) down_rows_kernel(ExpertSet s, const float* act, float* out) {
  __shared__ float part[kWarps][RB];
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31, j = threadIdx.x >> 5, h0 = blockIdx.x * RB;
  const uint16_t* w = expert_w(s, j, 2);
  uint4 wv[RB][CPL];
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    const uint4* w4 = reinterpret_cast<const uint4*>(w + int64_t(h0 + r < s.H ? h0 + r : 0) * s.I);
#pragma unroll
    for (int c = 0; c < CPL; ++c) wv[r][c] = load_stream(w4 + lane + kWarp * c);
  }
  const float wj = s.selw ? s.selw[j] : 1.f;
  const float4* x4 = reinterpret_cast<const float4*>(act + j * s.I);
  float4 xa[CPL], xb[CPL];
#pragma unroll
  for (int c = 0; c < CPL; ++c) {
    xa[c] = x4[2 * (lane + kWarp * c)];
    xb[c] = x4[2 * (lane + kWarp * c) + 1];
  }
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    float acc = 0.f;
#pragma unroll
    for (int c = 0; c < CPL; ++c) acc += dot8(wv[r][c], xa[c], xb[c]);
    acc = warp_sum(acc);
    if (lane == 0) part[j][r] = 0.f + wj * acc;
  }
  __syncthreads();
  if (threadIdx.x < RB && h0 + int(threadIdx.x) < s.H) {
    float sum = 0.f;
    for (int q = 0; q < kWarps; ++q) sum += part[q][threadIdx.x];
    out[h0 + threadIdx.x] = sum;
  }
}

void launch_down(dim3 grid, const Exec& ex, const ExpertSet& s, const float* act, float* out) {
  constexpr int kRows = 4;
  if (ex.tuning.down_rows && s.count == kWarps && s.I == 3 * 256) {
    const unsigned blocks = unsigned((s.H + kRows - 1) / kRows);
    return launch(down_rows_kernel<kRows, 3>, dim3(blocks), dim3(kWarps * kWarp), ex, s, act, out);
  }
  launch(down_kernel, grid, dim3(kWarps * kWarp), ex, s, act, out);
}

// Prefill: tokens of each expert, bucketed (entry = row * k + slot).
__global__ void bucket_kernel(const int* idx, int entries, int E, int* counts, int* offsets, int* list) {
  __shared__ int cnt[kMaxExperts], cur[kMaxExperts];
  for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int t = threadIdx.x; t < entries; t += blockDim.x) atomicAdd(&cnt[idx[t]], 1);
  __syncthreads();
  if (threadIdx.x < 32) {  // exclusive prefix sum of the counts, 32 experts per warp step
    const int lane = threadIdx.x;
    int run = 0;
    for (int e0 = 0; e0 < E; e0 += 32) {
      const int e = e0 + lane, c = e < E ? cnt[e] : 0;
      int incl = c;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      if (e < E) {
        cur[e] = offsets[e] = run + incl - c;
        counts[e] = c;
      }
      run += __shfl_sync(0xffffffffu, incl, 31);
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < entries; t += blockDim.x) list[atomicAdd(&cur[idx[t]], 1)] = t;
}

// Grouped GEMM over one expert's bucket: Y[entry][n] = sum_k X[row(entry)][k] W_e[n][k].
// DUAL: W = gate and up, Y = silu(gate) * up. Tiles of 32 entries x 64 outputs x 32 k.
constexpr int kTM = 32, kTN = 64, kTK = 32;
template <bool DUAL>
__global__ void __launch_bounds__(256) grouped_gemm_kernel(const void* const* table, int which, const int* counts,
                                                          const int* offsets, const int* list, const float* X,
                                                          int x_per_entry_div, int N, int K, float* Y) {
  const int e = blockIdx.x, m0 = blockIdx.y * kTM, n0 = blockIdx.z * kTN;
  const int count = counts[e];
  if (m0 >= count) return;
  const int off = offsets[e];
  const uint16_t* W0 = static_cast<const uint16_t*>(table[e * 3 + which]);
  const uint16_t* W1 = DUAL ? static_cast<const uint16_t*>(table[e * 3 + 1]) : nullptr;
  __shared__ float xs[kTK][kTM + 1], ws[kTK][kTN + 1], us[DUAL ? kTK : 1][kTN + 1];
  __shared__ int rows[kTM];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  if (tid < kTM) rows[tid] = m0 + tid < count ? list[off + m0 + tid] : -1;
  __syncthreads();
  float a0[2][4] = {}, a1[2][4] = {};
  for (int k0 = 0; k0 < K; k0 += kTK) {
    for (int i = tid; i < kTM * kTK; i += 256) {
      const int m = i / kTK, kk = i % kTK, ent = rows[m];
      xs[kk][m] = ent >= 0 && k0 + kk < K ? X[int64_t(ent / x_per_entry_div) * K + k0 + kk] : 0.f;
    }
    for (int i = tid; i < kTN * kTK; i += 256) {
      const int n = i / kTK, kk = i % kTK;
      const bool ok = n0 + n < N && k0 + kk < K;
      ws[kk][n] = ok ? bf16_at(W0, int64_t(n0 + n) * K + k0 + kk) : 0.f;
      if (DUAL) us[kk][n] = ok ? bf16_at(W1, int64_t(n0 + n) * K + k0 + kk) : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTK; ++kk) {
      const float x0 = xs[kk][ty * 2], x1 = xs[kk][ty * 2 + 1];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float wv = ws[kk][tx * 4 + c];
        a0[0][c] = fmaf(x0, wv, a0[0][c]);
        a0[1][c] = fmaf(x1, wv, a0[1][c]);
        if (DUAL) {
          const float uv = us[kk][tx * 4 + c];
          a1[0][c] = fmaf(x0, uv, a1[0][c]);
          a1[1][c] = fmaf(x1, uv, a1[1][c]);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int ent = rows[ty * 2 + r];
    if (ent < 0) continue;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int n = n0 + tx * 4 + c;
      if (n < N) Y[int64_t(ent) * N + n] = DUAL ? silu(a0[r][c]) * a1[r][c] : a0[r][c];
    }
  }
}

// out[s][h] = sum_j w[s][j] y[s k + j][h]; V = 4: 4 h per thread with 16-byte loads (H % 4 == 0).
template <int V>
__global__ void combine_kernel(const float* y, const float* w, int rows, int k, int H, float* out) {
  const int HV = H / V;
  const int64_t total = int64_t(rows) * HV;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = i / HV, h = (i % HV) * V;
    float acc[V] = {};
    for (int j = 0; j < k; ++j) {
      const float wj = w[s * k + j];
      const float* row = y + (s * k + j) * H + h;
      if constexpr (V == 4) {
        const float4 v = *reinterpret_cast<const float4*>(row);
        acc[0] += wj * v.x, acc[1] += wj * v.y, acc[2] += wj * v.z, acc[3] += wj * v.w;
      } else {
        acc[0] += wj * row[0];
      }
    }
    if constexpr (V == 4) *reinterpret_cast<float4*>(out + s * H + h) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    else out[s * H + h] = acc[0];
  }
}

__global__ void mul_kernel(float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    a[i] *= b[i];
}

// out[s] += sigmoid(g[s]) * y[s] (talker's shared expert).
__global__ void gated_add_kernel(float* out, const float* y, const float* g, int rows, int H) {
  const int64_t total = int64_t(rows) * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    out[i] += y[i] / (1.f + __expf(-g[i / H]));
}

int grid_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535)); }

void launch_combine(const float* y, const float* w, int rows, int k, int H, float* out, cudaStream_t stream) {
  if (H % 4 == 0 && (reinterpret_cast<uintptr_t>(y) & 15) == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0)
    combine_kernel<4><<<grid_for(int64_t(rows) * H / 4), 256, 0, stream>>>(y, w, rows, k, H, out);
  else
    combine_kernel<1><<<grid_for(int64_t(rows) * H), 256, 0, stream>>>(y, w, rows, k, H, out);
  OMNI_LAUNCHED("combine_kernel");
}

void check_mlp(const MlpWeights& m, int64_t H, const char* what) {
  if (m.gate.empty() || m.up.empty() || m.down.empty() || m.gate.dim(1) != H || m.up.dim(0) != m.gate.dim(0) ||
      m.down.dim(0) != H || m.down.dim(1) != m.gate.dim(0))
    throw Error(std::string(what) + ": gate " + m.gate.shape_str() + ", up " + m.up.shape_str() + ", down " +
                m.down.shape_str() + " do not form an MLP of width " + std::to_string(H));
}

}  // namespace

void launch_experts_decode(const void* const* ptrs, const void* const* table, const int* sel, const float* selw,
                           int k, int H, int I, const float* x, float* act, float* out, const Exec& ex) {
  ExpertSet s;
  s.ptrs = ptrs;
  s.table = table;
  s.sel = sel;
  s.selw = selw;
  s.count = k;
  s.H = H;
  s.I = I;
  launch_gateup(dim3(unsigned((int64_t(k) * I + kWarps - 1) / kWarps)), ex, s, x, act);
  OMNI_LAUNCHED("gateup_kernel");
  const int per = std::min(k, kWarps), rows_per_block = kWarps / per;
  launch_down(dim3(unsigned((H + rows_per_block - 1) / rows_per_block)), ex, s, static_cast<const float*>(act), out);
  OMNI_LAUNCHED("down_kernel");
}

}  // namespace cuda

using namespace cuda;

void CudaBackend::prepare_moe(MoeWeights& moe) {
  const int E = int(moe.experts.size());
  if (E == 0 || E > kMaxExperts || moe.router.dim(0) != E)
    throw Error("prepare_moe: " + std::to_string(E) + " experts, router " + moe.router.shape_str());
  if (moe.top_k <= 0 || moe.top_k > kCudaMaxTopK || moe.top_k > E)
    throw Error("prepare_moe: top_k " + std::to_string(moe.top_k) + " is outside [1, " +
                std::to_string(std::min(E, kCudaMaxTopK)) + "]");
  const int64_t H = moe.router.dim(1);
  std::vector<const void*> table(size_t(E) * 3);
  for (int e = 0; e < E; ++e) {
    const MlpWeights& m = moe.experts[size_t(e)];
    check_mlp(m, H, ("prepare_moe: expert " + std::to_string(e)).c_str());
    if (m.gate.dim(0) != moe.experts[0].gate.dim(0)) throw Error("prepare_moe: experts differ in width");
    table[size_t(e) * 3 + 0] = m.gate.data;
    table[size_t(e) * 3 + 1] = m.up.data;
    table[size_t(e) * 3 + 2] = m.down.data;
  }
  auto layout = std::make_shared<CudaMoeLayout>();
  layout->table = static_cast<const void**>(arena_alloc(table.size() * sizeof(void*)));
  // On stream_ (see weight(): a pageable cudaMemcpy may land after stream_'s next kernel reads it).
  OMNI_CUDA(cudaMemcpyAsync(layout->table, table.data(), table.size() * sizeof(void*), cudaMemcpyHostToDevice, stream_));
  layout->experts = E;
  layout->inter = int(moe.experts[0].gate.dim(0));
  layout->hidden = int(H);
  layout->decode_counters = arena_alloc(kCudaLayerCounterBytes);
  OMNI_CUDA(cudaMemsetAsync(layout->decode_counters, 0, kCudaLayerCounterBytes, stream_));  // as the table above
  if (is_quantized(moe.experts[0].gate.dtype)) prepare_moe_quant(moe, *layout);  // cuda_quant.cu
  moe.prepared = layout;
}

void CudaBackend::mlp(const MlpWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t H = x.dim(-1), rows = x.numel() / H, I = w.gate.dim(0);
  check_mlp(w, H, "mlp");
  if (out.numel() != x.numel()) throw Error("mlp: out " + out.shape_str() + " vs x " + x.shape_str());
  scratch_reset();
  if (rows == 1 && H % 8 == 0 && I % 8 == 0 && w.gate.dtype == DType::BF16) {
    ExpertSet s;
    s.gate = w.gate.as<uint16_t>();
    s.up = w.up.as<uint16_t>();
    s.down = w.down.as<uint16_t>();
    s.H = int(H);
    s.I = int(I);
    float* act = static_cast<float*>(scratch(sizeof(float) * size_t(I), "mlp"));
    launch_gateup(dim3(unsigned((I + kWarps - 1) / kWarps)), exec_, s, x.as<float>(), act);
    OMNI_LAUNCHED("gateup_kernel");
    launch_down(dim3(unsigned((H + kWarps - 1) / kWarps)), exec_, s, static_cast<const float*>(act),
                out.as<float>());
    OMNI_LAUNCHED("down_kernel");
    return;
  }
  float* g = static_cast<float*>(scratch(sizeof(float) * size_t(rows * I), "mlp"));
  float* u = static_cast<float*>(scratch(sizeof(float) * size_t(rows * I), "mlp"));
  linear_rows(x.as<float>(), rows, w.gate, Tensor(), g, Activation::SiLU);
  linear_rows(x.as<float>(), rows, w.up, Tensor(), u, Activation::None);
  mul_kernel<<<grid_for(rows * I), 256, 0, stream_>>>(g, u, rows * I);
  OMNI_LAUNCHED("mul_kernel");
  linear_rows(g, rows, w.down, Tensor(), out.as<float>(), Activation::None);
}

void CudaBackend::moe(const MoeWeights& w, const Tensor& x, const Tensor& out) {
  const auto* L = static_cast<const CudaMoeLayout*>(w.prepared.get());
  if (!L) throw Error("moe: prepare_moe was not called for this layer");
  if (x.dim(-1) != L->hidden || out.numel() != x.numel())
    throw Error("moe: x " + x.shape_str() + ", out " + out.shape_str() + " for hidden " + std::to_string(L->hidden));
  scratch_reset();
  const bool decode_shapes = is_quantized(L->format) ? moe_quant_decode_ok(*L) : L->hidden % 8 == 0 && L->inter % 8 == 0;
  if (x.numel() == L->hidden && decode_shapes) moe_decode(w, *L, x, out);
  else moe_prefill(w, *L, x, out);
  if (!w.shared.gate.empty()) shared_expert(w, x, out);
}

void CudaBackend::moe_decode(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const Tensor& out) {
  const int E = L.experts, H = L.hidden, I = L.inter, k = w.top_k;
  float* logits = static_cast<float*>(scratch(sizeof(float) * size_t(E), "moe"));
  float* act = static_cast<float*>(scratch(sizeof(float) * size_t(k) * I, "moe"));
  launch(exec_.tuning.router_hoist ? router_topk_kernel<true> : router_topk_kernel<false>,
         dim3(unsigned((E + kWarps - 1) / kWarps)), dim3(kWarps * kWarp), exec_,
         w.router.as<uint16_t>(), x.as<float>(), E, H, k, w.norm_topk_prob, logits, counters_ + kRouterCounter,
         topk_idx_, topk_w_, static_cast<const void* const*>(L.table), topk_ptrs_);
  OMNI_LAUNCHED("router_topk_kernel");
  if (is_quantized(L.format)) return moe_experts_quant(w, L, x, act, out);  // cuda_quant.cu
  launch_experts_decode(topk_ptrs_, L.table, topk_idx_, topk_w_, k, H, I, x.as<float>(), act, out.as<float>(),
                        exec_);
}

void CudaBackend::moe_prefill(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const Tensor& out) {
  const int E = L.experts, H = L.hidden, I = L.inter, k = w.top_k;
  const int64_t S = x.numel() / H;
  if (S == 0) return;
  float* logits = static_cast<float*>(scratch(sizeof(float) * size_t(S) * E, "moe"));
  int* idx = static_cast<int*>(scratch(sizeof(int) * size_t(S) * k, "moe"));
  float* wts = static_cast<float*>(scratch(sizeof(float) * size_t(S) * k, "moe"));
  int* counts = static_cast<int*>(scratch(sizeof(int) * size_t(E), "moe"));
  int* offsets = static_cast<int*>(scratch(sizeof(int) * size_t(E), "moe"));
  int* list = static_cast<int*>(scratch(sizeof(int) * size_t(S) * k, "moe"));
  float* y = static_cast<float*>(scratch(sizeof(float) * size_t(S) * k * H, "moe"));
  linear_rows(x.as<float>(), S, w.router, Tensor(), logits, Activation::None, /*fp32_inputs=*/true);
  topk_rows_kernel<<<unsigned(S), 32, 0, stream_>>>(logits, E, k, w.norm_topk_prob, idx, wts);
  OMNI_LAUNCHED("topk_rows_kernel");
  bucket_kernel<<<1, 1024, 0, stream_>>>(idx, int(S * k), E, counts, offsets, list);
  OMNI_LAUNCHED("bucket_kernel");
  // Tensor cores (bf16-rounded activations) where the experts are large enough for the GEMM to
  // matter and there are more rows than a GEMV batch; small models and few rows stay in fp32,
  // as linear_rows decides for dense matrices.
  const bool tensor_cores = props_.major >= 8 && S > kGemvMaxRows && int64_t(I) * H > (int64_t(1) << 18) &&
                            grouped_gemm_tc_fits(I, H) && grouped_gemm_tc_fits(H, I) && exec_.tuning.moe_tc;
  // Quantized experts (cuda_quant.cu): bf16 copies of the whole layer for the tensor cores;
  // otherwise an fp32 kernel that dequantizes in registers.
  if (is_quantized(L.format) && !tensor_cores) return moe_rows_quant(w, L, x, idx, wts, out);
  const void* const* table = is_quantized(L.format) ? dequantize_experts(L) : L.table;
  if (tensor_cores) {
    // f32 activations: both GEMM inputs go as bf16 hi + lo parts (the lo half of each buffer).
    const int parts = f32_activations_ ? 2 : 1;
    const uint16_t* xb = cast_for_gemm(x.as<float>(), S * H);  // lo part at xb + S * H
    uint16_t* act_b = static_cast<uint16_t*>(scratch(sizeof(uint16_t) * size_t(parts * S) * k * I, "moe"));
    const int64_t x_lo = parts == 2 ? S * H : 0, act_lo = parts == 2 ? S * k * I : 0;
    if (exec_.tuning.moe_mma && grouped_gemm_mma_fits(I, H, true) && grouped_gemm_mma_fits(H, I, false)) {
      launch_grouped_gemm_mma(true, table, 0, counts, offsets, list, xb, k, E, int(S * k), I, H, act_b, stream_,
                              x_lo, act_lo);
      launch_grouped_gemm_mma(false, table, 2, counts, offsets, list, act_b, 1, E, int(S * k), H, I, y, stream_,
                              act_lo);
    } else {
      launch_grouped_gemm_tc(true, table, 0, counts, offsets, list, xb, k, E, int(S), I, H, act_b, stream_, x_lo,
                             act_lo);
      launch_grouped_gemm_tc(false, table, 2, counts, offsets, list, act_b, 1, E, int(S), H, I, y, stream_, act_lo);
    }
    launch_combine(y, wts, int(S), k, H, out.as<float>(), stream_);
    return;
  }
  float* act = static_cast<float*>(scratch(sizeof(float) * size_t(S) * k * I, "moe"));
  // Any expert holds at most S entries.
  const unsigned m_tiles = unsigned((S + kTM - 1) / kTM);
  grouped_gemm_kernel<true><<<dim3(unsigned(E), m_tiles, unsigned((I + kTN - 1) / kTN)), 256, 0, stream_>>>(
      table, 0, counts, offsets, list, x.as<float>(), k, I, H, act);
  OMNI_LAUNCHED("grouped_gemm_kernel<gate_up>");
  grouped_gemm_kernel<false><<<dim3(unsigned(E), m_tiles, unsigned((H + kTN - 1) / kTN)), 256, 0, stream_>>>(
      table, 2, counts, offsets, list, act, 1, H, I, y);
  OMNI_LAUNCHED("grouped_gemm_kernel<down>");
  launch_combine(y, wts, int(S), k, H, out.as<float>(), stream_);
}

void CudaBackend::shared_expert(const MoeWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t H = x.dim(-1), rows = x.numel() / H, I = w.shared.gate.dim(0);
  check_mlp(w.shared, H, "moe shared expert");
  scratch_reset();
  float* y = static_cast<float*>(scratch(sizeof(float) * size_t(rows * H), "moe"));
  float* g = static_cast<float*>(scratch(sizeof(float) * size_t(rows), "moe"));
  float* gu = static_cast<float*>(scratch(sizeof(float) * size_t(rows * I), "moe"));
  float* up = static_cast<float*>(scratch(sizeof(float) * size_t(rows * I), "moe"));
  linear_rows(x.as<float>(), rows, w.shared.gate, Tensor(), gu, Activation::SiLU);
  linear_rows(x.as<float>(), rows, w.shared.up, Tensor(), up, Activation::None);
  mul_kernel<<<grid_for(rows * I), 256, 0, stream_>>>(gu, up, rows * I);
  OMNI_LAUNCHED("mul_kernel");
  linear_rows(gu, rows, w.shared.down, Tensor(), y, Activation::None);
  linear_rows(x.as<float>(), rows, w.shared_gate, Tensor(), g, Activation::None, /*fp32_inputs=*/true);
  gated_add_kernel<<<grid_for(rows * H), 256, 0, stream_>>>(out.as<float>(), y, g, int(rows), int(H));
  OMNI_LAUNCHED("gated_add_kernel");
}

}  // namespace omni
