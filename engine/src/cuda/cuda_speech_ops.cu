// The speech operations (backend.h, "speech operations") as direct kernels, one thread per
// output element, accumulating in the CPU reference's order. Correct and simple: code2wav's
// convolutions are not yet tuned (docs/performance.md).
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

namespace omni {
namespace cuda {
namespace {

constexpr int kFlagBadCode = 4;

__global__ void conv1d_kernel(const float* x, const uint16_t* w, const uint16_t* bias, int64_t L_out, int c_in,
                              int c_out, int per_group, int K, int dilation, int out_per_group, float* out) {
  const int64_t total = L_out * c_out;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int o = int(idx % c_out);
    const int64_t t = idx / c_out;
    const int first_in = (o / out_per_group) * per_group;
    const uint16_t* wr = w + int64_t(o) * per_group * K;
    float acc = 0.f;
    for (int k = 0; k < K; ++k) {
      const float* xr = x + (t + int64_t(k) * dilation) * c_in + first_in;
      for (int i = 0; i < per_group; ++i) acc += bf16_at(wr, int64_t(i) * K + k) * xr[i];
    }
    out[idx] = acc + (bias ? bf16_at(bias, o) : 0.f);
  }
}

__global__ void conv_transpose1d_kernel(const float* x, const uint16_t* w, const uint16_t* bias, int64_t L,
                                        int c_in, int c_out, int K, int s, int64_t L_out, float* out) {
  const int64_t total = L_out * c_out;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int o = int(idx % c_out);
    const int64_t u = idx / c_out, t = u + K - s;
    const int64_t i_hi = min(t / s, L - 1), i_lo = max(int64_t(0), (t - K + s) / s);
    float acc = 0.f;
    for (int64_t i = i_lo; i <= i_hi; ++i) {
      const int64_t j = t - i * s;
      if (j < 0 || j >= K) continue;
      const float* xr = x + i * c_in;
      for (int c = 0; c < c_in; ++c) acc += bf16_at(w, (int64_t(c) * c_out + o) * K + j) * xr[c];
    }
    out[idx] = acc + (bias ? bf16_at(bias, o) : 0.f);
  }
}

__global__ void snake_beta_kernel(const float* x, const uint16_t* log_alpha, const uint16_t* log_beta, int64_t n,
                                  int C, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % C);
    const float alpha = expf(bf16_at(log_alpha, c)), inv_beta = 1.0f / (expf(bf16_at(log_beta, c)) + 1e-9f);
    const float v = x[i];
    // sin of a possibly large argument: reduce to [-pi, pi] in double first (fast-math sinf
    // is only accurate there).
    const double a = double(v * alpha);
    const float sn = __sinf(float(fma(-rint(a * 0.15915494309189535), 6.283185307179586, a)));
    out[i] = v + inv_beta * (sn * sn);
  }
}

__global__ void channel_scale_kernel(const float* x, const uint16_t* scale, int64_t n, int C, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] * bf16_at(scale, i % C);
}

__global__ void embed_codebooks_mean_kernel(const uint16_t* table, const int32_t* codes, int Q, int codebook,
                                            int64_t H, float* out, int* flags) {
  const int64_t t = blockIdx.x;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.f;
    for (int q = 0; q < Q; ++q) {
      const int32_t code = codes[t * Q + q];
      if (code < 0 || code >= codebook) {
        atomicOr(flags, kFlagBadCode);
        continue;
      }
      acc += bf16_at(table, (int64_t(code) + int64_t(q) * codebook) * H + h);
    }
    out[t * H + h] = acc / float(Q);
  }
}

int grid_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535)); }
const uint16_t* opt(const Tensor& t) { return t.empty() ? nullptr : t.as<uint16_t>(); }

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, int dilation, int groups,
                         const Tensor& out) {
  const int64_t L_out = check_conv1d_args(x, w, out, dilation, groups);
  const int64_t c_out = w.dim(0), per_group = w.dim(1), K = w.dim(2), c_in = x.dim(1);
  if (L_out <= 0) return;
  conv1d_kernel<<<grid_for(L_out * c_out), 256, 0, stream_>>>(x.as<float>(), w.as<uint16_t>(), opt(bias), L_out,
                                                              int(c_in), int(c_out), int(per_group), int(K), dilation,
                                                              int(c_out / groups), out.as<float>());
  OMNI_LAUNCHED("conv1d_kernel");
}

void CudaBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride,
                                   const Tensor& out) {
  const int64_t L_out = check_conv_transpose1d_args(x, w, out, stride);
  const int64_t c_in = w.dim(0), c_out = w.dim(1), K = w.dim(2), s = stride, L = x.dim(0);
  if (L_out <= 0) return;
  conv_transpose1d_kernel<<<grid_for(L_out * c_out), 256, 0, stream_>>>(
      x.as<float>(), w.as<uint16_t>(), opt(bias), L, int(c_in), int(c_out), int(K), int(s), L_out, out.as<float>());
  OMNI_LAUNCHED("conv_transpose1d_kernel");
}

void CudaBackend::snake_beta(const Tensor& x, const Tensor& log_alpha, const Tensor& log_beta, const Tensor& out) {
  const int64_t C = log_alpha.numel();
  if (C == 0 || x.numel() % C != 0 || log_beta.numel() != C || out.numel() != x.numel())
    throw Error("snake_beta: x " + x.shape_str() + " does not match " + std::to_string(C) + " channels");
  if (x.numel() == 0) return;
  snake_beta_kernel<<<grid_for(x.numel()), 256, 0, stream_>>>(x.as<float>(), log_alpha.as<uint16_t>(),
                                                              log_beta.as<uint16_t>(), x.numel(), int(C),
                                                              out.as<float>());
  OMNI_LAUNCHED("snake_beta_kernel");
}

void CudaBackend::channel_scale(const Tensor& x, const Tensor& scale, const Tensor& out) {
  const int64_t C = scale.numel();
  if (C == 0 || x.numel() % C != 0 || out.numel() != x.numel())
    throw Error("channel_scale: x " + x.shape_str() + " does not match a scale of " + std::to_string(C));
  if (x.numel() == 0) return;
  channel_scale_kernel<<<grid_for(x.numel()), 256, 0, stream_>>>(x.as<float>(), scale.as<uint16_t>(), x.numel(),
                                                                 int(C), out.as<float>());
  OMNI_LAUNCHED("channel_scale_kernel");
}

void CudaBackend::embed_codebooks_mean(const Tensor& table, const Tensor& codes, int codebook_size,
                                       const Tensor& out) {
  const int64_t T = codes.dim(0), Q = codes.dim(1), H = table.row_numel();
  if (codes.ndim != 2 || codes.dtype != DType::I32 || out.numel() != T * H || Q * codebook_size > table.dim(0))
    throw Error("embed_codebooks_mean: codes " + codes.shape_str() + ", table " + table.shape_str() + ", out " +
                out.shape_str() + " do not match");
  if (T == 0) return;
  embed_codebooks_mean_kernel<<<unsigned(T), 256, 0, stream_>>>(table.as<uint16_t>(), codes.as<int32_t>(), int(Q),
                                                                codebook_size, H, out.as<float>(), flags_);
  OMNI_LAUNCHED("embed_codebooks_mean_kernel");
}

}  // namespace omni
