#include "model/audio_encoder.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "omni/errors.h"
#include "synthetic_weights.h"

namespace omni {
namespace {

// Output length of a 3x3, stride-2, pad-1 convolution.
int64_t conv_len(int64_t n) { return (n - 1) / 2 + 1; }
int64_t conv3_len(int64_t n) { return n <= 0 ? 0 : conv_len(conv_len(conv_len(n))); }

// A smaller view at the start of a scratch buffer.
Tensor view(const Tensor& buf, std::initializer_list<int64_t> dims) {
  Tensor t(buf.data, buf.dtype, dims, buf.on_device);
  if (t.numel() > buf.numel())
    throw Error("audio encoder: view " + t.shape_str() + " exceeds its scratch buffer " + buf.shape_str());
  return t;
}

// Host floats -> a backend tensor of the backend's activation dtype.
void upload_f32(Backend& be, const Tensor& dst, const float* src) {
  if (dst.dtype == DType::F32) {
    be.upload(dst, src);
  } else if (dst.dtype == DType::BF16) {
    std::vector<uint16_t> tmp(size_t(dst.numel()));
    for (size_t i = 0; i < tmp.size(); ++i) tmp[i] = f32_to_bf16(src[i]);
    be.upload(dst, tmp.data());
  } else {
    throw Error(std::string("audio encoder: activation dtype ") + dtype_name(dst.dtype) + " is not supported");
  }
}

}  // namespace

int audio_token_count(int mel_frames, const AudioEncoderConfig& cfg) {
  if (mel_frames <= 0) return 0;
  const int64_t chunk = 2 * int64_t(cfg.n_window);
  return int(mel_frames / chunk * conv3_len(chunk) + conv3_len(mel_frames % chunk));
}

namespace {

// Every weight of the tower by name (relative to the tower's prefix) and expected shape.
AudioEncoderWeights make_audio_encoder_weights(
    const AudioEncoderConfig& c,
    const std::function<Tensor(const std::string& name, std::initializer_list<int64_t> shape)>& get) {
  const int64_t C = c.downsample_hidden_size, d = c.d_model, F = conv3_len(c.num_mel_bins);
  AudioEncoderWeights w;
  w.conv1_w = get("conv2d1.weight", {C, 1, 3, 3});
  w.conv1_b = get("conv2d1.bias", {C});
  w.conv2_w = get("conv2d2.weight", {C, C, 3, 3});
  w.conv2_b = get("conv2d2.bias", {C});
  w.conv3_w = get("conv2d3.weight", {C, C, 3, 3});
  w.conv3_b = get("conv2d3.bias", {C});
  w.conv_out_w = get("conv_out.weight", {d, C * F});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string L = "layers." + std::to_string(l) + ".";
    AudioEncoderLayerWeights lw;
    lw.attn_norm_w = get(L + "self_attn_layer_norm.weight", {d});
    lw.attn_norm_b = get(L + "self_attn_layer_norm.bias", {d});
    AttentionWeights& a = lw.attn;
    a.wq = get(L + "self_attn.q_proj.weight", {d, d});
    a.bq = get(L + "self_attn.q_proj.bias", {d});
    a.wk = get(L + "self_attn.k_proj.weight", {d, d});
    a.bk = get(L + "self_attn.k_proj.bias", {d});
    a.wv = get(L + "self_attn.v_proj.weight", {d, d});
    a.bv = get(L + "self_attn.v_proj.bias", {d});
    a.wo = get(L + "self_attn.out_proj.weight", {d, d});
    a.bo = get(L + "self_attn.out_proj.bias", {d});
    a.num_heads = a.num_kv_heads = c.num_heads;
    a.head_dim = int(d / c.num_heads);
    a.rope_theta = 0.f;
    lw.ffn_norm_w = get(L + "final_layer_norm.weight", {d});
    lw.ffn_norm_b = get(L + "final_layer_norm.bias", {d});
    lw.fc1_w = get(L + "fc1.weight", {c.ffn_dim, d});
    lw.fc1_b = get(L + "fc1.bias", {c.ffn_dim});
    lw.fc2_w = get(L + "fc2.weight", {d, c.ffn_dim});
    lw.fc2_b = get(L + "fc2.bias", {d});
    w.layers.push_back(std::move(lw));
  }
  w.ln_post_w = get("ln_post.weight", {d});
  w.ln_post_b = get("ln_post.bias", {d});
  w.proj1_w = get("proj1.weight", {d, d});
  w.proj1_b = get("proj1.bias", {d});
  w.proj2_w = get("proj2.weight", {c.output_dim, d});
  w.proj2_b = get("proj2.bias", {c.output_dim});
  return w;
}

}  // namespace

