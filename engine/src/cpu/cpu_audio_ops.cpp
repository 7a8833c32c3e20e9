// Reference implementations of the audio encoder's convolution and layout operations.
#include <vector>

#include "cpu/cpu_backend.h"
#include "omni/errors.h"

namespace omni {

void CpuBackend::conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad,
                             const Tensor& out) {
  const int64_t N = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Cout = w.dim(0);
  const int64_t Ho = (H + 2 * pad - 3) / stride + 1, Wo = (W + 2 * pad - 3) / stride + 1;
  if (x.ndim != 4 || w.ndim != 4 || w.dim(1) != Cin || w.dim(2) != 3 || w.dim(3) != 3 || b.numel() != Cout ||
      out.ndim != 4 || out.dim(0) != N || out.dim(1) != Cout || out.dim(2) != Ho || out.dim(3) != Wo)
    throw Error("conv2d_gelu: shapes x " + x.shape_str() + ", w " + w.shape_str() + ", b " + b.shape_str() +
                ", out " + out.shape_str() + " do not match (stride " + std::to_string(stride) + ", pad " +
                std::to_string(pad) + ")");
  std::vector<float> wf(static_cast<size_t>(w.numel())), bf(static_cast<size_t>(Cout));
  for (int64_t i = 0; i < w.numel(); ++i) wf[size_t(i)] = load_f32(w, i);
  for (int64_t i = 0; i < Cout; ++i) bf[size_t(i)] = load_f32(b, i);
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t co = 0; co < Cout; ++co) {
      float* plane = yp + (n * Cout + co) * Ho * Wo;
      for (int64_t i = 0; i < Ho * Wo; ++i) plane[i] = bf[size_t(co)];
      for (int64_t ci = 0; ci < Cin; ++ci) {
        const float* src = xp + (n * Cin + ci) * H * W;
        const float* k = wf.data() + (co * Cin + ci) * 9;
        for (int64_t oh = 0; oh < Ho; ++oh) {
          for (int kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh * stride - pad + kh;
            if (ih < 0 || ih >= H) continue;
            const float* row = src + ih * W;
            float* dst = plane + oh * Wo;
            for (int kw = 0; kw < 3; ++kw) {
              const float kv = k[kh * 3 + kw];
              for (int64_t ow = 0; ow < Wo; ++ow) {
                const int64_t iw = ow * stride - pad + kw;
                if (iw >= 0 && iw < W) dst[ow] += kv * row[iw];
              }
            }
          }
        }
      }
      for (int64_t i = 0; i < Ho * Wo; ++i) plane[i] = apply_activation(plane[i], Activation::GELU);
    }
  }
}

void CpuBackend::permute_0312(const Tensor& x, const Tensor& out) {
  const int64_t A = x.dim(0), B = x.dim(1), C = x.dim(2), D = x.dim(3);
  if (x.ndim != 4 || out.numel() != x.numel())
    throw Error("permute_0312: x " + x.shape_str() + " and out " + out.shape_str() + " do not match");
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
  for (int64_t a = 0; a < A; ++a)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t d = 0; d < D; ++d) yp[((a * D + d) * B + b) * C + c] = xp[((a * B + b) * C + c) * D + d];
}

}  // namespace omni
