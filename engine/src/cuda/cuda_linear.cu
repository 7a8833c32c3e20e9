// linear(): decode GEMV kernels (rows <= 8) and cuBLAS GEMMs (more rows).
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"
#include "quant.h"

namespace omni {
namespace cuda {
namespace {

constexpr int kGemvWarps = 8;  // warps (= output rows) per block

// acc[r] += the U loaded chunks . the matching 8-element pieces of input row r.
template <int U, int R>
__device__ __forceinline__ void apply_chunks(const uint4 (&wv)[U], int base, int chunks, const float* xb, int K,
                                             int nrows, float (&acc)[R]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + u * kWarp;
    if (c < chunks) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < nrows) {
          const float4* x4 = reinterpret_cast<const float4*>(xb + int64_t(r) * K);
          acc[r] += dot8(wv[u], __ldg(x4 + 2 * c), __ldg(x4 + 2 * c + 1));
        }
      }
    }
  }
}

// One warp per output row; the row's weights are loaded once and applied to all R input rows;
// before pdl_wait the row is only pulled toward L2 (ptxas: 39 registers for U = 8, R = 1).
template <int U, int R>
__global__ void __launch_bounds__(kGemvWarps * kWarp) gemv_kernel(GemvArgs a) {
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  int row = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  GemvSegment g;
  if (!locate_segment(a, row, g)) return;
  const uint4* w4 = reinterpret_cast<const uint4*>(g.w + int64_t(row) * a.K);
  const int chunks = a.K >> 3;
  // The weights depend on no earlier kernel: start pulling this row while it finishes.
  if (a.prefetch && blockIdx.y == 0) prefetch_l2(w4, int64_t(a.K) * 2, lane);
  pdl_wait();
  // blockIdx.y picks a group of R input rows.
  const int r0 = blockIdx.y * R, nrows = min(R, a.rows - r0);
  const float* xb = a.x + int64_t(r0) * a.K;
  float* yb = g.y + int64_t(r0) * g.n;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int base = lane; base < chunks; base += kWarp * U) {
    uint4 wv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * kWarp;
      wv[u] = c < chunks ? load_stream(w4 + c) : make_uint4(0, 0, 0, 0);
    }
    apply_chunks<U, R>(wv, base, chunks, xb, a.K, nrows, acc);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r < nrows) {
      float v = warp_sum(acc[r]);
      if (lane == 0) {
        if (g.bias) v += bf16_at(g.bias, row);
        yb[int64_t(r) * g.n + row] = activate(v, a.act);
      }
    }
  }
}


// The same for one input row (decode), with the weights depending on no earlier kernel loaded
// before pdl_wait: the first U chunks per lane (the whole row for K <= 256 U) go into registers,
// so that their DRAM round trip overlaps the previous kernel; the rest of the row is pulled toward
// L2. Registers are capped so that Blocks blocks fit an SM (5: <= 48 registers, so the 640 blocks
// of the thinker's fused q/k/v are one wave with all their weights in flight; 4: <= 64).
// The loads are volatile asm and stay ordered before the (volatile) wait.
template <int U, int Blocks>
__global__ void __launch_bounds__(kGemvWarps * kWarp, Blocks) gemv_hoist_kernel(GemvArgs a) {
  constexpr int R = 1;
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  int row = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  GemvSegment g;
  if (!locate_segment(a, row, g)) return;
  const uint4* w4 = reinterpret_cast<const uint4*>(g.w + int64_t(row) * a.K);
  const int chunks = a.K >> 3;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  // blockIdx.y picks a group of R input rows.
  const int r0 = blockIdx.y * R;
  const float* xb = a.x + int64_t(r0) * a.K;
  float* yb = g.y + int64_t(r0) * g.n;
  int nrows;
  uint4 first[U];
  load_chunks<U>(w4, lane, chunks, first);
  if (a.prefetch && chunks > kWarp * U) prefetch_l2(w4 + kWarp * U, int64_t(chunks - kWarp * U) * 16, lane);
  pdl_wait();
  nrows = min(R, a.rows - r0);
  apply_chunks<U, R>(first, lane, chunks, xb, a.K, nrows, acc);
  for (int base = lane + kWarp * U; base < chunks; base += kWarp * U) {
    uint4 wv[U];
    load_chunks<U>(w4, base, chunks, wv);
    apply_chunks<U, R>(wv, base, chunks, xb, a.K, nrows, acc);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r < nrows) {
      float v = warp_sum(acc[r]);
      if (lane == 0) {
        if (g.bias) v += bf16_at(g.bias, row);
        yb[int64_t(r) * g.n + row] = activate(v, a.act);
      }
    }
  }
}

