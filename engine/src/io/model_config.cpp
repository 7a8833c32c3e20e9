#include "io/model_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/json_file.h"
#include "omni/errors.h"
#include "omni/limits.h"

namespace omni {
namespace {

using nlohmann::json;

// Reads keys from one JSON object and reports errors with the full key path.
class Reader {
 public:
  Reader(const json& obj, std::string path, std::string origin)
      : obj_(obj), path_(std::move(path)), origin_(std::move(origin)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  Reader child(const char* key) const {
    if (!has(key) || !obj_.at(key).is_object()) fail(key, "an object");
    return Reader(obj_.at(key), name(key), origin_);
  }
  int integer(const char* key) const {
    if (!has(key)) fail(key, "an integer (missing)");
    return to_int(key, obj_.at(key));
  }
  int integer(const char* key, int fallback) const { return has(key) ? integer(key) : fallback; }
  int positive(const char* key) const {
    int v = integer(key);
    if (v <= 0) fail(key, "a positive integer (got " + std::to_string(v) + ")");
    return v;
  }
  // A width or count that sizes buffers: positive and at most `max` (omni/limits.h).
  int positive(const char* key, int64_t max) const {
    const int v = positive(key);
    if (v > max) fail(key, "at most " + std::to_string(max) + " (got " + std::to_string(v) + ")");
    return v;
  }
  int integer(const char* key, int fallback, int64_t min, int64_t max) const {
    const int v = integer(key, fallback);
    if (v < min || v > max)
      fail(key, "between " + std::to_string(min) + " and " + std::to_string(max) + " (got " + std::to_string(v) + ")");
    return v;
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_number()) fail(key, "a number");
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) fail(key, "true or false");
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_string()) fail(key, "a string");
    return v.get<std::string>();
  }
  std::vector<int> ints(const char* key) const {
    std::vector<int> out;
    if (!has(key)) return out;
    const json& v = obj_.at(key);
    if (!v.is_array()) fail(key, "a list of integers");
    if (v.size() > size_t(limits::kMaxLayers)) fail(key, "a list of at most " + std::to_string(limits::kMaxLayers) + " integers");
    for (const json& e : v) {
      if (!e.is_number_integer()) fail(key, "a list of integers");
      out.push_back(to_int(key, e));
    }
    return out;
  }
  const json& raw() const { return obj_; }
  // The JSON integer as an int; a value outside int's range is an error, never truncated.
  int to_int(const char* key, const json& v) const {
    if (!v.is_number_integer()) fail(key, "an integer");
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT32_MAX)
                               : v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      fail(key, "an integer within 32 bits (got " + v.dump() + ")");
    return v.get<int>();
  }
  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw ConfigError(origin_ + ": key '" + name(key) + "' must be " + what);
  }
  std::string name(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const json& obj_;
  std::string path_;
  std::string origin_;
};

// Both rope key styles: 5.x `rope_parameters` {rope_theta, mrope_section, interleaved}, or
// 4.57 `rope_theta` at the top plus `rope_scaling` {mrope_section, interleaved}.
RopeConfig read_rope(const Reader& r, double default_theta) {
  RopeConfig rope;
  rope.theta = r.number("rope_theta", default_theta);
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!r.has(key)) continue;
    Reader p = r.child(key);
    rope.theta = p.number("rope_theta", rope.theta);
    if (p.has("mrope_section")) rope.mrope_section = p.ints("mrope_section");
    rope.interleaved = p.boolean("interleaved", rope.interleaved) || p.boolean("mrope_interleaved", false);
    std::string type = p.string("rope_type", p.string("type", "default"));
    if (type != "default") p.fail("rope_type", "\"default\" (got \"" + type + "\")");
  }
  if (rope.theta <= 0) r.fail("rope_theta", "positive");
  return rope;
}

