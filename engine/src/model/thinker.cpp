#include "model/thinker.h"

namespace omni {

Thinker::Thinker(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_rows, const WeightPlan& plan)
    : Thinker(be, cfg,
              be.weight(ck.get("thinker.model.embed_tokens.weight", {cfg.thinker.vocab_size, cfg.thinker.hidden_size})),
              load_decoder_weights(ck, be, "thinker.model", cfg.thinker, plan.attention, plan.experts),
              be.weight_as(ck.get("thinker.lm_head.weight", {cfg.thinker.vocab_size, cfg.thinker.hidden_size}),
                           plan.lm_head, "thinker.lm_head.weight"),
              max_rows) {}

Thinker::Thinker(Backend& be, const ModelConfig& cfg, Tensor embed_table, DecoderWeights layers, Tensor lm_head,
                 int max_rows)
    : be_(be),
      embed_table_(embed_table),
      lm_head_(lm_head),
      stack_(be, cfg.thinker, std::move(layers), max_rows) {}

}  // namespace omni
