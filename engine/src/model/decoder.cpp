#include "model/decoder.h"

#include "model/mrope_positions.h"
#include "omni/errors.h"

namespace omni {
namespace {

// A matrix stored as `format` (quant.h); bf16 keeps the checkpoint's tensor as it is.
Tensor matrix(const Checkpoint& ck, Backend& be, const std::string& name, std::initializer_list<int64_t> shape,
              DType format) {
  return be.weight_as(ck.get(name, shape), format, name);
}

AttentionWeights load_attention(const Checkpoint& ck, Backend& be, const std::string& p, const DecoderConfig& c,
                                DType format) {
  const int64_t H = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  AttentionWeights a;
  a.wq = matrix(ck, be, p + "q_proj.weight", {q, H}, format);
  a.wk = matrix(ck, be, p + "k_proj.weight", {kv, H}, format);
  a.wv = matrix(ck, be, p + "v_proj.weight", {kv, H}, format);
  a.wo = matrix(ck, be, p + "o_proj.weight", {H, q}, format);
  a.q_norm = be.weight(ck.get(p + "q_norm.weight", {c.head_dim}));
  a.k_norm = be.weight(ck.get(p + "k_norm.weight", {c.head_dim}));
  a.num_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.norm_eps = float(c.rms_norm_eps);
  a.rope_theta = float(c.rope.theta);
  return a;
}

MlpWeights load_mlp(const Checkpoint& ck, Backend& be, const std::string& p, int64_t H, int64_t I, DType format) {
  MlpWeights m;
  m.gate = matrix(ck, be, p + "gate_proj.weight", {I, H}, format);
  m.up = matrix(ck, be, p + "up_proj.weight", {I, H}, format);
  m.down = matrix(ck, be, p + "down_proj.weight", {H, I}, format);
  return m;
}

}  // namespace

DecoderWeights load_decoder_weights(const Checkpoint& ck, Backend& be, const std::string& prefix,
                                    const DecoderConfig& c, DType attention_format, DType ffn_format) {
  DecoderWeights w;
  const int64_t H = c.hidden_size;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = prefix + ".layers." + std::to_string(l) + ".";
    DecoderLayerWeights L;
    L.input_norm = be.weight(ck.get(p + "input_layernorm.weight", {H}));
    L.post_norm = be.weight(ck.get(p + "post_attention_layernorm.weight", {H}));
    L.attn = load_attention(ck, be, p + "self_attn.", c, attention_format);
    L.is_moe = c.is_moe_layer(l);
    if (L.is_moe) {
      L.moe.router = be.weight(ck.get(p + "mlp.gate.weight", {c.num_experts, H}));
      for (int e = 0; e < c.num_experts; ++e)
        L.moe.experts.push_back(
            load_mlp(ck, be, p + "mlp.experts." + std::to_string(e) + ".", H, c.moe_intermediate_size, ffn_format));
      L.moe.top_k = c.num_experts_per_tok;
      L.moe.norm_topk_prob = c.norm_topk_prob;
      if (c.shared_expert_intermediate_size > 0) {
        L.moe.shared = load_mlp(ck, be, p + "mlp.shared_expert.", H, c.shared_expert_intermediate_size, ffn_format);
        L.moe.shared_gate = be.weight(ck.get(p + "mlp.shared_expert_gate.weight", {1, H}));
      }
      be.prepare_moe(L.moe);
    } else {
      L.mlp = load_mlp(ck, be, p + "mlp.", H, c.intermediate_size, ffn_format);
    }
    w.layers.push_back(std::move(L));
  }
  w.final_norm = be.weight(ck.get(prefix + ".norm.weight", {H}));
  return w;
}

std::vector<KVCache> alloc_kv_caches(Backend& be, const DecoderConfig& c, int capacity) {
  std::vector<KVCache> caches(size_t(c.num_layers));
  for (KVCache& kv : caches) {
    kv.k = be.alloc({capacity, c.num_kv_heads, c.head_dim}, be.kv_cache_dtype());
    kv.v = be.alloc({capacity, c.num_kv_heads, c.head_dim}, be.kv_cache_dtype());
  }
  return caches;
}

