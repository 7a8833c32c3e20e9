// Thinker: the text LM of Qwen3-Omni (token embeddings, the 48-layer MoE decoder, lm_head).
// Audio enters as rows of the input embeddings (the audio encoder's output replaces the
// <|audio_pad|> rows between embed() and forward()).
#pragma once
#include "model/decoder.h"
#include "quant.h"

namespace omni {

class Thinker {
 public:
  // `max_rows`: the most tokens one forward() call handles (prefill is done in chunks of it).
  // `plan` picks the storage of the experts, attention projections and lm_head (quant.h).
  Thinker(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_rows, const WeightPlan& plan = {});
  // For tools that build weights without a checkpoint (omni-bench): all tensors already on `be`.
  Thinker(Backend& be, const ModelConfig& cfg, Tensor embed_table, DecoderWeights layers, Tensor lm_head,
          int max_rows);

  // ids: I32 [S] → x: [S, hidden]
  void embed(const Tensor& ids, const Tensor& x) { be_.embed(embed_table_, ids, x); }
  // The decoder over x ([S, hidden], overwritten with the final-norm output). `capture` receives
  // hidden_states[capture_layer] (the talker's accept layer).
  void forward(const Tensor& x, const Tensor& positions, std::vector<KVCache>& caches,
               const Tensor& capture = Tensor(), int capture_layer = -1, const DecoderExtras* extras = nullptr) {
    stack_.forward(x, positions, caches, capture, capture_layer, extras);
  }
  // logits [S, vocab] for the normed rows h [S, hidden].
  void logits(const Tensor& h, const Tensor& out) { be_.linear(h, lm_head_, Tensor(), out); }

  const Tensor& embed_table() const { return embed_table_; }
  const DecoderConfig& config() const { return stack_.config(); }
  int max_rows() const { return stack_.max_rows(); }
  Backend& backend() { return be_; }

 private:
  Backend& be_;
  Tensor embed_table_, lm_head_;
  DecoderStack stack_;
};

}  // namespace omni
