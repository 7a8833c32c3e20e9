#include "model/vision_encoder.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "omni/errors.h"
#include "synthetic_weights.h"

namespace omni {
namespace {

constexpr float kLnEps = 1e-6f;

// A smaller view at the start of a scratch buffer.
Tensor view(const Tensor& buf, std::initializer_list<int64_t> dims) {
  Tensor t(buf.data, buf.dtype, dims, buf.on_device);
  if (t.numel() > buf.numel())
    throw Error("vision encoder: view " + t.shape_str() + " exceeds its scratch buffer " + buf.shape_str());
  return t;
}

using Getter = std::function<Tensor(const std::string& name, std::initializer_list<int64_t> shape)>;

VisionMergerWeights make_merger(const VisionConfig& c, const Getter& get, const std::string& p, bool after) {
  const int64_t d = c.hidden_size, m2 = int64_t(c.spatial_merge_size) * c.spatial_merge_size, big = d * m2;
  VisionMergerWeights m;
  m.norm_after_concat = after;
  m.ln_w = get(p + "ln_q.weight", {after ? big : d});
  m.ln_b = get(p + "ln_q.bias", {after ? big : d});
  m.fc1_w = get(p + "mlp.0.weight", {big, big});
  m.fc1_b = get(p + "mlp.0.bias", {big});
  m.fc2_w = get(p + "mlp.2.weight", {c.out_hidden_size, big});
  m.fc2_b = get(p + "mlp.2.bias", {c.out_hidden_size});
  return m;
}

// `get_qkv(name, shape, part)` returns the third `part` (q, k, v) of the fused qkv tensor.
VisionEncoderWeights make_weights(
    const VisionConfig& c, const Getter& get,
    const std::function<Tensor(const std::string&, std::initializer_list<int64_t>, int)>& get_qkv) {
  const int64_t d = c.hidden_size, I = c.intermediate_size;
  VisionEncoderWeights w;
  w.patch_w = get("patch_embed.proj.weight", {d, c.patch_row_size()});
  w.patch_b = get("patch_embed.proj.bias", {d});
  w.pos_table = get("pos_embed.weight", {c.num_position_embeddings, d});
  for (int b = 0; b < c.depth; ++b) {
    const std::string B = "blocks." + std::to_string(b) + ".";
    VisionBlockWeights bw;
    bw.norm1_w = get(B + "norm1.weight", {d});
    bw.norm1_b = get(B + "norm1.bias", {d});
    bw.norm2_w = get(B + "norm2.weight", {d});
    bw.norm2_b = get(B + "norm2.bias", {d});
    AttentionWeights& a = bw.attn;
    a.wq = get_qkv(B + "attn.qkv.weight", {3 * d, d}, 0);
    a.wk = get_qkv(B + "attn.qkv.weight", {3 * d, d}, 1);
    a.wv = get_qkv(B + "attn.qkv.weight", {3 * d, d}, 2);
    a.bq = get_qkv(B + "attn.qkv.bias", {3 * d}, 0);
    a.bk = get_qkv(B + "attn.qkv.bias", {3 * d}, 1);
    a.bv = get_qkv(B + "attn.qkv.bias", {3 * d}, 2);
    a.wo = get(B + "attn.proj.weight", {d, d});
    a.bo = get(B + "attn.proj.bias", {d});
    a.num_heads = a.num_kv_heads = c.num_heads;
    a.head_dim = c.head_dim();
    a.rope_theta = 0.f;  // the rotary comes as per-row tables (AttentionArgs::rope_cos)
    bw.fc1_w = get(B + "mlp.linear_fc1.weight", {I, d});
    bw.fc1_b = get(B + "mlp.linear_fc1.bias", {I});
    bw.fc2_w = get(B + "mlp.linear_fc2.weight", {d, I});
    bw.fc2_b = get(B + "mlp.linear_fc2.bias", {d});
    w.blocks.push_back(std::move(bw));
  }
  w.merger = make_merger(c, get, "merger.", false);
  for (size_t k = 0; k < c.deepstack_visual_indexes.size(); ++k)
    w.deepstack.push_back(make_merger(c, get, "merger_list." + std::to_string(k) + ".", true));
  return w;
}

}  // namespace

VisionEncoderWeights load_vision_encoder_weights(const Checkpoint& ck, Backend& be, const VisionConfig& c,
                                                 const std::string& prefix) {
  const int64_t d = c.hidden_size;
  auto get = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    if (name == "patch_embed.proj.weight") {
      // Stored 5-D [hidden, C, T, P, P]; the checkpoint folds it to [hidden, C, T, P*P].
      const Tensor t = ck.get(prefix + "." + name, {d, c.in_channels, c.temporal_patch_size,
                                                    int64_t(c.patch_size) * c.patch_size});
      return be.weight(t.reshaped(shape));
    }
    return be.weight(ck.get(prefix + "." + name, shape));
  };
  auto get_qkv = [&](const std::string& name, std::initializer_list<int64_t> shape, int part) {
    const Tensor t = ck.get(prefix + "." + name, shape);
    return be.weight(t.rows(part * d, d));
  };
  return make_weights(c, get, get_qkv);
}

