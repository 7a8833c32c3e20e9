// The CUDA backend's kernel choices that can be switched for A/B timing, in one place. A CudaTuning is
// read from the environment once, when make_cuda_backend() makes a backend (CudaTuning::from_env in
// cuda_tuning.cpp is the only reader of OMNI_CUDA_* variables); the backend hands it to every launcher
// that chooses a kernel (cuda::Exec below). The defaults are the variants that won their
// measurements (docs/performance.md, "How to reproduce"); no switch is needed in normal use. A switch
// changes at most the kernel that computes a value, never what is computed.
#pragma once
#include <cuda_runtime.h>

namespace omni::cuda {

struct CudaTuning {
  // OMNI_CUDA_PDL=0: no programmatic dependent launch. On (the default) only where the device has
  // compute capability >= 9.0; the backend clears it elsewhere.
  bool pdl = true;
  // OMNI_CUDA_GEMV_HOIST: decode GEMV weights loaded into registers before the wait on the previous
  // kernel, at 5 (default) or 4 blocks per SM; 0: only prefetched to L2.
  int gemv_hoist = 5;
  // OMNI_CUDA_GEMV_WIDE=0: no whole-row (16 chunks per lane) hoist for K >= 4096 (the o_proj).
  bool gemv_wide = true;
  // OMNI_CUDA_ROUTER_HOIST=0: router rows only prefetched to L2 before the wait.
  bool router_hoist = true;
  // OMNI_CUDA_GATEUP_MINB=2: expert gate and up rows on one warp (the general kernel) instead of on
  // separate warps (H = 2048 only).
  bool gateup_split = true;
  // OMNI_CUDA_DOWN_ROWS=1: expert down projection one row per block (the general kernel) instead of four
  // rows per block (eight experts of I = 768 only).
  bool down_rows = true;
  // OMNI_CUDA_FUSED_LAYER: a thinker decode row as 2 (default) six kernels, the residual add + RMSNorm
  // folded into the q/k/v GEMV and the router; 0 the separate operations (eight kernels).
  int decode_layer = 2;
  // OMNI_CUDA_MOE_TC=0: MoE prefill on the fp32 FMA grouped GEMM instead of the tensor cores.
  bool moe_tc = true;
  // OMNI_CUDA_MOE_MMA=0: MoE prefill on the WMMA kernel (cuda_moe_tc.cu) instead of cuda_moe_mma.cu.
  bool moe_mma = true;
  // OMNI_CUDA_ATTN_MMA=0: prefill attention on the fp32 tile kernel instead of mma.sync.
  bool attn_mma = true;
  // OMNI_CUDA_QSTREAM=0: a quantized lm_head on qgemv_kernel instead of the streaming kernel.
  bool qstream = true;
  // OMNI_CUDA_QGATEUP_MINB=2: quantized expert gate/up at 2 blocks per SM instead of 3.
  int qgateup_min_blocks = 3;

  // The defaults, with every OMNI_CUDA_* variable that is set applied. A value outside a switch's set is
  // an error naming the variable and the values it takes.
  static CudaTuning from_env();
};

// Where and how kernels are launched: the backend's stream and its tuning. Every launcher that chooses
// between kernels, or launches with programmatic dependent launch (cuda::launch, cuda_kernels.h), takes one.
struct Exec {
  cudaStream_t stream = nullptr;
  CudaTuning tuning;
};

}  // namespace omni::cuda
