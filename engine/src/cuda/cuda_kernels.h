// Host-side launchers of kernels shared between the CUDA backend's files.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "cuda/cuda_tuning.h"
#include "omni/errors.h"

namespace omni {

void cuda_check(cudaError_t err, const char* what);

namespace cuda {

// Launches `kernel` on ex.stream, with the programmatic-serialization attribute when ex.tuning.pdl.
// Kernels launched this way must call pdl_wait() before reading what earlier kernels wrote.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, const Exec& ex, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = 0;
  cfg.stream = ex.stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = ex.tuning.pdl ? 1 : 0;
  cuda_check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), "cudaLaunchKernelEx");
}

// Decode GEMV, y_s = act(W_s x + b_s), over up to three matrices that share x and K (the q, k,
// v projections run as one launch). One warp per output row; W bf16 [n, K] with K % 8 == 0;
// x fp32 [rows, K], y fp32 [rows, n_s]; the weights are read once per kGemvMaxRows rows.
struct GemvSegment {
  const uint16_t* w = nullptr;
  const uint16_t* bias = nullptr;
  float* y = nullptr;
  int n = 0;
};
struct GemvArgs {
  GemvSegment seg[3];
  int nseg = 1;
  int K = 0;
  int rows = 1;
  const float* x = nullptr;
  int act = 0;  // 0 none, 1 SiLU, 2 GELU
  bool prefetch = false;  // set by launch_gemv: small matrices are pulled toward L2 before pdl_wait
};
constexpr int kGemvMaxRows = 8;
void launch_gemv(const GemvArgs& a, const Exec& ex);

// Any-K fallback (K % 8 != 0 or unaligned): one warp per (row, output), scalar loads.
void launch_gemv_scalar(const GemvArgs& a, const Exec& ex);

// fp32-input GEMM for more than 8 rows where activations stay fp32 (cuda_gemm_f32.cu): out[s][n] =
// act(x[s] . W[n] + bias[n]) (act: 0 none, 1 SiLU, 2 GELU); fits: K % 4 == 0, x 16-B and W 8-B aligned.
bool gemm_f32_fits(int64_t rows, int64_t K, const float* x, const uint16_t* W);
void launch_gemm_f32(const float* x, const uint16_t* W, const uint16_t* bias, float* out, int S, int N, int K,
                     int act, cudaStream_t stream);

// MoE prefill grouped GEMM on the tensor cores (cuda_moe_tc.cu; compute capability >= 8.0).
// For each expert e (grid x) and each of its bucket entries (list[offsets[e] ..][counts[e]]):
// Y[entry][n] = sum_k X[entry / x_div][k] W[n][k], W = table[e * 3 + which], Y fp32; dual: W =
// gate and up (slots 0, 1) and Y (bf16) = silu(gate) * up. X bf16, fp32 accumulation.
// x_lo != 0: X is split into bf16 hi + lo parts, the lo parts x_lo elements after the hi ones (see
// launch_to_bf16), and a dual Y is written the same way with its lo parts y_lo elements after.
bool grouped_gemm_tc_fits(int N, int K);
void launch_grouped_gemm_tc(bool dual, const void* const* table, int which, const int* counts, const int* offsets,
                            const int* list, const uint16_t* X, int x_div, int experts, int max_entries, int N, int K,
                            void* Y, cudaStream_t stream, int64_t x_lo = 0, int64_t y_lo = 0);
// The same contract on mma.sync with the weights loaded straight into registers (cuda_moe_mma.cu;
// compute capability >= 8.0; `entries` = the number of bucket entries over all experts); needs
// K % 128 == 0 and N % 16 (dual) or 32.
bool grouped_gemm_mma_fits(int N, int K, bool dual);
void launch_grouped_gemm_mma(bool dual, const void* const* table, int which, const int* counts, const int* offsets,
                             const int* list, const uint16_t* X, int x_div, int experts, int entries, int N, int K,
                             void* Y, cudaStream_t stream, int64_t x_lo = 0, int64_t y_lo = 0);
// out = bf16(in); with lo: also lo = bf16(in - out), so that out + lo carries in to ~2^-16.
void launch_to_bf16(const float* in, uint16_t* out, int64_t n, cudaStream_t stream, uint16_t* lo = nullptr);

// Decode experts (cuda_moe.cu): act_j = silu(gate_j x) * up_j x for the k selected experts (their
// gate/up/down addresses in ptrs [k][3], ids in sel, weights in selw), then
// out = sum_j selw_j down_j act_j. Two kernels.
void launch_experts_decode(const void* const* ptrs, const void* const* table, const int* sel, const float* selw,
                           int k, int H, int I, const float* x, float* act, float* out, const Exec& ex);

}  // namespace cuda
}  // namespace omni
