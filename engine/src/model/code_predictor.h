// Code predictor (docs/model.md §3.8, "MTP"): a small dense decoder that, per codec frame, predicts the
// residual codebooks 1..Q-1 from the talker's final-normed hidden state and the frame's
// codebook-0 token. Every frame starts from an empty KV cache at position 0:
//   rows [h_last, C(c0)] -> lm_head[0] -> r1;  then cp_embed[i-1](r_i) at position i+1 -> lm_head[i] -> r_{i+1}.
// It also forms the talker's next input: C(c0) + sum_i cp_embed[i](r_{i+1}).
#pragma once
#include <functional>
#include <vector>

#include "model/decoder.h"

namespace omni {

class CodePredictor {
 public:
  CodePredictor(const Checkpoint& ck, Backend& be, const TalkerConfig& cfg);

  // h_last [1, H]: the talker's final-normed hidden; c0_embed [1, H]: C(c0).
  // Writes the Q-1 residual codes to `residual` and the next talker input (without the text
  // side) to `codec_sum` [1, H]. `pick(logits)` chooses each code (greedy or sampled).
  void predict(const Tensor& h_last, const Tensor& c0_embed, const std::function<int32_t(const Tensor&)>& pick,
               std::vector<int32_t>& residual, const Tensor& codec_sum);

  int groups() const { return groups_; }

 private:
  Backend& be_;
  int groups_;  // Q: codebooks per frame
  std::vector<Tensor> embed_, head_;  // Q-1 each: [V, H] and [V, H]
  DecoderStack stack_;
  std::vector<KVCache> caches_;
  Tensor x_, positions_, ids_, logits_, row_;
};

}  // namespace omni