AudioEncoderWeights load_audio_encoder_weights(const Checkpoint& ck, Backend& be, const AudioEncoderConfig& c,
                                               const std::string& prefix) {
  return make_audio_encoder_weights(c, [&](const std::string& name, std::initializer_list<int64_t> shape) {
    return be.weight(ck.get(prefix + "." + name, shape));
  });
}

AudioEncoderWeights synthetic_audio_encoder_weights(Backend& be, const AudioEncoderConfig& c, uint64_t seed) {
  return make_audio_encoder_weights(c, [&](const std::string&, std::initializer_list<int64_t> shape) {
    return synthetic_weight_for(be, shape, seed++);
  });
}

struct AudioEncoder::Geometry {
  int64_t frames = 0;         // T
  int64_t chunks = 0;         // ceil(T / chunk_frames)
  int64_t padded_frames = 0;  // L_max: every chunk is zero-padded to this many frames
  int64_t chunk_tokens = 0;   // conv output length of L_max frames
  int64_t window_tokens = 0;  // W
  int64_t chunk_valid_tokens(int64_t c, int64_t chunk_frames) const {
    return conv3_len(std::min(chunk_frames, frames - c * chunk_frames));
  }
};

AudioEncoder::AudioEncoder(Backend& be, const AudioEncoderConfig& cfg, AudioEncoderWeights weights,
                           int max_windows_per_pass)
    : be_(be), cfg_(cfg), w_(std::move(weights)) {
  if (cfg.n_window <= 0 || cfg.n_window_infer % (2 * cfg.n_window) != 0 || cfg.n_window_infer <= 0)
    throw ConfigError("audio encoder: n_window_infer " + std::to_string(cfg.n_window_infer) +
                      " is not a positive multiple of 2*n_window " + std::to_string(2 * cfg.n_window));
  if (max_windows_per_pass <= 0) throw Error("audio encoder: max_windows_per_pass must be positive");
  chunk_frames_ = 2 * cfg.n_window;
  chunks_per_window_ = cfg.n_window_infer / chunk_frames_;
  full_chunk_tokens_ = int(conv3_len(chunk_frames_));
  freq_out_ = int(conv3_len(cfg.num_mel_bins));
  if (full_chunk_tokens_ > cfg.max_source_positions)
    throw ConfigError("audio encoder: a chunk has " + std::to_string(full_chunk_tokens_) +
                      " tokens but max_source_positions is " + std::to_string(cfg.max_source_positions));
  conv_batch_chunks_ = chunks_per_window_;
  max_pass_chunks_ = chunks_per_window_ * max_windows_per_pass;

  const int64_t cb = conv_batch_chunks_, C = cfg.downsample_hidden_size, bins = cfg.num_mel_bins;
  const int64_t h1 = conv_len(bins), h2 = conv_len(h1), w1 = conv_len(chunk_frames_), w2 = conv_len(w1);
  host_chunks_.assign(size_t(cb * bins * chunk_frames_), 0.f);
  mel_in_ = be.alloc({cb, 1, bins, chunk_frames_});
  conv1_ = be.alloc({cb, C, h1, w1});
  conv2_ = be.alloc({cb, C, h2, w2});
  conv3_ = be.alloc({cb, C, freq_out_, full_chunk_tokens_});
  flat_ = be.alloc({cb, full_chunk_tokens_, C, freq_out_});
  const int64_t rows = int64_t(max_pass_chunks_) * full_chunk_tokens_, d = cfg.d_model;
  hidden_ = be.alloc({rows, d});
  normed_ = be.alloc({rows, d});
  branch_ = be.alloc({rows, d});
  ffn_ = be.alloc({rows, int64_t(cfg.ffn_dim)});
  head_ = be.alloc({rows, d});
  head_out_ = be.alloc({rows, int64_t(cfg.output_dim)});

  // SinusoidsPositionEmbedding as HF builds it in float32: inv[i] = exp(-i * ln(10000)/(d/2-1)),
  // row p = [sin(p * inv), cos(p * inv)]. Only the first chunk-length rows are ever used.
  const int64_t half = d / 2;
  const float inc = float(std::log(10000.0) / double(half - 1));
  std::vector<float> table(size_t(full_chunk_tokens_ * d));
  for (int64_t p = 0; p < full_chunk_tokens_; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * std::exp(-inc * float(i));
      table[size_t(p * d + i)] = std::sin(angle);
      table[size_t(p * d + half + i)] = std::cos(angle);
    }
  pos_ = be.alloc({int64_t(full_chunk_tokens_), d});
  upload_f32(be, pos_, table.data());
}