DecoderConfig read_decoder(const Reader& r, double default_theta, bool moe) {
  DecoderConfig c;
  c.vocab_size = r.positive("vocab_size", limits::kMaxVocab);
  c.hidden_size = r.positive("hidden_size", limits::kMaxModelWidth);
  c.num_layers = r.positive("num_hidden_layers", limits::kMaxLayers);
  c.num_heads = r.positive("num_attention_heads", limits::kMaxHeads);
  c.num_kv_heads = r.integer("num_key_value_heads", c.num_heads, 1, limits::kMaxHeads);
  c.head_dim = r.integer("head_dim", c.hidden_size / c.num_heads, 1, limits::kMaxModelWidth);
  c.intermediate_size = r.integer("intermediate_size", 0, 0, limits::kMaxModelWidth);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.rope = read_rope(r, default_theta);
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    r.fail("num_key_value_heads", "a positive divisor of num_attention_heads");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) r.fail("head_dim", "a positive even integer");
  if (!c.rope.mrope_section.empty()) {
    int sum = 0;
    for (int s : c.rope.mrope_section) sum += s;
    if (sum != c.head_dim / 2) r.fail("rope_scaling.mrope_section", "a list summing to head_dim/2");
  }
  if (moe) {
    c.moe_intermediate_size = r.positive("moe_intermediate_size", limits::kMaxModelWidth);
    // transformers 5.x writes the talker's expert count as `num_local_experts`.
    c.num_experts = r.positive(r.has("num_experts") || !r.has("num_local_experts") ? "num_experts" : "num_local_experts",
                               limits::kMaxExperts);
    c.num_experts_per_tok = r.positive("num_experts_per_tok");
    if (c.num_experts_per_tok > c.num_experts) r.fail("num_experts_per_tok", "at most num_experts");
    c.norm_topk_prob = r.boolean("norm_topk_prob", false);
    c.shared_expert_intermediate_size = r.integer("shared_expert_intermediate_size", 0, 0, limits::kMaxModelWidth);
    c.decoder_sparse_step = r.integer("decoder_sparse_step", 1);
    c.mlp_only_layers = r.ints("mlp_only_layers");
  } else if (c.intermediate_size <= 0) {
    r.fail("intermediate_size", "a positive integer");
  }
  return c;
}

}  // namespace

bool DecoderConfig::is_moe_layer(int layer) const {
  if (num_experts == 0) return false;
  for (int l : mlp_only_layers)
    if (l == layer) return false;
  return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
}

int VisionConfig::position_side() const {
  int side = 0;
  while (int64_t(side + 1) * (side + 1) <= num_position_embeddings) ++side;
  return side;
}

