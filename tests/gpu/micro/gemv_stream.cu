// Micro-benchmark (exploration, not a test): the thinker's decode GEMV shapes (bf16 weights, fp32 x),
// 48 distinct layers per CUDA graph so that every launch reads DRAM. Simplified copies of the decode
// kernels ("current"), persistent "register ring" variants, a pure read ceiling, and
// an L2-prefetch experiment (next layer's q/k/v pulled toward L2 while a router-like kernel waits).
// Build and run on a GPU host: tests/gpu/micro/run.sh. Results: docs/performance.md, "the slow kernels, found per kernel".
#include <cstdio>
#include <cstdint>
#include <vector>
#include <random>
#include <algorithm>
#include <cmath>
#include <cuda_runtime.h>
#include "cuda/cuda_common.cuh"

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)

using namespace omni::cuda;
__device__ __forceinline__ uint4 load_stream_ef(const uint4* p, uint64_t pol) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p), "l"(pol));
  return r;
}

// ---------------- current-style kernels ----------------
struct Experts { const uint16_t* g[8]; const uint16_t* u[8]; const uint16_t* d[8]; float w[8]; };
__global__ void __launch_bounds__(256) cur_gateup(Experts e, const float* x, float* act, int H, int I) {
  const int lane = threadIdx.x & 31, gw = blockIdx.x * 8 + (threadIdx.x >> 5);
  const int j = gw / I, i = gw % I;
  if (j >= 8) return;
  const uint4* a4 = reinterpret_cast<const uint4*>(e.g[j] + int64_t(i) * H);
  const uint4* b4 = reinterpret_cast<const uint4*>(e.u[j] + int64_t(i) * H);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  uint4 av[8], bv[8];
#pragma unroll
  for (int u = 0; u < 8; ++u) { av[u] = load_stream(a4 + lane + 32 * u); bv[u] = load_stream(b4 + lane + 32 * u); }
  float g = 0.f, up = 0.f;
#pragma unroll
  for (int u = 0; u < 8; ++u) { const int c = lane + 32 * u; float4 xa = __ldg(x4 + 2 * c), xb = __ldg(x4 + 2 * c + 1); g += dot8(av[u], xa, xb); up += dot8(bv[u], xa, xb); }
  g = warp_sum(g); up = warp_sum(up);
  if (lane == 0) act[j * I + i] = silu(g) * up;
}
__global__ void __launch_bounds__(256) cur_down(Experts e, const float* act, float* out, int H, int I) {
  __shared__ float part[8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, h = blockIdx.x;
  const float d = warp_sum(lane_dot<4>(e.d[warp] + int64_t(h) * I, act + warp * I, I, lane));
  if (lane == 0) part[warp] = e.w[warp] * d;
  __syncthreads();
  if (threadIdx.x == 0) { float s = 0.f; for (int q = 0; q < 8; ++q) s += part[q]; out[h] = s; }
}
__global__ void __launch_bounds__(256) cur_gemv(const uint16_t* W, const float* x, float* y, int N, int K) {
  const int lane = threadIdx.x & 31, row = blockIdx.x * 8 + (threadIdx.x >> 5);
  if (row >= N) return;
  const float v = warp_sum(lane_dot<8>(W + int64_t(row) * K, x, K, lane));
  if (lane == 0) y[row] = v;
}

// ---------------- ring kernels ----------------
// A warp's work is a stream of units (RPU rows of CPR 512-byte chunks each); the D = CPR * RPU chunks of the
// next unit are loaded while the current one is reduced, slot by slot, so D chunks per lane stay in flight.
struct GateUp { Experts e; int H, I; };
struct Down { Experts e; int H, I; };
struct Plain { const uint16_t* W; int K; };

template <int CPR, int RPU>
struct Ring {
  uint4 r[CPR * RPU];
};

template <int CPR, int RPU, int MINB, class Lay>
__global__ void __launch_bounds__(256, MINB) ring_kernel(Lay L, const float* x, int xlen, float* out, int units) {
  extern __shared__ float xs[];
  constexpr int D = CPR * RPU;
  for (int i = threadIdx.x * 4; i < xlen; i += 256 * 4) *reinterpret_cast<float4*>(xs + i) = *reinterpret_cast<const float4*>(x + i);
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int W = gridDim.x * 8;
  int u = blockIdx.x * 8 + (threadIdx.x >> 5);
  uint4 ring[D];
  if (u < units) {
#pragma unroll
    for (int s = 0; s < D; ++s) ring[s] = load_stream(row_ptr(L, u, s / CPR) + (s % CPR) * 32 + lane);
  }
  while (u < units) {
    const int nu = u + W;
    float acc[RPU];
#pragma unroll
    for (int r = 0; r < RPU; ++r) acc[r] = 0.f;
#pragma unroll
    for (int s = 0; s < D; ++s) {
      const int r = s / CPR, c = (s % CPR) * 32 + lane;
      const uint4 w = ring[s];
      if (nu < units) ring[s] = load_stream(row_ptr(L, nu, r) + (s % CPR) * 32 + lane);
      const float4* x4 = reinterpret_cast<const float4*>(xs + x_off(L, r));
      acc[r] += dot8(w, x4[2 * c], x4[2 * c + 1]);
    }
#pragma unroll
    for (int r = 0; r < RPU; ++r) acc[r] = warp_sum(acc[r]);
    if (lane == 0) store(L, u, acc, out);
    u = nu;
  }
}
__device__ __forceinline__ const uint4* row_ptr(const GateUp& L, int u, int r) {
  const int j = u / L.I, i = u % L.I;
  return reinterpret_cast<const uint4*>((r == 0 ? L.e.g[j] : L.e.u[j]) + int64_t(i) * L.H);
}
__device__ __forceinline__ int x_off(const GateUp&, int) { return 0; }
__device__ __forceinline__ void store(const GateUp& L, int u, const float* acc, float* out) { out[u] = silu(acc[0]) * acc[1]; }
__device__ __forceinline__ const uint4* row_ptr(const Down& L, int u, int r) {
  return reinterpret_cast<const uint4*>(L.e.d[r] + int64_t(u) * L.I);
}
__device__ __forceinline__ int x_off(const Down& L, int r) { return r * L.I; }
__device__ __forceinline__ void store(const Down& L, int u, const float* acc, float* out) {
  float s = 0.f;
  for (int r = 0; r < 8; ++r) s += L.e.w[r] * acc[r];
  out[u] = s;
}
__device__ __forceinline__ const uint4* row_ptr(const Plain& L, int u, int) { return reinterpret_cast<const uint4*>(L.W + int64_t(u) * L.K); }
__device__ __forceinline__ int x_off(const Plain&, int) { return 0; }
__device__ __forceinline__ void store(const Plain&, int u, const float* acc, float* out) { out[u] = acc[0]; }

// Pure read ceiling: persistent, 16 chunks per lane in flight.
__global__ void __launch_bounds__(256) read_kernel(const uint4* p, int64_t n, float* out) {
  const int64_t tid = blockIdx.x * 256LL + threadIdx.x, T = gridDim.x * 256LL;
  float acc = 0.f;
  for (int64_t b = tid; b < n; b += T * 16) {
    uint4 v[16];
#pragma unroll
    for (int s = 0; s < 16; ++s) v[s] = b + s * T < n ? load_stream(p + b + s * T) : make_uint4(0,0,0,0);
#pragma unroll
    for (int s = 0; s < 16; ++s) acc += __uint_as_float(v[s].x ^ v[s].y ^ v[s].z ^ v[s].w);
  }
  if (acc == 1.2345f) out[0] = acc;
}


// ---------------- L2 prefetch experiment ----------------
__device__ __forceinline__ uint64_t gtime() { uint64_t t; asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t)); return t; }
// 16 "router" blocks wait ~ns; blocks >= 16 pull [pf, pf + pf_bytes) toward L2 and exit.
__global__ void fake_router(int ns, const char* pf, int64_t pf_bytes, int evict_last) {
  if (blockIdx.x < 16) {
    const uint64_t t0 = gtime();
    while (gtime() - t0 < uint64_t(ns)) {}
    return;
  }
  const int64_t nb = gridDim.x - 16, b = blockIdx.x - 16;
  const int64_t per = (pf_bytes + nb - 1) / nb;
  const int64_t lo = b * per, hi = min(pf_bytes, lo + per);
  for (int64_t off = lo + threadIdx.x * 128; off < hi; off += blockDim.x * 128) {
    if (evict_last) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(pf + off));
    else asm volatile("prefetch.global.L2 [%0];" ::"l"(pf + off));
  }
}
__device__ __forceinline__ uint64_t policy_evict_first() {
  uint64_t pol; asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol)); return pol;
}
template <bool EF>
__device__ __forceinline__ uint4 ldw(const uint4* p, uint64_t pol) { return EF ? load_stream_ef(p, pol) : load_stream(p); }
template <bool EF>
__global__ void __launch_bounds__(256) gateup_x(Experts e, const float* x, float* act, int H, int I) {
  const int lane = threadIdx.x & 31, gw = blockIdx.x * 8 + (threadIdx.x >> 5);
  const int j = gw / I, i = gw % I;
  if (j >= 8) return;
  const uint64_t pol = EF ? policy_evict_first() : 0;
  const uint4* a4 = reinterpret_cast<const uint4*>(e.g[j] + int64_t(i) * H);
  const uint4* b4 = reinterpret_cast<const uint4*>(e.u[j] + int64_t(i) * H);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  uint4 av[8], bv[8];
#pragma unroll
  for (int u = 0; u < 8; ++u) { av[u] = ldw<EF>(a4 + lane + 32 * u, pol); bv[u] = ldw<EF>(b4 + lane + 32 * u, pol); }
  float g = 0.f, up = 0.f;
#pragma unroll
  for (int u = 0; u < 8; ++u) { const int c = lane + 32 * u; float4 xa = __ldg(x4 + 2 * c), xb = __ldg(x4 + 2 * c + 1); g += dot8(av[u], xa, xb); up += dot8(bv[u], xa, xb); }
  g = warp_sum(g); up = warp_sum(up);
  if (lane == 0) act[j * I + i] = silu(g) * up;
}
template <bool EF>
__global__ void __launch_bounds__(256) down_x(Experts e, const float* act, float* out, int H, int I) {
  __shared__ float part[8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, h = blockIdx.x;
  const uint64_t pol = EF ? policy_evict_first() : 0;
  const uint4* w4 = reinterpret_cast<const uint4*>(e.d[warp] + int64_t(h) * I);
  const float4* x4 = reinterpret_cast<const float4*>(act + warp * I);
  uint4 wv[3];
#pragma unroll
  for (int u = 0; u < 3; ++u) wv[u] = ldw<EF>(w4 + lane + 32 * u, pol);
  float d = 0.f;
#pragma unroll
  for (int u = 0; u < 3; ++u) { const int c = lane + 32 * u; d += dot8(wv[u], x4[2 * c], x4[2 * c + 1]); }
  d = warp_sum(d);
  if (lane == 0) part[warp] = e.w[warp] * d;
  __syncthreads();
  if (threadIdx.x == 0) { float s = 0.f; for (int q = 0; q < 8; ++q) s += part[q]; out[h] = s; }
}

// ---------------- harness ----------------
constexpr int kLayers = 48;
int g_sms = 0;

template <class F>
double time_graph(F launch_layer, int reps = 20) {
  cudaStream_t st; CK(cudaStreamCreate(&st));
  cudaGraph_t g; cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int l = 0; l < kLayers; ++l) launch_layer(l, st);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st)); CK(cudaStreamSynchronize(st));
  cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
  std::vector<float> ts;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a, st)); CK(cudaGraphLaunch(ge, st)); CK(cudaEventRecord(b, st)); CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b)); ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  CK(cudaGraphExecDestroy(ge)); CK(cudaGraphDestroy(g)); CK(cudaStreamDestroy(st));
  return ts[ts.size() / 2] * 1000.0 / kLayers;  // us per layer
}

