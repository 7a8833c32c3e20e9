#include "model/code_predictor.h"

#include "omni/errors.h"

namespace omni {

CodePredictor::CodePredictor(const Checkpoint& ck, Backend& be, const TalkerConfig& cfg)
    : be_(be),
      groups_(cfg.num_code_groups),
      stack_(be, cfg.code_predictor, load_decoder_weights(ck, be, "talker.code_predictor.model", cfg.code_predictor),
             2) {
  const DecoderConfig& c = cfg.code_predictor;
  if (groups_ < 2) throw ConfigError("talker_config.num_code_groups must be at least 2");
  if (c.hidden_size != cfg.text.hidden_size)
    throw ConfigError("talker code_predictor_config.hidden_size must equal the talker's hidden_size");
  for (int i = 0; i < groups_ - 1; ++i) {
    const std::string n = std::to_string(i);
    embed_.push_back(be.weight(ck.get("talker.code_predictor.model.codec_embedding." + n + ".weight",
                                      {c.vocab_size, c.hidden_size})));
    head_.push_back(be.weight(ck.get("talker.code_predictor.lm_head." + n + ".weight", {c.vocab_size, c.hidden_size})));
  }
  caches_ = alloc_kv_caches(be, c, groups_ + 1);
  x_ = be.alloc({2, c.hidden_size});
  row_ = be.alloc({1, c.hidden_size});
  positions_ = be.alloc({groups_ + 1}, DType::I32);
  ids_ = be.alloc({1}, DType::I32);
  logits_ = be.alloc({1, c.vocab_size});
  std::vector<int32_t> pos(static_cast<size_t>(groups_ + 1));
  for (int i = 0; i <= groups_; ++i) pos[size_t(i)] = i;
  be.upload(positions_, pos.data());
}

void CodePredictor::predict(const Tensor& h_last, const Tensor& c0_embed,
                            const std::function<int32_t(const Tensor&)>& pick, std::vector<int32_t>& residual,
                            const Tensor& codec_sum) {
  residual.assign(size_t(groups_ - 1), 0);
  // The cache needs no clearing: positions restart at 0 and attention reads slots [0, pos].
  be_.copy(h_last, x_.rows(0, 1));
  be_.copy(c0_embed, x_.rows(1, 1));
  be_.copy(c0_embed, codec_sum);
  stack_.forward(x_, positions_.rows(0, 2), caches_);
  Tensor last = x_.rows(1, 1);
  for (int i = 0; i < groups_ - 1; ++i) {
    be_.linear(last, head_[size_t(i)], Tensor(), logits_);
    const int32_t code = pick(logits_);
    residual[size_t(i)] = code;
    be_.upload(ids_, &code);
    be_.embed(embed_[size_t(i)], ids_, row_);
    be_.add(codec_sum, row_, codec_sum);
    if (i + 1 == groups_ - 1) break;  // the last embedding only joins the sum
    stack_.forward(row_, positions_.rows(i + 2, 1), caches_);
    last = row_;
  }
}

}  // namespace omni