VisionEncoderWeights synthetic_vision_encoder_weights(Backend& be, const VisionConfig& c, uint64_t seed) {
  const int64_t d = c.hidden_size;
  auto get = [&](const std::string&, std::initializer_list<int64_t> shape) {
    return synthetic_weight_for(be, shape, seed++);
  };
  auto get_qkv = [&](const std::string&, std::initializer_list<int64_t> shape, int) {
    return shape.size() == 1 ? synthetic_weight_for(be, {d}, seed++) : synthetic_weight_for(be, {d, d}, seed++);
  };
  return make_weights(c, get, get_qkv);
}

VisionGridTables vision_grid_tables(const VisionConfig& cfg, int t, int h, int w) {
  const int m = cfg.spatial_merge_size, side = cfg.position_side(), hd = cfg.head_dim();
  const int quarter = hd / 4;  // angles per axis
  const int64_t frame = int64_t(h) * w, rows = frame * t;
  VisionGridTables g;
  g.taps.resize(size_t(rows) * 4);
  g.weights.resize(size_t(rows) * 4);
  g.cos.resize(size_t(rows) * size_t(hd / 2));
  g.sin.resize(size_t(rows) * size_t(hd / 2));
  // inv_freq[j] = 1 / theta^(2j / (hd/2)), float32 as transformers builds it.
  std::vector<float> inv_freq(static_cast<size_t>(quarter));
  for (int j = 0; j < quarter; ++j)
    inv_freq[size_t(j)] = 1.0f / std::pow(float(cfg.rope_theta), float(2 * j) / float(hd / 2));
  // Bilinear taps along one axis (align_corners): source = index * (side-1) / max(n-1, 1) in float32.
  auto axis = [&](int index, int n, int32_t tap[2], float wt[2]) {
    const float src = float(index) * float(side - 1) / float(std::max(n - 1, 1));
    const float fl = std::floor(src);
    for (int o = 0; o < 2; ++o) {
      tap[o] = std::clamp(int32_t(fl) + o, 0, side - 1);
      const float dist = std::fabs(src - fl - float(o));
      wt[o] = std::max(1.0f - dist, 0.0f);
    }
  };
  const int blocks_w = w / m;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t within = r % frame;
    const int in_col = int(within % m), in_row = int((within / m) % m);
    const int block_col = int((within / (int64_t(m) * m)) % blocks_w);
    const int block_row = int(within / (int64_t(m) * m * blocks_w));
    const int row = block_row * m + in_row, col = block_col * m + in_col;
    int32_t ty[2], tx[2];
    float wy[2], wx[2];
    axis(row, h, ty, wy);
    axis(col, w, tx, wx);
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) {
        g.taps[size_t(r) * 4 + size_t(a * 2 + b)] = ty[a] * side + tx[b];
        g.weights[size_t(r) * 4 + size_t(a * 2 + b)] = wy[a] * wx[b];
      }
    float* c = &g.cos[size_t(r) * size_t(hd / 2)];
    float* s = &g.sin[size_t(r) * size_t(hd / 2)];
    for (int j = 0; j < quarter; ++j) {
      const float fh = float(row) * inv_freq[size_t(j)], fw = float(col) * inv_freq[size_t(j)];
      c[j] = std::cos(fh);
      s[j] = std::sin(fh);
      c[quarter + j] = std::cos(fw);
      s[quarter + j] = std::sin(fw);
    }
  }
  return g;
}

