// Weight-only quantized formats (made at load time from bf16 weights) and the per-part choice
// of format. Shared by the CPU reference and the CUDA backend: the CUDA quantize kernel must
// produce these bytes exactly (tests/gpu checks it bit for bit).
//
// A quantized matrix W [N, K] is a Tensor of dtype Q8 or Q4 with shape [N, K]:
//  - Q8: one signed byte per weight; one fp16 scale per output row (absmax / 127).
//  - Q4: two signed 4-bit weights per byte (element 2j in the low nibble, 2j+1 in the high one,
//        two's complement, -8..7); one fp16 scale per group of 128 weights along K
//        (absmax of the group / 7), the last group of a row may be shorter.
// Rows are padded with zero weights to a multiple of 16 bytes (Q8: K rounded up to 16, Q4: to
// 32), so that each row starts 16-byte aligned. Scales: `Tensor::scales`, fp16 [N, groups].
// Value: w[n][k] = q[n][k] * float(scale[n][group(k)]).
// Quantization: s = fp16(absmax / Qmax) rounded to nearest even (Qmax 127 or 7), then
// q = clamp(rint(w / s), -Qmax-1, Qmax) with IEEE division; s == 0 gives q == 0.
#pragma once
#include <cstdint>
#include <string>

#include "tensor.h"

namespace omni {

#if defined(__CUDACC__)
#define OMNI_QUANT_HD __host__ __device__
#else
#define OMNI_QUANT_HD
#endif

constexpr int64_t kQ4Group = 128;

// Weights per row as stored (K padded), bytes per row, scales per row, weights per scale.
OMNI_QUANT_HD inline int64_t quant_row_elems(DType t, int64_t K) {
  return t == DType::Q4 ? (K + 31) / 32 * 32 : (K + 15) / 16 * 16;
}
OMNI_QUANT_HD inline int64_t quant_row_bytes(DType t, int64_t K) {
  return t == DType::Q4 ? quant_row_elems(t, K) / 2 : quant_row_elems(t, K);
}
OMNI_QUANT_HD inline int64_t quant_groups(DType t, int64_t K) {
  return t == DType::Q4 ? (K + kQ4Group - 1) / kQ4Group : 1;
}
OMNI_QUANT_HD inline int64_t quant_group_elems(DType t, int64_t K) { return t == DType::Q4 ? kQ4Group : K; }
OMNI_QUANT_HD inline int quant_max(DType t) { return t == DType::Q4 ? 7 : 127; }

// Quantizes rows [0, src.dim(0)) of a host bf16/f16/f32 matrix into `data`
// (src.dim(0) * quant_row_bytes) and `scales` (src.dim(0) * quant_groups fp16 values).
void quantize_rows(const Tensor& src, DType format, uint8_t* data, uint16_t* scales);
// Row r of a host Q8/Q4 tensor as K floats (the reference every kernel is compared with).
void dequantize_row(const Tensor& q, int64_t r, float* dst);

// Which weights are stored in which format (`model.weights` / --weights). The code predictor,
// code2wav, the audio encoder, embeddings, norms, the MoE routers and the talker's projections
// stay bf16.
struct WeightPlan {
  DType experts = DType::BF16;    // thinker MoE experts (gate, up, down)
  DType attention = DType::BF16;  // thinker q/k/v/o projections
  DType lm_head = DType::BF16;    // thinker lm_head
  DType talker = DType::BF16;     // talker decoder layers (attention, experts, shared expert)
  bool all_bf16() const;
};

// "bf16" | "int8" | "int4" (every part), or a comma list of part=format with parts experts,
// attention, lm_head, talker (parts not named stay bf16), e.g. "experts=int4,attention=int8".
// Throws ConfigError naming the value and the allowed set.
WeightPlan parse_weight_plan(const std::string& spec);
std::string weight_plan_string(const WeightPlan& p);  // e.g. "experts=int4,attention=int8,lm_head=bf16,talker=bf16"
const char* weight_format_name(DType t);              // bf16 | int8 | int4

}  // namespace omni