AudioEncoder::Geometry AudioEncoder::plan(const MelFeatures& mel) const {
  if (mel.bins != cfg_.num_mel_bins)
    throw Error("audio encoder: features have " + std::to_string(mel.bins) + " mel bins, the model expects " +
                std::to_string(cfg_.num_mel_bins));
  if (mel.frames <= 0) throw Error("audio encoder: the clip has no mel frames");
  if (mel.data.size() != size_t(mel.bins) * size_t(mel.frames))
    throw Error("audio encoder: feature buffer size does not match [bins, frames]");
  Geometry g;
  g.frames = mel.frames;
  g.chunks = (g.frames + chunk_frames_ - 1) / chunk_frames_;
  // Single-clip batch: the tail chunk is padded to a full chunk iff the clip has one (docs/model.md §3.2).
  g.padded_frames = std::min<int64_t>(g.frames, chunk_frames_);
  g.chunk_tokens = conv3_len(g.padded_frames);
  g.window_tokens = g.chunk_tokens * chunks_per_window_;
  return g;
}

void AudioEncoder::conv_batch(const MelFeatures& mel, const Geometry& g, int64_t c0, int64_t nb, int64_t row_offset) {
  const int64_t bins = mel.bins, L = g.padded_frames, C = cfg_.downsample_hidden_size;
  std::fill(host_chunks_.begin(), host_chunks_.begin() + nb * bins * L, 0.f);
  for (int64_t j = 0; j < nb; ++j) {
    const int64_t start = (c0 + j) * chunk_frames_;
    const int64_t len = std::min<int64_t>(L, g.frames - start);
    for (int64_t m = 0; m < bins; ++m)
      std::copy_n(mel.data.data() + m * g.frames + start, len, host_chunks_.data() + (j * bins + m) * L);
  }
  const Tensor x = view(mel_in_, {nb, 1, bins, L});
  upload_f32(be_, x, host_chunks_.data());
  const int64_t h1 = conv_len(bins), h2 = conv_len(h1), w1 = conv_len(L), w2 = conv_len(w1), t = g.chunk_tokens;
  const Tensor y1 = view(conv1_, {nb, C, h1, w1}), y2 = view(conv2_, {nb, C, h2, w2});
  const Tensor y3 = view(conv3_, {nb, C, freq_out_, t});
  be_.conv2d_gelu(x, w_.conv1_w, w_.conv1_b, 2, 1, y1);
  be_.conv2d_gelu(y1, w_.conv2_w, w_.conv2_b, 2, 1, y2);
  be_.conv2d_gelu(y2, w_.conv3_w, w_.conv3_b, 2, 1, y3);
  const Tensor flat = view(flat_, {nb, t, C, freq_out_});
  be_.permute_0312(y3, flat);
  const Tensor h = hidden_.rows(row_offset, nb * t);
  be_.linear(view(flat_, {nb * t, C * freq_out_}), w_.conv_out_w, Tensor(), h, Activation::None);
  for (int64_t j = 0; j < nb; ++j) {
    const Tensor rows = h.rows(j * t, t);
    be_.add(rows, pos_.rows(0, t), rows);
  }
}

