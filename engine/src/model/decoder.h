// DecoderStack: the Qwen3 decoder used three times in Qwen3-Omni — thinker text LM, talker
// (MoE + shared expert) and code predictor (dense). Pre-norm layers:
//   h = h + Attn(RMSNorm_in(h));  h = h + FFN(RMSNorm_post(h));  out = RMSNorm_final(h)
// written once over Backend operations.
#pragma once
#include <string>
#include <vector>

#include "backend.h"
#include "io/checkpoint.h"
#include "io/model_config.h"

namespace omni {

struct DecoderWeights {
  std::vector<DecoderLayerWeights> layers;
  Tensor final_norm;
};

// Reads `<prefix>.layers.{L}.*` and `<prefix>.norm.weight` (e.g. prefix "thinker.model"),
// checking every shape against `cfg`, and hands each tensor to the backend once. The attention
// projections are stored as `attention_format`, the MLP/expert matrices (shared expert too) as
// `ffn_format` (quant.h); routers, gates and norms stay bf16.
DecoderWeights load_decoder_weights(const Checkpoint& ck, Backend& be, const std::string& prefix,
                                    const DecoderConfig& cfg, DType attention_format = DType::BF16,
                                    DType ffn_format = DType::BF16);

// KV caches of one sequence for every layer of a stack.
std::vector<KVCache> alloc_kv_caches(Backend& be, const DecoderConfig& cfg, int capacity);

// What a forward() call may add beyond token rows at plain positions (the thinker's vision path,
// docs/model.md §3.4-3.5).
struct DecoderExtras {
  // F32 [S, head_dim/2] each, when given: per-row rotary cosines and sines (AttentionArgs::rope_cos);
  // positions then only name the cache slots. The thinker's 3-row MRoPE comes this way.
  Tensor rope_cos, rope_sin;
  // rows [row, row + add.dim(0)) of the hidden state get `add` after decoder layer `layer` (0-based), after
  // hidden_states[layer + 1] is taken: transformers records the layer's output before the DeepStack addition.
  struct RowAdd {
    int layer = 0;
    int64_t row = 0;
    Tensor add;
  };
  std::vector<RowAdd> adds;
};

// Per-row rotary tables of one decoder (its rope config and head size) for up to `max_rows` rows with 3-row
// positions (docs/model.md §3.1, §3.5): the thinker's prompt and decode steps after an image, the talker's too.
class RotaryRows {
 public:
  RotaryRows(Backend& be, const DecoderConfig& cfg, int max_rows);
  // Writes the tables of rows [0, n) for positions t, h, w and returns the extras that name them.
  DecoderExtras fill(const float* t, const float* h, const float* w, int n);
  // The extras naming rows [0, n) as last written (a captured graph reads them when it replays).
  DecoderExtras rows(int n) const;

 private:
  Backend& be_;
  RopeConfig rope_;
  int head_dim_;
  Tensor cos_, sin_;        // F32 [max_rows, head_dim/2]
  std::vector<float> host_;  // staging of one fill
};

class DecoderStack {
 public:
  // Scratch for up to `max_rows` rows per forward() call is allocated here, once.
  DecoderStack(Backend& be, const DecoderConfig& cfg, DecoderWeights weights, int max_rows);

  // x: [S, hidden] input embeddings, S <= max_rows; overwritten with the final-norm output.
  // positions: I32 [S] (rotary positions = cache slots). `capture`, when given ([S, hidden]),
  // receives hidden_states[capture_layer] in HF's numbering (0 = the inputs, i = output of
  // layer i-1, pre-norm).
  void forward(const Tensor& x, const Tensor& positions, std::vector<KVCache>& caches,
               const Tensor& capture = Tensor(), int capture_layer = -1, const DecoderExtras* extras = nullptr);

  const DecoderConfig& config() const { return cfg_; }
  const DecoderWeights& weights() const { return w_; }
  int max_rows() const { return max_rows_; }

 private:
  Backend& be_;
  DecoderConfig cfg_;
  DecoderWeights w_;
  int max_rows_;
  Tensor normed_, branch_;  // [max_rows, hidden]
};

}  // namespace omni