DecoderStack::DecoderStack(Backend& be, const DecoderConfig& cfg, DecoderWeights weights, int max_rows)
    : be_(be), cfg_(cfg), w_(std::move(weights)), max_rows_(max_rows) {
  normed_ = be_.alloc({max_rows, cfg.hidden_size});
  branch_ = be_.alloc({max_rows, cfg.hidden_size});
}

RotaryRows::RotaryRows(Backend& be, const DecoderConfig& cfg, int max_rows)
    : be_(be),
      rope_(cfg.rope),
      head_dim_(cfg.head_dim),
      cos_(be.alloc({max_rows, cfg.head_dim / 2}, DType::F32)),
      sin_(be.alloc({max_rows, cfg.head_dim / 2}, DType::F32)) {}

DecoderExtras RotaryRows::fill(const float* t, const float* h, const float* w, int n) {
  const size_t half = size_t(head_dim_ / 2);
  host_.resize(2 * size_t(n) * half);
  mrope_rotary_tables(rope_, head_dim_, t, h, w, size_t(n), host_.data(), host_.data() + size_t(n) * half);
  const DecoderExtras extras = rows(n);
  be_.upload(extras.rope_cos, host_.data());
  be_.upload(extras.rope_sin, host_.data() + size_t(n) * half);
  return extras;
}

DecoderExtras RotaryRows::rows(int n) const {
  DecoderExtras extras;
  extras.rope_cos = cos_.rows(0, n);
  extras.rope_sin = sin_.rows(0, n);
  return extras;
}

void DecoderStack::forward(const Tensor& x, const Tensor& positions, std::vector<KVCache>& caches,
                           const Tensor& capture, int capture_layer, const DecoderExtras* extras) {
  const int64_t S = x.dim(0);
  if (S > max_rows_) throw Error("decoder: " + std::to_string(S) + " rows exceed the " + std::to_string(max_rows_) +
                                 " this stack was sized for");
  Tensor normed = normed_.rows(0, S), branch = branch_.rows(0, S);
  const float eps = float(cfg_.rms_norm_eps);
  const size_t n_layers = w_.layers.size();
  if (!capture.empty() && capture_layer == 0) be_.copy(x, capture);
  if (extras) {
    for (const DecoderExtras::RowAdd& a : extras->adds)
      if (a.layer < 0 || a.layer >= int(n_layers) || a.row < 0 || a.row + a.add.dim(0) > S ||
          a.add.dim(-1) != x.dim(-1))
        throw Error("decoder: an addition of " + a.add.shape_str() + " at row " + std::to_string(a.row) +
                    " after layer " + std::to_string(a.layer) + " does not fit " + x.shape_str() + " and " +
                    std::to_string(n_layers) + " layers");
  }
  // Each layer starts with the residual add of the previous layer's feed-forward (folded into
  // decoder_layer) and leaves its own feed-forward output in `branch`; x stays the pre-norm
  // residual stream.
  for (size_t l = 0; l < n_layers; ++l) {
    AttentionArgs args;
    args.positions = positions;
    args.cache = &caches[l];
    if (extras) {
      args.rope_cos = extras->rope_cos;
      args.rope_sin = extras->rope_sin;
    }
    be_.decoder_layer(w_.layers[l], eps, x, branch, /*add_branch=*/l > 0, args, normed);
    // hidden_states[l + 1] is the residual after layer l: x + branch, taken before the layer's DeepStack rows are
    // added (transformers records the decoder layer's output, then adds them to a copy).
    if (!capture.empty() && capture_layer == int(l) + 1 && l + 1 < n_layers) be_.add(x, branch, capture);
    // The layer's output is x + branch: an addition to some rows of it goes into branch.
    if (extras)
      for (const DecoderExtras::RowAdd& a : extras->adds)
        if (a.layer == int(l)) {
          const Tensor b = branch.rows(a.row, a.add.dim(0));
          be_.add(b, a.add, b);
        }
  }
  // The last layer's add is followed by the final norm, written in place (docs/model.md §3.3).
  if (n_layers > 0) be_.add_rms_norm(x, branch, w_.final_norm, eps, x);
  else be_.rms_norm(x, w_.final_norm, eps, x);
  // hidden_states[num_layers] is the final-norm output (docs/model.md §3.3).
  if (!capture.empty() && capture_layer == int(n_layers)) be_.copy(x, capture);
}

}  // namespace omni