int64_t AudioEncoder::run_pass(const MelFeatures& mel, const Geometry& g, int64_t c0, int64_t c1) {
  int64_t valid = 0;
  for (int64_t c = c0; c < c1; c += conv_batch_chunks_) {
    const int64_t nb = std::min<int64_t>(conv_batch_chunks_, c1 - c);
    conv_batch(mel, g, c, nb, (c - c0) * g.chunk_tokens);
  }
  // Every chunk but the clip's last is full, so the valid rows are a contiguous prefix.
  for (int64_t c = c0; c < c1; ++c) valid += g.chunk_valid_tokens(c, chunk_frames_);
  const float eps = 1e-5f;
  const Tensor h = hidden_.rows(0, valid), normed = normed_.rows(0, valid), branch = branch_.rows(0, valid);
  const Tensor ffn = ffn_.rows(0, valid);
  AttentionArgs args;
  args.causal = false;
  args.block = int(g.window_tokens);  // passes start on window boundaries
  for (const AudioEncoderLayerWeights& L : w_.layers) {
    be_.layer_norm(h, L.attn_norm_w, L.attn_norm_b, eps, normed);
    be_.attention(L.attn, normed, args, branch);
    be_.add(h, branch, h);
    be_.layer_norm(h, L.ffn_norm_w, L.ffn_norm_b, eps, normed);
    be_.linear(normed, L.fc1_w, L.fc1_b, ffn, Activation::GELU);
    be_.linear(ffn, L.fc2_w, L.fc2_b, branch, Activation::None);
    be_.add(h, branch, h);
  }
  be_.layer_norm(h, w_.ln_post_w, w_.ln_post_b, eps, normed);
  be_.linear(normed, w_.proj1_w, w_.proj1_b, head_.rows(0, valid), Activation::GELU);
  be_.linear(head_.rows(0, valid), w_.proj2_w, w_.proj2_b, head_out_.rows(0, valid), Activation::None);
  return valid;
}

template <class Sink>
void AudioEncoder::encode_with(const MelFeatures& mel, Sink&& sink) {
  const Geometry g = plan(mel);
  int64_t offset = 0;
  for (int64_t c0 = 0; c0 < g.chunks; c0 += max_pass_chunks_) {
    const int64_t c1 = std::min<int64_t>(g.chunks, c0 + max_pass_chunks_);
    const int64_t n = run_pass(mel, g, c0, c1);
    sink(head_out_.rows(0, n), offset);
    offset += n;
  }
}

void AudioEncoder::encode(const MelFeatures& mel, const Tensor& out) {
  const int64_t n = token_count(mel.frames);
  if (out.ndim != 2 || out.dim(0) != n || out.dim(1) != cfg_.output_dim || out.dtype != head_out_.dtype)
    throw Error("audio encoder: output tensor " + out.shape_str() + " should be [" + std::to_string(n) + ", " +
                std::to_string(cfg_.output_dim) + "] of the backend's activation dtype");
  encode_with(mel, [&](const Tensor& rows, int64_t offset) { be_.copy(rows, out.rows(offset, rows.dim(0))); });
}

}  // namespace omni
