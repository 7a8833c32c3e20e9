// Random decoder weights of any DecoderConfig's shapes, made by the backend where it keeps
// weights (Backend::synthetic_weight): the benchmark runs the full release shapes without a
// checkpoint, and the GPU tests give the CPU and CUDA backends bit-identical weights.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "model/decoder.h"

namespace omni {

// Linear weights are uniform in ±1/sqrt(fan_in) (activations keep their scale through the
// stack); norm weights uniform in ±1 around 1 is not representable by synthetic_weight, so
// norms are uniform in [-1, 1) — fine for timing and for backend-vs-backend comparisons.
// Attention projections and MLP/expert matrices are stored as the given formats (quant.h).
DecoderWeights synthetic_decoder_weights(Backend& be, const DecoderConfig& cfg, uint64_t seed,
                                         DType attention_format = DType::BF16, DType ffn_format = DType::BF16);

// One weight of any shape under the same rule, for the loaders that take a weight source
// (Code2Wav, the audio encoder): rank 1 (norms, biases, scales) uniform in [-1, 1); higher ranks
// uniform in ±1/sqrt(fan_in), fan_in = numel / shape[0] (linear [out, in], conv [out, in, k]).
Tensor synthetic_weight_for(Backend& be, std::initializer_list<int64_t> shape, uint64_t seed);

}  // namespace omni