__global__ void gemv_scalar_kernel(GemvArgs a) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x & 31;
  int row = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  GemvSegment g;
  if (!locate_segment(a, row, g)) return;
  for (int r = 0; r < a.rows; ++r) {
    float acc = 0.f;
    for (int k = lane; k < a.K; k += kWarp) acc += bf16_at(g.w, int64_t(row) * a.K + k) * a.x[int64_t(r) * a.K + k];
    acc = warp_sum(acc);
    if (lane == 0) g.y[int64_t(r) * g.n + row] = activate(acc + (g.bias ? bf16_at(g.bias, row) : 0.f), a.act);
  }
}

template <int U>
void launch_u(const GemvArgs& a, int blocks, const Exec& ex) {
  const int threads = kGemvWarps * kWarp;
  const int R = a.rows == 1 ? 1 : a.rows == 2 ? 2 : a.rows <= 4 ? 4 : 8;
  const dim3 grid(unsigned(blocks), unsigned((a.rows + R - 1) / R));
  // A K >= 4096 matrix of <= 2048 rows (the thinker's o_proj: 256 blocks, <= 2 per SM) can hold its
  // whole row in registers before the wait: 16 chunks per lane, 2 blocks per SM (<= 128 registers).
  const int total = a.seg[0].n + (a.nseg > 1 ? a.seg[1].n : 0) + (a.nseg > 2 ? a.seg[2].n : 0);
  const CudaTuning& t = ex.tuning;
  if (R == 1 && t.gemv_hoist > 0 && t.gemv_wide && a.K >= 4096 && total <= 2048)
    launch(gemv_hoist_kernel<16, 2>, grid, dim3(threads), ex, a);
  else if (R == 1 && t.gemv_hoist == 5) launch(gemv_hoist_kernel<U, 5>, grid, dim3(threads), ex, a);
  else if (R == 1 && t.gemv_hoist == 4) launch(gemv_hoist_kernel<U, 4>, grid, dim3(threads), ex, a);
  else if (R == 1) launch(gemv_kernel<U, 1>, grid, dim3(threads), ex, a);
  else if (R == 2) launch(gemv_kernel<U, 2>, grid, dim3(threads), ex, a);
  else if (R == 4) launch(gemv_kernel<U, 4>, grid, dim3(threads), ex, a);
  else launch(gemv_kernel<U, 8>, grid, dim3(threads), ex, a);
}

__global__ void bias_act_kernel(float* y, const uint16_t* bias, int64_t rows, int n, int act) {
  const int64_t total = rows * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = activate(y[i] + (bias ? bf16_at(bias, i % n) : 0.f), act);
}

}  // namespace

void launch_gemv(const GemvArgs& args, const Exec& ex) {
  int total = 0;
  for (int s = 0; s < args.nseg; ++s) total += args.seg[s].n;
  if (total == 0) return;
  GemvArgs a = args;
  // Prefetching a matrix much larger than L2 evicts its own lines before they are read
  // (measured: the 311 MB lm_head read twice from DRAM); only matrices of <= 32 MB prefetch.
  a.prefetch = int64_t(total) * a.K * 2 <= (int64_t(32) << 20);
  const int blocks = (total + kGemvWarps - 1) / kGemvWarps;
  bool aligned = a.K % 8 == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  for (int s = 0; s < a.nseg; ++s) aligned = aligned && (reinterpret_cast<uintptr_t>(a.seg[s].w) & 15) == 0;
  if (!aligned) return launch_gemv_scalar(a, ex);
  // Enough 16-byte loads per lane in flight to cover DRAM latency: a whole 2048-wide row.
  if (a.K >= 1024) launch_u<8>(a, blocks, ex);
  else launch_u<4>(a, blocks, ex);
  OMNI_LAUNCHED("gemv_kernel");
}

void launch_gemv_scalar(const GemvArgs& a, const Exec& ex) {
  int total = 0;
  for (int s = 0; s < a.nseg; ++s) total += a.seg[s].n;
  launch(gemv_scalar_kernel, dim3((total + kGemvWarps - 1) / kGemvWarps), dim3(kGemvWarps * kWarp), ex, a);
  OMNI_LAUNCHED("gemv_scalar_kernel");
}

}  // namespace cuda

using namespace cuda;

uint16_t* CudaBackend::cast_for_gemm(const float* x, int64_t n) {
  // f32 activations: x = hi + lo, both bf16 (the lo part n elements after the hi part).
  const int parts = f32_activations_ ? 2 : 1;
  uint16_t* xb = static_cast<uint16_t*>(scratch(size_t(parts * n) * 2, "linear"));
  launch_to_bf16(x, xb, n, stream_, parts == 2 ? xb + n : nullptr);
  return xb;
}

