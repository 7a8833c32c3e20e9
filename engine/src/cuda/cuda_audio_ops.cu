// The audio encoder's convolution and layout operations (docs/model.md §3.2): direct kernels, one
// thread per output element. Correct and simple; the encoder runs once per utterance.
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

namespace omni {
namespace cuda {
namespace {

__global__ void conv2d_gelu_kernel(const float* x, const uint16_t* w, const uint16_t* b, int64_t N, int Cin, int H,
                                   int W, int Cout, int Ho, int Wo, int stride, int pad, float* out) {
  const int64_t total = N * Cout * Ho * Wo;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int ow = int(i % Wo), oh = int((i / Wo) % Ho), co = int((i / (int64_t(Wo) * Ho)) % Cout);
    const int64_t n = i / (int64_t(Wo) * Ho * Cout);
    float acc = bf16_at(b, co);
    for (int ci = 0; ci < Cin; ++ci) {
      const float* src = x + (n * Cin + ci) * H * W;
      const uint16_t* k = w + (int64_t(co) * Cin + ci) * 9;
      for (int kh = 0; kh < 3; ++kh) {
        const int ih = oh * stride - pad + kh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < 3; ++kw) {
          const int iw = ow * stride - pad + kw;
          if (iw >= 0 && iw < W) acc += bf16_at(k, kh * 3 + kw) * src[int64_t(ih) * W + iw];
        }
      }
    }
    out[i] = gelu_erf(acc);
  }
}

__global__ void permute_0312_kernel(const float* x, int64_t A, int64_t B, int64_t C, int64_t D, float* out) {
  const int64_t total = A * B * C * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    // i indexes the output [A, D, B, C].
    const int64_t c = i % C, b = (i / C) % B, d = (i / (C * B)) % D, a = i / (C * B * D);
    out[i] = x[((a * B + b) * C + c) * D + d];
  }
}

int grid_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535)); }

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad,
                              const Tensor& out) {
  if (x.ndim != 4 || w.ndim != 4 || out.ndim != 4)
    throw Error("conv2d_gelu: x " + x.shape_str() + ", w " + w.shape_str() + ", out " + out.shape_str() +
                " must be 4-D");
  const int64_t N = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3), Cout = w.dim(0);
  const int64_t Ho = (H + 2 * pad - 3) / stride + 1, Wo = (W + 2 * pad - 3) / stride + 1;
  if (w.dim(1) != Cin || w.dim(2) != 3 || w.dim(3) != 3 || b.numel() != Cout || out.dim(0) != N ||
      out.dim(1) != Cout || out.dim(2) != Ho || out.dim(3) != Wo || x.dtype != DType::F32 ||
      w.dtype != DType::BF16 || b.dtype != DType::BF16)
    throw Error("conv2d_gelu: shapes x " + x.shape_str() + ", w " + w.shape_str() + ", b " + b.shape_str() +
                ", out " + out.shape_str() + " do not match (stride " + std::to_string(stride) + ", pad " +
                std::to_string(pad) + ")");
  const int64_t total = N * Cout * Ho * Wo;
  if (total == 0) return;
  conv2d_gelu_kernel<<<grid_for(total), 256, 0, stream_>>>(x.as<float>(), w.as<uint16_t>(), b.as<uint16_t>(), N,
                                                           int(Cin), int(H), int(W), int(Cout), int(Ho), int(Wo),
                                                           stride, pad, out.as<float>());
  OMNI_LAUNCHED("conv2d_gelu_kernel");
}

void CudaBackend::permute_0312(const Tensor& x, const Tensor& out) {
  if (x.ndim != 4 || out.numel() != x.numel() || x.dtype != DType::F32 || out.dtype != DType::F32)
    throw Error("permute_0312: x " + x.shape_str() + " and out " + out.shape_str() + " do not match");
  if (x.numel() == 0) return;
  permute_0312_kernel<<<grid_for(x.numel()), 256, 0, stream_>>>(x.as<float>(), x.dim(0), x.dim(1), x.dim(2), x.dim(3),
                                                                out.as<float>());
  OMNI_LAUNCHED("permute_0312_kernel");
}

}  // namespace omni
