// Launchers of the quantized-weight kernels (cuda_quant.cu) used from the other CUDA files.
// Formats: quant.h (Q8 per-row scales, Q4 groups of 128 along K, fp16 scales).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor.h"

namespace omni {
namespace cuda {

struct Exec;  // cuda_tuning.h

// Decode GEMV over quantized matrices, y_s = act(W_s x + b_s), up to three segments sharing x
// and K (the fused q/k/v projections); rows <= 8 input rows. Weights are dequantized in
// registers; fp32 accumulation.
struct QGemvSegment {
  const uint8_t* w = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* bias = nullptr;  // bf16, optional
  float* y = nullptr;
  int n = 0;
};
struct QGemvArgs {
  QGemvSegment seg[3];
  int nseg = 1;
  int K = 0;
  int rows = 1;
  const float* x = nullptr;
  int act = 0;  // 0 none, 1 SiLU, 2 GELU
};
// A segment of `w` (a Q8/Q4 CUDA weight) writing y.
QGemvSegment qgemv_segment(const Tensor& w, const Tensor& bias, float* y);
void launch_qgemv(DType format, const QGemvArgs& a, const Exec& ex);

}  // namespace cuda
}  // namespace omni