void CudaBackend::gemm(const Tensor& x, const Tensor& w, const Tensor& out, const uint16_t* x_cast) {
  const int64_t N = w.dim(0), K = w.row_numel(), S = x.numel() / K;
  // f32 activations: out = W hi + W lo (the second product accumulates into the first):
  // fp32-accurate inputs (~2^-16 relative) for twice the tensor-core work.
  const int parts = f32_activations_ ? 2 : 1;
  const uint16_t* xb = x_cast ? x_cast : cast_for_gemm(x.as<float>(), S * K);
  const float alpha = 1.f;
  for (int p = 0; p < parts; ++p) {
    const float beta = p == 0 ? 0.f : 1.f;
    // Row-major out[S,N] = x[S,K] w[N,K]^T is column-major out^T[N,S] = w^T' ... i.e. op(A)=W^T
    // over the column-major view of W (K x N), B = column-major view of x (K x S).
    OMNI_CUBLAS(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(S), int(K), &alpha, w.data, CUDA_R_16BF,
                             int(K), xb + p * S * K, CUDA_R_16BF, int(K), &beta, out.data, CUDA_R_32F, int(N),
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

bool CudaBackend::linear_uses_gemm(int64_t rows, const Tensor& w, bool fp32_inputs) const {
  if (is_quantized(w.dtype)) return false;
  // Small matrices (<= 256K weights, 512 KB) also keep fp32 inputs (the GEMV kernels, or the fp32
  // GEMM above 8 rows) at little cost, and on small models one bf16 rounding of a GEMM input can flip
  // a MoE routing decision (measured on the tiny fixture tiny-a: step 2 of "ids" moved 0.115 in
  // relative logits error; the CPU with bf16-rounded GEMM inputs reproduces that exact number).
  // At 1M weights (the thinker's k/v projections) this cost 25 ms of a 512-token prefill.
  const bool small = w.dim(0) * w.row_numel() <= (int64_t(1) << 18);
  return !(rows <= kGemvMaxRows || ((fp32_inputs || small) && rows <= 65535 * kGemvMaxRows));
}

void CudaBackend::linear_rows(const float* x, int64_t rows, const Tensor& w, const Tensor& bias, float* out,
                              Activation act, bool fp32_inputs, const uint16_t* x_cast) {
  if (is_quantized(w.dtype)) return linear_rows_quant(x, rows, w, bias, out, act, fp32_inputs);
  const int64_t N = w.dim(0), K = w.row_numel();
  if (rows == 0 || N == 0) return;
  const int a = act == Activation::SiLU ? 1 : act == Activation::GELU ? 2 : act == Activation::GELUTanh ? 3 : 0;
  const bool cublas = linear_uses_gemm(rows, w, fp32_inputs);
  if (!cublas && rows > kGemvMaxRows && gemm_f32_fits(rows, K, x, w.as<uint16_t>())) {
    launch_gemm_f32(x, w.as<uint16_t>(), bias.empty() ? nullptr : bias.as<uint16_t>(), out, int(rows), int(N), int(K),
                    a, stream_);
    return;
  }
  if (!cublas) {
    GemvArgs g;
    g.seg[0] = {w.as<uint16_t>(), bias.empty() ? nullptr : bias.as<uint16_t>(), out, int(N)};
    g.K = int(K);
    g.rows = int(rows);
    g.x = x;
    g.act = a;
    launch_gemv(g, exec_);
    return;
  }
  Tensor xt(const_cast<float*>(x), DType::F32, {rows, K}, true), ot(out, DType::F32, {rows, N}, true);
  const size_t mark = scratch_used_;
  gemm(xt, w, ot, x_cast);
  scratch_used_ = mark;
  if (!bias.empty() || a != 0) {
    bias_act_kernel<<<int(std::min<int64_t>((rows * N + 255) / 256, 65535)), 256, 0, stream_>>>(
        out, bias.empty() ? nullptr : bias.as<uint16_t>(), rows, int(N), a);
    OMNI_LAUNCHED("bias_act_kernel");
  }
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out, Activation act) {
  const int64_t N = w.dim(0), K = w.row_numel(), rows = K ? x.numel() / K : 0;
  if ((w.dtype != DType::BF16 && !is_quantized(w.dtype)) || !w.on_device)
    throw Error("linear: weight " + w.shape_str() + " is not a CUDA weight");
  if (x.dtype != DType::F32 || out.dtype != DType::F32 || rows * K != x.numel() || out.numel() != rows * N)
    throw Error("linear: shapes x " + x.shape_str() + ", w " + w.shape_str() + ", out " + out.shape_str() +
                " do not match");
  if (!bias.empty() && bias.numel() != N) throw Error("linear: bias " + bias.shape_str() + " for " + w.shape_str());
  scratch_reset();
  linear_rows(x.as<float>(), rows, w, bias, out.as<float>(), act);
}

}  // namespace omni
