// Talker (docs/model.md §3.7, §3.8): the MoE decoder that predicts codebook 0 of each 80 ms codec frame,
// and the two ResizeMLPs that bring thinker vectors into its width:
//   text_projection(x)   = fc2(silu(fc1 x))  for thinker token embeddings,
//   hidden_projection(x) = same shape, own weights, for the thinker's accept-layer hidden states
//                          at audio/image/video placeholder positions. Both linears have biases.
#pragma once
#include <vector>

#include "model/decoder.h"

namespace omni {

struct ResizeMlpWeights {
  Tensor fc1_w, fc1_b, fc2_w, fc2_b;  // [I, Ht], [I], [H, I], [H]
};

class Talker {
 public:
  // `max_rows`: the longest prefill (user part + 9); `max_frames`: the most decode steps.
  // `format`: storage of the decoder layers' attention and expert matrices (quant.h).
  Talker(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_rows, int max_frames,
         DType format = DType::BF16);

  // x [S, thinker_hidden] -> out [S, hidden]; S <= max_rows.
  void project_text(const Tensor& x, const Tensor& out) { project(text_proj_, x, out); }
  void project_hidden(const Tensor& x, const Tensor& out) { project(hidden_proj_, x, out); }
  // Codec embedding rows C(id): ids I32 [S] -> out [S, hidden].
  void codec_embed(const Tensor& ids, const Tensor& out) { be_.embed(codec_embedding_, ids, out); }
  // The decoder over x [S, hidden] (overwritten with the final-norm output) at `positions`,
  // using this talker's KV cache. `extras` carries per-row rotary tables when the rows have 3-row positions
  // (image spans, docs/model.md §3.7); positions then only name the cache slots.
  void forward(const Tensor& x, const Tensor& positions, const DecoderExtras* extras = nullptr) {
    stack_.forward(x, positions, caches_, Tensor(), -1, extras);
  }
  // codec_head: h [1, hidden] (final-normed) -> logits [1, vocab].
  void logits(const Tensor& h, const Tensor& out) { be_.linear(h, codec_head_, Tensor(), out); }

  const TalkerConfig& config() const { return cfg_; }
  int hidden_size() const { return cfg_.text.hidden_size; }
  int vocab_size() const { return cfg_.text.vocab_size; }
  int max_rows() const { return stack_.max_rows(); }
  int cache_capacity() const { return int(caches_.front().capacity()); }
  Backend& backend() { return be_; }

 private:
  void project(const ResizeMlpWeights& w, const Tensor& x, const Tensor& out);
  Backend& be_;
  TalkerConfig cfg_;
  ResizeMlpWeights text_proj_, hidden_proj_;
  Tensor codec_embedding_, codec_head_;
  DecoderStack stack_;
  std::vector<KVCache> caches_;
  Tensor mid_;  // [max_rows, I] ResizeMLP activations
};

}  // namespace omni