uint16_t* alloc_bf16(size_t n) {
  uint16_t* p; CK(cudaMalloc(&p, n * 2));
  std::vector<uint16_t> h(n);
  std::mt19937 rng(1);
  for (size_t i = 0; i < n; ++i) h[i] = uint16_t(0x3c00 + (rng() & 0x3ff) - 0x200) ^ (rng() & 0x8000);
  CK(cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice));
  return p;
}

template <class Lay, int CPR, int RPU, int MINB>
void launch_ring(const Lay& L, const float* x, int xlen, float* out, int units, cudaStream_t st, int blocks_per_sm) {
  auto k = ring_kernel<CPR, RPU, MINB, Lay>;
  CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, xlen * 4));
  int occ = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k, 256, xlen * 4));
  if (blocks_per_sm > occ) blocks_per_sm = occ;
  k<<<g_sms * blocks_per_sm, 256, xlen * 4, st>>>(L, x, xlen, out, units);
}

void report(const char* name, double us, double mb) { printf("| %-40s | %8.2f us | %7.1f MB | %7.0f GB/s |\n", name, us, mb, mb / us * 1e3); }

int main() {
  cudaDeviceProp p; CK(cudaGetDeviceProperties(&p, 0)); g_sms = p.multiProcessorCount;
  printf("%s, %d SMs, L2 %d MB\n", p.name, g_sms, p.l2CacheSize >> 20);
  const int H = 2048, I = 768;
  const size_t mat = size_t(H) * I;
  // Experts: 48 layers x 8 selected experts (gate, up, down), from one pool.
  uint16_t* pool = alloc_bf16(size_t(kLayers) * 8 * 3 * mat);
  std::vector<Experts> ex(kLayers);
  for (int l = 0; l < kLayers; ++l)
    for (int j = 0; j < 8; ++j) {
      uint16_t* b = pool + (size_t(l) * 8 + j) * 3 * mat;
      ex[l].g[j] = b; ex[l].u[j] = b + mat; ex[l].d[j] = b + 2 * mat; ex[l].w[j] = 0.125f;
    }
  uint16_t* qkv = alloc_bf16(size_t(kLayers) * 5120 * H);
  uint16_t* wo = alloc_bf16(size_t(kLayers) * 2048 * 4096);
  float *x, *act, *out; CK(cudaMalloc(&x, 4096 * 4)); CK(cudaMalloc(&act, 8 * I * 4)); CK(cudaMalloc(&out, 8192 * 4));
  std::vector<float> hx(4096); for (int i = 0; i < 4096; ++i) hx[i] = 0.01f * (i % 17);
  CK(cudaMemcpy(x, hx.data(), 4096 * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(act, hx.data(), 8 * I * 4, cudaMemcpyHostToDevice));

  // D2D copy roofline
  {
    void *a, *b; size_t n = size_t(1) << 30; CK(cudaMalloc(&a, n)); CK(cudaMalloc(&b, n));
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
    cudaEventRecord(e0); for (int i = 0; i < 10; ++i) cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice); cudaEventRecord(e1); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1);
    printf("copy: %.0f GB/s (read + write)\n", 2.0 * n * 10 / (ms * 1e-3) / 1e9);
    CK(cudaFree(a)); CK(cudaFree(b));
  }
  {  // correctness: ring vs current on layer 0
    float *a1, *a2, *o1, *o2; CK(cudaMalloc(&a1, 8 * I * 4)); CK(cudaMalloc(&a2, 8 * I * 4)); CK(cudaMalloc(&o1, H * 4)); CK(cudaMalloc(&o2, H * 4));
    cur_gateup<<<8 * I / 8, 256>>>(ex[0], x, a1, H, I);
    launch_ring<GateUp, 8, 2, 1>(GateUp{ex[0], H, I}, x, H, a2, 8 * I, 0, 2);
    cur_down<<<H, 256>>>(ex[0], act, o1, H, I);
    launch_ring<Down, 3, 8, 1>(Down{ex[0], H, I}, act, 8 * I, o2, H, 0, 2);
    CK(cudaDeviceSynchronize());
    std::vector<float> h1(8 * I), h2(8 * I), g1(H), g2(H);
    CK(cudaMemcpy(h1.data(), a1, 8 * I * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(h2.data(), a2, 8 * I * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(g1.data(), o1, H * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(g2.data(), o2, H * 4, cudaMemcpyDeviceToHost));
    double d1 = 0, d2 = 0, m1 = 0, m2 = 0;
    for (int i = 0; i < 8 * I; ++i) { d1 = std::max(d1, double(fabsf(h1[i] - h2[i]))); m1 = std::max(m1, double(fabsf(h1[i]))); }
    for (int i = 0; i < H; ++i) { d2 = std::max(d2, double(fabsf(g1[i] - g2[i]))); m2 = std::max(m2, double(fabsf(g1[i]))); }
    printf("check: gate/up max diff %.3g (max %.3g), down max diff %.3g (max %.3g)\n", d1, m1, d2, m2);
  }
  const double gu_mb = 8.0 * 2 * mat * 2 / 1e6, dn_mb = 8.0 * mat * 2 / 1e6, qkv_mb = 5120.0 * H * 2 / 1e6, o_mb = 2048.0 * 4096 * 2 / 1e6;
  printf("| kernel | per layer | bytes | rate |\n|---|---|---|---|\n");
  report("read ceiling (gate/up bytes)", time_graph([&](int l, cudaStream_t st) { read_kernel<<<g_sms * 4, 256, 0, st>>>(reinterpret_cast<const uint4*>(pool + size_t(l) * 8 * 3 * mat), int64_t(gu_mb * 1e6 / 16), out); }), gu_mb);
  report("current gate/up", time_graph([&](int l, cudaStream_t st) { cur_gateup<<<8 * I / 8, 256, 0, st>>>(ex[l], x, act, H, I); }), gu_mb);
  report("ring gate/up D16 (100 regs) 2/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<GateUp, 8, 2, 1>(GateUp{ex[l], H, I}, x, H, act, 8 * I, st, 2); }), gu_mb);
  report("ring gate/up D16 minb3 3/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<GateUp, 8, 2, 3>(GateUp{ex[l], H, I}, x, H, act, 8 * I, st, 3); }), gu_mb);
  report("ring gate/up D16 minb2 1/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<GateUp, 8, 2, 1>(GateUp{ex[l], H, I}, x, H, act, 8 * I, st, 1); }), gu_mb);
  report("current down", time_graph([&](int l, cudaStream_t st) { cur_down<<<H, 256, 0, st>>>(ex[l], act, out, H, I); }), dn_mb);
  report("ring down D24 1/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Down, 3, 8, 1>(Down{ex[l], H, I}, act, 8 * I, out, H, st, 1); }), dn_mb);
  report("ring down D24 minb2 2/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Down, 3, 8, 2>(Down{ex[l], H, I}, act, 8 * I, out, H, st, 2); }), dn_mb);
  report("current qkv (5120x2048)", time_graph([&](int l, cudaStream_t st) { cur_gemv<<<5120 / 8, 256, 0, st>>>(qkv + size_t(l) * 5120 * H, x, out, 5120, H); }), qkv_mb);
  report("ring qkv D8 2/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Plain, 8, 1, 1>(Plain{qkv + size_t(l) * 5120 * H, H}, x, H, out, 5120, st, 2); }), qkv_mb);
  report("ring qkv D8 minb4 4/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Plain, 8, 1, 4>(Plain{qkv + size_t(l) * 5120 * H, H}, x, H, out, 5120, st, 4); }), qkv_mb);
  report("current o (2048x4096)", time_graph([&](int l, cudaStream_t st) { cur_gemv<<<2048 / 8, 256, 0, st>>>(wo + size_t(l) * 2048 * 4096, x, out, 2048, 4096); }), o_mb);
  report("ring o D16 1/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Plain, 16, 1, 1>(Plain{wo + size_t(l) * 2048 * 4096, 4096}, x, 4096, out, 2048, st, 1); }), o_mb);
  report("ring o D16 minb2 2/SM", time_graph([&](int l, cudaStream_t st) { launch_ring<Plain, 16, 1, 2>(Plain{wo + size_t(l) * 2048 * 4096, 4096}, x, 4096, out, 2048, st, 2); }), o_mb);
  report("ring o CPR16 as 2x8? (D8 on K=4096 rows via Plain8)", 0.0 + time_graph([&](int l, cudaStream_t st) { launch_ring<Plain, 8, 1, 4>(Plain{wo + size_t(l) * 2048 * 4096, 2048}, x, 2048, out, 4096, st, 4); }), o_mb);

  // Layer sequence: router (~8 us latency) -> gate/up -> down -> next layer's q/k/v GEMV.
  for (int ns : {8000, 4000}) {
    for (int mode = 0; mode < 5; ++mode) {
      // mode 0: no prefetch; 1: prefetch next qkv (normal), experts normal; 2: prefetch normal + experts evict_first;
      // 3: prefetch evict_last + experts evict_first; 4: no prefetch, experts evict_first
      const int pfb = (mode == 0 || mode == 4) ? 0 : g_sms * 2;
      const bool ef = mode >= 2;
      const int el = mode == 3;
      double us = time_graph([&](int l, cudaStream_t st) {
        const uint16_t* nq = qkv + size_t((l + 1) % kLayers) * 5120 * H;
        fake_router<<<16 + pfb, 256, 0, st>>>(ns, reinterpret_cast<const char*>(nq), int64_t(5120) * H * 2, el);
        if (ef) { gateup_x<true><<<8 * I / 8, 256, 0, st>>>(ex[l], x, act, H, I); down_x<true><<<H, 256, 0, st>>>(ex[l], act, out, H, I); }
        else { gateup_x<false><<<8 * I / 8, 256, 0, st>>>(ex[l], x, act, H, I); down_x<false><<<H, 256, 0, st>>>(ex[l], act, out, H, I); }
        cur_gemv<<<5120 / 8, 256, 0, st>>>(nq, x, out + 4096, 5120, H);
      });
      char nm[80]; snprintf(nm, 80, "layer seq router %d ns, mode %d", ns, mode);
      report(nm, us, gu_mb + dn_mb + qkv_mb);
    }
  }
  // Pieces alone for reference
  report("router 8000 ns alone", time_graph([&](int l, cudaStream_t st) { fake_router<<<16, 256, 0, st>>>(8000, nullptr, 0, 0); }), 0.0);
  // Whole MoE (gate/up then down) per layer
  report("current gate/up + down", time_graph([&](int l, cudaStream_t st) { cur_gateup<<<8 * I / 8, 256, 0, st>>>(ex[l], x, act, H, I); cur_down<<<H, 256, 0, st>>>(ex[l], act, out, H, I); }), gu_mb + dn_mb);
  report("ring gate/up + down (2, 2 blk/SM)", time_graph([&](int l, cudaStream_t st) { launch_ring<GateUp, 8, 2, 1>(GateUp{ex[l], H, I}, x, H, act, 8 * I, st, 2); launch_ring<Down, 3, 8, 2>(Down{ex[l], H, I}, act, 8 * I, out, H, st, 2); }), gu_mb + dn_mb);
  CK(cudaDeviceSynchronize());
  return 0;
}
