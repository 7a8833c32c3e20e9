#include "model/talker.h"

#include "omni/errors.h"

namespace omni {
namespace {

ResizeMlpWeights load_resize_mlp(const Checkpoint& ck, Backend& be, const std::string& p, int64_t in, int64_t mid,
                                 int64_t out) {
  ResizeMlpWeights w;
  w.fc1_w = be.weight(ck.get(p + "linear_fc1.weight", {mid, in}));
  w.fc1_b = be.weight(ck.get(p + "linear_fc1.bias", {mid}));
  w.fc2_w = be.weight(ck.get(p + "linear_fc2.weight", {out, mid}));
  w.fc2_b = be.weight(ck.get(p + "linear_fc2.bias", {out}));
  return w;
}

// The talker's decoder layers are all MoE with a shared expert (HF's talker layer ignores
// mlp_only_layers / decoder_sparse_step).
DecoderConfig talker_stack_config(const ModelConfig& cfg) {
  if (!cfg.has_talker)
    throw ConfigError("this checkpoint has no talker (enable_audio_output is off or talker_config is missing)");
  DecoderConfig c = cfg.talker.text;
  c.mlp_only_layers.clear();
  c.decoder_sparse_step = 1;
  return c;
}

}  // namespace

Talker::Talker(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_rows, int max_frames, DType format)
    : be_(be),
      cfg_(cfg.talker),
      stack_(be, talker_stack_config(cfg), load_decoder_weights(ck, be, "talker.model", talker_stack_config(cfg), format, format),
             max_rows) {
  const int64_t H = cfg_.text.hidden_size, Ht = cfg_.thinker_hidden_size, I = cfg_.text.intermediate_size,
                V = cfg_.text.vocab_size;
  if (I <= 0) throw ConfigError("talker_config.text_config.intermediate_size must be positive (ResizeMLP width)");
  text_proj_ = load_resize_mlp(ck, be, "talker.text_projection.", Ht, I, H);
  hidden_proj_ = load_resize_mlp(ck, be, "talker.hidden_projection.", Ht, I, H);
  codec_embedding_ = be.weight(ck.get("talker.model.codec_embedding.weight", {V, H}));
  codec_head_ = be.weight(ck.get("talker.codec_head.weight", {V, H}));
  caches_ = alloc_kv_caches(be, stack_.config(), max_rows + max_frames + 1);
  mid_ = be.alloc({max_rows, I});
}

void Talker::project(const ResizeMlpWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t S = x.dim(0);
  if (S > mid_.dim(0)) throw Error("talker: " + std::to_string(S) + " rows exceed the " +
                                   std::to_string(mid_.dim(0)) + " it was sized for");
  const Tensor mid = mid_.rows(0, S);
  be_.linear(x, w.fc1_w, w.fc1_b, mid, Activation::SiLU);
  be_.linear(mid, w.fc2_w, w.fc2_b, out, Activation::None);
}

}  // namespace omni