int Code2WavConfig::samples_per_frame() const {
  int n = 1;
  for (int r : upsample_rates) n *= r;
  for (int r : upsampling_ratios) n *= r;
  return n;
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw ConfigError(path + ": cannot open the model config (config.json)");
  const std::streamoff size = in.tellg();
  if (size > limits::kMaxConfigJsonBytes)
    throw ConfigError(path + ": the file is " + std::to_string(size) + " bytes, more than the " +
                      std::to_string(limits::kMaxConfigJsonBytes) + " a config.json may have");
  in.seekg(0);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

ModelConfig ModelConfig::parse(const std::string& text, const std::string& origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw ConfigError(origin + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw ConfigError(origin + ": not a JSON object");
  Reader top(root, "", origin);
  std::string type = top.string("model_type", "");
  if (type != "qwen3_omni_moe")
    throw ConfigError(origin + ": model_type is \"" + type + "\", expected \"qwen3_omni_moe\" (Qwen3-Omni)");

  ModelConfig c;
  TokenIds& ids = c.ids;
  ids.im_start = top.integer("im_start_token_id", ids.im_start);
  ids.im_end = top.integer("im_end_token_id", ids.im_end);
  ids.system = top.integer("system_token_id", ids.system);
  ids.user = top.integer("user_token_id", ids.user);
  ids.assistant = top.integer("assistant_token_id", ids.assistant);
  ids.tts_pad = top.integer("tts_pad_token_id", ids.tts_pad);
  ids.tts_bos = top.integer("tts_bos_token_id", ids.tts_bos);
  ids.tts_eos = top.integer("tts_eos_token_id", ids.tts_eos);

  Reader th = top.child("thinker_config");
  ids.audio_pad = th.integer("audio_token_id", ids.audio_pad);
  ids.audio_start = th.integer("audio_start_token_id", ids.audio_start);
  ids.audio_end = th.integer("audio_end_token_id", ids.audio_end);
  ids.image_pad = th.integer("image_token_id", ids.image_pad);
  ids.video_pad = th.integer("video_token_id", ids.video_pad);
  ids.vision_start = th.integer("vision_start_token_id", ids.vision_start);
  ids.vision_end = th.integer("vision_end_token_id", ids.vision_end);
  c.thinker = read_decoder(th.child("text_config"), 1e6, /*moe=*/true);

  Reader au = th.child("audio_config");
  AudioEncoderConfig& a = c.audio;
  a.num_mel_bins = au.positive("num_mel_bins", limits::kMaxModelWidth);
  a.d_model = au.positive("d_model", limits::kMaxModelWidth);
  a.num_layers = au.positive("encoder_layers", limits::kMaxLayers);
  a.num_heads = au.positive("encoder_attention_heads", limits::kMaxHeads);
  a.ffn_dim = au.positive("encoder_ffn_dim", limits::kMaxModelWidth);
  a.downsample_hidden_size = au.positive("downsample_hidden_size", limits::kMaxModelWidth);
  a.output_dim = au.positive("output_dim", limits::kMaxModelWidth);
  a.n_window = au.integer("n_window", 50, 1, limits::kMaxModelWidth);
  a.n_window_infer = au.integer("n_window_infer", 800, 1, limits::kMaxModelWidth);
  a.max_source_positions = au.integer("max_source_positions", 1500, 1, limits::kMaxModelWidth);
  if (a.d_model % a.num_heads != 0) au.fail("encoder_attention_heads", "a divisor of d_model");
  if (a.n_window <= 0 || a.n_window_infer % (2 * a.n_window) != 0)
    au.fail("n_window_infer", "a positive multiple of 2*n_window");
  if (a.output_dim != c.thinker.hidden_size) au.fail("output_dim", "equal to the thinker's hidden_size");

  c.has_vision = th.has("vision_config");
  if (c.has_vision) {
    Reader vi = th.child("vision_config");
    VisionConfig& v = c.vision;
    v.depth = vi.positive("depth");
    v.hidden_size = vi.positive("hidden_size");
    v.num_heads = vi.positive("num_heads");
    v.intermediate_size = vi.positive("intermediate_size");
    v.in_channels = vi.integer("in_channels", 3);
    v.patch_size = vi.integer("patch_size", 16);
    v.temporal_patch_size = vi.integer("temporal_patch_size", 2);
    v.spatial_merge_size = vi.integer("spatial_merge_size", 2);
    v.num_position_embeddings = vi.positive("num_position_embeddings");
    v.deepstack_visual_indexes = vi.ints("deepstack_visual_indexes");
    v.out_hidden_size = vi.positive("out_hidden_size");
    if (vi.has("rope_parameters")) v.rope_theta = vi.child("rope_parameters").number("rope_theta", 10000.0);
    else v.rope_theta = vi.number("rope_theta", 10000.0);
    const std::string act = vi.string("hidden_act", "gelu_pytorch_tanh");
    if (act != "gelu_pytorch_tanh") vi.fail("hidden_act", "\"gelu_pytorch_tanh\" (the only activation implemented)");
    if (v.in_channels != 3) vi.fail("in_channels", "3");
    if (v.patch_size <= 0 || v.temporal_patch_size <= 0 || v.spatial_merge_size <= 0)
      vi.fail("patch_size", "positive, with positive temporal_patch_size and spatial_merge_size");
    if (v.hidden_size % v.num_heads != 0 || v.head_dim() % 4 != 0)
      vi.fail("num_heads", "a divisor of hidden_size leaving a head size divisible by 4 (2-D rotary)");
    if (v.position_side() * v.position_side() != v.num_position_embeddings)
      vi.fail("num_position_embeddings", "a square number");
    if (v.deepstack_visual_indexes.size() > size_t(c.thinker.num_layers))
      vi.fail("deepstack_visual_indexes", "no longer than the thinker's layers");
    for (int i : v.deepstack_visual_indexes)
      if (i < 0 || i >= v.depth) vi.fail("deepstack_visual_indexes", "a list of block indices below depth");
    if (v.out_hidden_size != c.thinker.hidden_size) vi.fail("out_hidden_size", "equal to the thinker's hidden_size");
    if (!(v.rope_theta > 0.0)) vi.fail("rope_theta", "positive");
  }

  c.has_talker = top.boolean("enable_audio_output", true) && top.has("talker_config") && top.has("code2wav_config");
  if (c.has_talker) {
    Reader tk = top.child("talker_config");
    TalkerConfig& t = c.talker;
    t.text = read_decoder(tk.child("text_config"), 1e4, /*moe=*/true);
    t.code_predictor = read_decoder(tk.child("code_predictor_config"), 1e4, /*moe=*/false);
    t.thinker_hidden_size = tk.positive("thinker_hidden_size");
    t.accept_hidden_layer = tk.integer("accept_hidden_layer");
    t.num_code_groups = tk.positive("num_code_groups", limits::kMaxLayers);
    t.codec_pad_id = tk.integer("codec_pad_id");
    t.codec_bos_id = tk.integer("codec_bos_id");
    t.codec_eos_id = tk.integer("codec_eos_token_id");
    t.codec_nothink_id = tk.integer("codec_nothink_id");
    t.codec_think_bos_id = tk.integer("codec_think_bos_id");
    t.codec_think_eos_id = tk.integer("codec_think_eos_id");
    t.spatial_merge_size = tk.integer("spatial_merge_size", 2, 1, 64);
    if (!tk.has("speaker_id") || !tk.raw().at("speaker_id").is_object()) tk.fail("speaker_id", "an object");
    for (auto& [name, v] : tk.raw().at("speaker_id").items()) {
      if (!v.is_number_integer()) tk.fail("speaker_id", "an object of integer ids");
      std::string lower = name;
      for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      t.speaker_ids[lower] = v.get<int>();
    }
    if (t.thinker_hidden_size != c.thinker.hidden_size)
      tk.fail("thinker_hidden_size", "equal to the thinker's hidden_size");
    if (t.accept_hidden_layer < 0 || t.accept_hidden_layer > c.thinker.num_layers)
      tk.fail("accept_hidden_layer", "between 0 and the thinker's num_hidden_layers");
    if (t.text.shared_expert_intermediate_size <= 0)
      tk.child("text_config").fail("shared_expert_intermediate_size", "a positive integer");
    Reader cw = top.child("code2wav_config");
    Code2WavConfig& w = c.code2wav;
    w.codebook_size = cw.positive("codebook_size", limits::kMaxVocab);
    w.num_quantizers = cw.positive("num_quantizers", limits::kMaxLayers);
    w.hidden_size = cw.positive("hidden_size", limits::kMaxModelWidth);
    w.intermediate_size = cw.positive("intermediate_size", limits::kMaxModelWidth);
    w.num_layers = cw.positive("num_hidden_layers", limits::kMaxLayers);
    w.num_heads = cw.positive("num_attention_heads", limits::kMaxHeads);
    w.num_kv_heads = cw.integer("num_key_value_heads", w.num_heads, 1, limits::kMaxHeads);
    w.sliding_window = cw.positive("sliding_window", limits::kMaxModelWidth);
    w.rms_norm_eps = cw.number("rms_norm_eps", 1e-5);
    w.rope_theta = read_rope(cw, 1e4).theta;
    w.decoder_dim = cw.positive("decoder_dim", limits::kMaxModelWidth);
    w.upsample_rates = cw.ints("upsample_rates");
    w.upsampling_ratios = cw.ints("upsampling_ratios");
    if (w.upsample_rates.empty()) cw.fail("upsample_rates", "a non-empty list");
    // samples_per_frame() multiplies them all (release: 8*5*4*3 * 2*2 = 1920 samples per codec frame).
    int64_t per_frame = 1;
    const std::pair<const char*, const std::vector<int>*> factors[] = {{"upsample_rates", &w.upsample_rates},
                                                                         {"upsampling_ratios", &w.upsampling_ratios}};
    for (const auto& [key, list] : factors)
      for (int r : *list) {
        if (r <= 0) cw.fail(key, "a list of positive integers (got " + std::to_string(r) + ")");
        per_frame *= r;
        if (per_frame > limits::kMaxModelWidth)
          cw.fail(key, "a list whose product with the other upsampling factors is at most " +
                           std::to_string(limits::kMaxModelWidth) + " samples per frame");
      }
    if (w.hidden_size % w.num_heads != 0) cw.fail("num_attention_heads", "a divisor of hidden_size");
    if (w.num_quantizers != t.num_code_groups) cw.fail("num_quantizers", "equal to talker num_code_groups");
  }
  return c;
}

namespace {

// generation_config.json's sampling keys from its parsed object `j` (file `origin`).
Sampling sampling_from(const json& j, const std::string& origin) {
  const Reader r(j, "", origin);
  const auto got = [&](const char* key) { return " (got " + j.at(key).dump() + ")"; };
  if (r.has("do_sample") && !j.at("do_sample").is_boolean()) r.fail("do_sample", "true or false" + got("do_sample"));
  for (const char* key : {"temperature", "top_p", "repetition_penalty"})
    if (r.has(key) && !j.at(key).is_number()) r.fail(key, "a number" + got(key));
  // transformers' GenerationConfig defaults for what the file leaves out.
  Sampling s;
  s.greedy = !r.boolean("do_sample", false);
  // Each number is checked as the double the file holds, before it narrows to float (1e300 is no temperature).
  const double temperature = r.number("temperature", 1.0);
  if (!(temperature > 0) || !std::isfinite(float(temperature)))
    r.fail("temperature", "a finite number > 0" + got("temperature"));
  s.temperature = float(temperature);
  if (r.has("top_k")) {
    const json& v = j.at("top_k");
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(INT32_MAX)
                          : v.is_number_integer() ? v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX
                                                  : false;
    if (!in_range) r.fail("top_k", "an integer in [0, 2147483647] (0: off)" + got("top_k"));
    s.top_k = int(v.get<int64_t>());
  } else {
    s.top_k = 50;
  }
  const double top_p = r.number("top_p", 1.0);
  if (!(top_p > 0 && top_p <= 1)) r.fail("top_p", "a number in (0, 1]" + got("top_p"));
  s.top_p = float(top_p);
  const double penalty = r.number("repetition_penalty", 1.0);
  if (!(penalty > 0) || !std::isfinite(float(penalty)))
    r.fail("repetition_penalty", "a finite number > 0" + got("repetition_penalty"));
  s.repetition_penalty = float(penalty);
  return s;
}

}  // namespace

Sampling parse_generation_config(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError(origin + ": expected a JSON object");
  return sampling_from(j, origin);
}

Sampling load_generation_config(const std::string& path) {
  struct stat st {};
  // No file: transformers' defaults (greedy), exactly as a file that sets nothing.
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return sampling_from(json::object(), path);
  return sampling_from(read_json_object(path, "a generation_config.json"), path);
}

}  // namespace omni
