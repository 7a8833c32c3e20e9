#include "synthetic_weights.h"

#include <cmath>

namespace omni {
namespace {

struct Maker {
  Backend& be;
  uint64_t seed;
  Tensor linear(int64_t out, int64_t in, DType format = DType::BF16) {
    return be.synthetic_weight_as({out, in}, seed++, 1.f / std::sqrt(float(in)), format);
  }
  Tensor norm(int64_t n) { return be.synthetic_weight({n}, seed++, 1.f); }
  MlpWeights mlp(int64_t H, int64_t I, DType f) { return {linear(I, H, f), linear(I, H, f), linear(H, I, f)}; }
};

}  // namespace

Tensor synthetic_weight_for(Backend& be, std::initializer_list<int64_t> shape, uint64_t seed) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const float scale = shape.size() <= 1 ? 1.f : 1.f / std::sqrt(float(numel / *shape.begin()));
  return be.synthetic_weight(shape, seed, scale);
}

DecoderWeights synthetic_decoder_weights(Backend& be, const DecoderConfig& c, uint64_t seed, DType attention_format,
                                         DType ffn_format) {
  Maker mk{be, seed};
  const int64_t H = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  DecoderWeights w;
  for (int l = 0; l < c.num_layers; ++l) {
    DecoderLayerWeights L;
    L.input_norm = mk.norm(H);
    L.post_norm = mk.norm(H);
    AttentionWeights& a = L.attn;
    a.wq = mk.linear(q, H, attention_format);
    a.wk = mk.linear(kv, H, attention_format);
    a.wv = mk.linear(kv, H, attention_format);
    a.wo = mk.linear(H, q, attention_format);
    a.q_norm = mk.norm(c.head_dim);
    a.k_norm = mk.norm(c.head_dim);
    a.num_heads = c.num_heads;
    a.num_kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    a.norm_eps = float(c.rms_norm_eps);
    a.rope_theta = float(c.rope.theta);
    L.is_moe = c.is_moe_layer(l);
    if (L.is_moe) {
      L.moe.router = mk.linear(c.num_experts, H);
      for (int e = 0; e < c.num_experts; ++e) L.moe.experts.push_back(mk.mlp(H, c.moe_intermediate_size, ffn_format));
      L.moe.top_k = c.num_experts_per_tok;
      L.moe.norm_topk_prob = c.norm_topk_prob;
      if (c.shared_expert_intermediate_size > 0) {
        L.moe.shared = mk.mlp(H, c.shared_expert_intermediate_size, ffn_format);
        L.moe.shared_gate = mk.linear(1, H);
      }
      be.prepare_moe(L.moe);
    } else {
      L.mlp = mk.mlp(H, c.intermediate_size, ffn_format);
    }
    w.layers.push_back(std::move(L));
  }
  w.final_norm = mk.norm(H);
  return w;
}

}  // namespace omni