VisionEncoder::VisionEncoder(Backend& be, const VisionConfig& cfg, VisionEncoderWeights weights, int64_t max_patches)
    : be_(be), cfg_(cfg), w_(std::move(weights)), max_patches_(max_patches) {
  const int64_t m2 = int64_t(cfg.spatial_merge_size) * cfg.spatial_merge_size;
  if (max_patches <= 0 || max_patches % m2 != 0)
    throw Error("vision encoder: max_patches " + std::to_string(max_patches) + " must be a positive multiple of " +
                std::to_string(m2));
  if (w_.deepstack.size() != cfg.deepstack_visual_indexes.size())
    throw Error("vision encoder: " + std::to_string(w_.deepstack.size()) + " DeepStack mergers for " +
                std::to_string(cfg.deepstack_visual_indexes.size()) + " taps");
  const int64_t d = cfg.hidden_size, hd = cfg.head_dim();
  pixels_ = be.alloc({max_patches, int64_t(cfg.patch_row_size())}, DType::F32);
  taps_ = be.alloc({max_patches, 4}, DType::I32);
  tap_w_ = be.alloc({max_patches, 4}, DType::F32);
  cos_ = be.alloc({max_patches, hd / 2}, DType::F32);
  sin_ = be.alloc({max_patches, hd / 2}, DType::F32);
  hidden_ = be.alloc({max_patches, d}, DType::F32);
  normed_ = be.alloc({max_patches, d}, DType::F32);
  branch_ = be.alloc({max_patches, d}, DType::F32);
  ffn_ = be.alloc({max_patches, std::max<int64_t>(cfg.intermediate_size, d)}, DType::F32);
  merged_ = be.alloc({max_patches / m2, d * m2}, DType::F32);
}

// One merger over the first `rows` rows of hidden_ into out ([rows/m^2, out_hidden]).
void VisionEncoder::merge(const VisionMergerWeights& m, int64_t rows, const Tensor& out) {
  const int64_t d = cfg_.hidden_size, m2 = int64_t(cfg_.spatial_merge_size) * cfg_.spatial_merge_size;
  const int64_t tokens = rows / m2;
  const Tensor normed_wide = view(normed_, {tokens, d * m2});
  if (m.norm_after_concat) {
    be_.layer_norm(view(hidden_, {tokens, d * m2}), m.ln_w, m.ln_b, kLnEps, normed_wide);
  } else {
    be_.layer_norm(view(hidden_, {rows, d}), m.ln_w, m.ln_b, kLnEps, view(normed_, {rows, d}));
  }
  const Tensor mid = view(merged_, {tokens, d * m2});
  be_.linear(normed_wide, m.fc1_w, m.fc1_b, mid, Activation::GELU);
  be_.linear(mid, m.fc2_w, m.fc2_b, out);
}

