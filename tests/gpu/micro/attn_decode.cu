// Micro-benchmark (exploration, not a test): the engine's decode attention item
// (cuda_decode_items.cuh) at the thinker's shapes (32 q heads, 4 kv heads of 128, fp32 cache), one
// launch per layer of 48 in a CUDA graph, for several positions and grid-split counts.
// Build and run on a GPU host: tests/gpu/micro/run.sh. Results: docs/performance.md, "the slow kernels, found per kernel".
#include <cstdio>
#include <vector>
#include <algorithm>
#include "cuda/cuda_decode_items.cuh"
using namespace omni::cuda;
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e)); exit(1);} } while (0)

template <int DPL>
__global__ void __launch_bounds__(256) attn_kernel(DecodeArgs a, int splits) {
  __shared__ AttnSmem sm;
  attention_decode_item<DPL, float>(a, blockIdx.x, blockIdx.y, splits, sm);
}
__global__ void empty_kernel() {}

int main() {
  const int L = 48, hq = 32, hkv = 4, hd = 128, cap = 4096;
  float *kc, *vc, *q, *k, *v, *part, *out; unsigned* ctr; int* pos; int* flags;
  CK(cudaMalloc(&kc, size_t(L) * cap * hkv * hd * 4)); CK(cudaMalloc(&vc, size_t(L) * cap * hkv * hd * 4));
  CK(cudaMemset(kc, 0, size_t(L) * cap * hkv * hd * 4)); CK(cudaMemset(vc, 0, size_t(L) * cap * hkv * hd * 4));
  CK(cudaMalloc(&q, hq * hd * 4)); CK(cudaMalloc(&k, hkv * hd * 4)); CK(cudaMalloc(&v, hkv * hd * 4));
  std::vector<float> h(hq * hd); for (int i = 0; i < hq * hd; ++i) h[i] = 0.01f * (i % 13);
  CK(cudaMemcpy(q, h.data(), hq * hd * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(k, h.data(), hkv * hd * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(v, h.data(), hkv * hd * 4, cudaMemcpyHostToDevice));
  CK(cudaMalloc(&part, hq * 64 * (hd + 4) * 4)); CK(cudaMalloc(&out, hq * hd * 4)); CK(cudaMalloc(&ctr, 64 * 4)); CK(cudaMemset(ctr, 0, 256));
  CK(cudaMalloc(&pos, 4)); CK(cudaMalloc(&flags, 4)); CK(cudaMemset(flags, 0, 4));
  uint16_t* nw; CK(cudaMalloc(&nw, hd * 2)); CK(cudaMemset(nw, 0x3f, hd * 2));
  cudaStream_t st; CK(cudaStreamCreate(&st));
  auto run = [&](const char* name, int position, bool rope, bool norm, int splits) {
    CK(cudaMemcpy(pos, &position, 4, cudaMemcpyHostToDevice));
    cudaGraph_t g; cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < L; ++l) {
      DecodeArgs a{};
      a.rope = rope_table(rope ? 1e6f : 0.f, hd);
      a.q = q; a.k = k; a.v = v; a.q_norm = norm ? nw : nullptr; a.k_norm = norm ? nw : nullptr;
      a.eps = 1e-6f; a.scale = 0.088f; a.kc = kc + size_t(l) * cap * hkv * hd; a.vc = vc + size_t(l) * cap * hkv * hd;
      a.capacity = cap; a.pos = pos; a.hq = hq; a.hkv = hkv; a.hd = hd; a.window = 0;
      a.partials = part; a.counters = ctr; a.out = out; a.flags = flags;
      if (splits > 0) attn_kernel<4><<<dim3(hkv, splits), 256, 0, st>>>(a, splits);
      else empty_kernel<<<dim3(hkv, 64), 256, 0, st>>>();
    }
    CK(cudaStreamEndCapture(st, &g)); CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, st)); CK(cudaStreamSynchronize(st));
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    std::vector<float> ts;
    for (int r = 0; r < 20; ++r) { cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms); }
    std::sort(ts.begin(), ts.end());
    printf("| %-46s | pos %5d | %7.2f us/launch |\n", name, position, ts[10] * 1000 / L);
    CK(cudaGetLastError());
  };
  run("empty kernel (4 x 64 blocks)", 64, false, false, 0);
  for (int p : {64, 512, 2048, 4000}) {
    run("64 grid splits", p, true, true, 64);
    run("32 grid splits (as in the engine)", p, true, true, 32);
    run("16 grid splits", p, true, true, 16);
    if (p <= 512) run("1 grid split", p, true, true, 1);
  }
  run("pos 16 (lone split)", 16, true, true, 64);
  return 0;
}