void VisionEncoder::encode(const float* pixels, int t, int h, int w, const Tensor& out,
                           const std::vector<Tensor>& deepstack) {
  const int m = cfg_.spatial_merge_size;
  const int64_t m2 = int64_t(m) * m, frame = int64_t(h) * w, d = cfg_.hidden_size;
  if (t <= 0 || h <= 0 || w <= 0 || h % m || w % m)
    throw Error("vision encoder: grid (" + std::to_string(t) + ", " + std::to_string(h) + ", " + std::to_string(w) +
                ") is not a positive grid in multiples of " + std::to_string(m));
  if (frame > max_patches_)
    throw Error("vision encoder: one frame of " + std::to_string(frame) + " patches exceeds the " +
                std::to_string(max_patches_) + " the encoder was sized for");
  const int64_t tokens = int64_t(t) * frame / m2;
  if (out.dim(0) != tokens || out.dim(1) != cfg_.out_hidden_size)
    throw Error("vision encoder: out " + out.shape_str() + " is not [" + std::to_string(tokens) + ", " +
                std::to_string(cfg_.out_hidden_size) + "]");
  if (!deepstack.empty() && deepstack.size() != w_.deepstack.size())
    throw Error("vision encoder: " + std::to_string(deepstack.size()) + " DeepStack outputs for " +
                std::to_string(w_.deepstack.size()) + " mergers");
  for (const Tensor& ds : deepstack)
    if (ds.dim(0) != tokens || ds.dim(1) != cfg_.out_hidden_size)
      throw Error("vision encoder: DeepStack output " + ds.shape_str() + " is not [" + std::to_string(tokens) +
                  ", " + std::to_string(cfg_.out_hidden_size) + "]");
  const VisionGridTables all = vision_grid_tables(cfg_, 1, h, w);  // the same for every slice
  const int64_t slices_per_pass = max_patches_ / frame;
  const int64_t hd2 = cfg_.head_dim() / 2, row_size = cfg_.patch_row_size();
  for (int64_t s0 = 0; s0 < t; s0 += slices_per_pass) {
    const int64_t slices = std::min<int64_t>(slices_per_pass, t - s0), rows = slices * frame;
    be_.upload(view(pixels_, {rows, row_size}), pixels + s0 * frame * row_size);
    std::vector<int32_t> taps(size_t(rows) * 4);
    std::vector<float> tap_w(size_t(rows) * 4), cs(size_t(rows * hd2)), sn(size_t(rows * hd2));
    for (int64_t s = 0; s < slices; ++s) {
      std::copy(all.taps.begin(), all.taps.end(), taps.begin() + s * frame * 4);
      std::copy(all.weights.begin(), all.weights.end(), tap_w.begin() + s * frame * 4);
      std::copy(all.cos.begin(), all.cos.end(), cs.begin() + s * frame * hd2);
      std::copy(all.sin.begin(), all.sin.end(), sn.begin() + s * frame * hd2);
    }
    const Tensor tp = view(taps_, {rows, 4}), tw = view(tap_w_, {rows, 4});
    const Tensor rc = view(cos_, {rows, hd2}), rs = view(sin_, {rows, hd2});
    be_.upload(tp, taps.data());
    be_.upload(tw, tap_w.data());
    be_.upload(rc, cs.data());
    be_.upload(rs, sn.data());

    const Tensor x = view(hidden_, {rows, d}), nx = view(normed_, {rows, d}), br = view(branch_, {rows, d});
    be_.linear(view(pixels_, {rows, row_size}), w_.patch_w, w_.patch_b, x);
    be_.embed_weighted(w_.pos_table, tp, tw, br);
    be_.add(x, br, x);
    AttentionArgs args;
    args.causal = false;
    args.block = int(frame);  // full attention inside each temporal slice only
    args.rope_cos = rc;
    args.rope_sin = rs;
    const Tensor f = view(ffn_, {rows, int64_t(cfg_.intermediate_size)});
    const int64_t tok0 = s0 * frame / m2, ntok = rows / m2;
    for (size_t b = 0; b < w_.blocks.size(); ++b) {
      const VisionBlockWeights& B = w_.blocks[b];
      be_.layer_norm(x, B.norm1_w, B.norm1_b, kLnEps, nx);
      be_.attention(B.attn, nx, args, br);
      be_.add(x, br, x);
      be_.layer_norm(x, B.norm2_w, B.norm2_b, kLnEps, nx);
      be_.linear(nx, B.fc1_w, B.fc1_b, f, Activation::GELUTanh);
      be_.linear(f, B.fc2_w, B.fc2_b, br);
      be_.add(x, br, x);
      for (size_t k = 0; k < cfg_.deepstack_visual_indexes.size() && !deepstack.empty(); ++k)
        if (cfg_.deepstack_visual_indexes[k] == int(b)) merge(w_.deepstack[k], rows, deepstack[k].rows(tok0, ntok));
    }
    merge(w_.merger, rows, out.rows(tok0, ntok));
  }
}

}  // namespace omni
